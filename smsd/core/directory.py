"""The PBX's users and call groups, looked up the ways the rest of smsd asks.

It is built from the frozen config (again on each reload), so every lookup
is a dict access: the API authenticates on every request and inbound routing
searches by DID.
"""

from __future__ import annotations

from smsd.config import CallGroup, Config, Licence, User


class Directory:
    def __init__(self, config: Config) -> None:
        self.reload(config)

    def reload(self, config: Config) -> None:
        """Rebuild every index from ``config`` (SIGHUP): new users and hashes apply at once.

        It runs without awaiting, so a lookup on the event loop sees the old
        directory or the new one, never a mix of both.
        """
        self._users = config.users
        self._groups = config.call_groups
        # API-only accounts have no phone: never found by extension or DID.
        self._by_ext = {u.extension: u for u in config.users if not u.api_only}
        self._by_username = {u.username: u for u in config.users}
        self._by_endpoint = {u.endpoint.lower(): u for u in config.users if u.endpoint}
        self._group_by_number: dict[str, CallGroup] = {}
        for g in config.call_groups:
            if g.number is not None:
                # The first group with a number wins, in config order.
                self._group_by_number.setdefault(g.number, g)

    @property
    def users(self) -> tuple[User, ...]:
        return self._users

    @property
    def call_groups(self) -> tuple[CallGroup, ...]:
        return self._groups

    def user_by_extension(self, ext: str) -> User | None:
        return self._by_ext.get(ext)

    def user_by_username(self, name: str) -> User | None:
        return self._by_username.get(name)

    def user_by_endpoint(self, endpoint: str) -> User | None:
        """Match ``pjsip:100`` case-insensitively on the technology, as Asterisk does."""
        found = self._by_endpoint.get(endpoint.lower())
        if found is None and "/" in endpoint:
            # "PJSIP/100" as Asterisk's channel names write it.
            tech, _, rest = endpoint.partition("/")
            found = self._by_endpoint.get(f"{tech.lower()}:{rest.lower()}")
        return found

    def users_with_office_number(
        self, did: str, min_licence: Licence = Licence.UC_BUSINESS
    ) -> list[User]:
        return [
            u
            for u in self._users
            if u.office_number == did and u.licence.rank >= min_licence.rank and not u.api_only
        ]

    def call_group_by_number(self, did: str) -> CallGroup | None:
        return self._group_by_number.get(did)

    def call_groups_with_number(self) -> list[CallGroup]:
        """Only services with an SMS number may hold conversations (SEED-NOTES)."""
        return [g for g in self._groups if g.number is not None]
