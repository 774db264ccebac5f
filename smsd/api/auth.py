"""HTTP basic auth against the directory's scrypt hashes, with a verified-cache.

scrypt is deliberately slow (tens of ms), which would cap the API at a few
dozen requests per second per core.  A successful verification is therefore
remembered, keyed by username and a SHA-256 of the password supplied, together
with the hash it was checked against: a changed hash (new config) misses the
cache.  A request whose Authorization header is one already verified skips
even the decoding (issue 17: a fifth of the API's own CPU per request):
its SHA-256 names the user and the hash it was checked against, and the
back-off and the user's current hash are still consulted every time.
Failures are never cached, so guessing stays slow, and repeated
failures of one user name or one client address are made to wait
(smsd/api/backoff.py): 429 with Retry-After, nothing checked meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import hmac
import json
import math
import secrets
import time
from collections.abc import Callable

import structlog
from aiohttp import web

from smsd.api.backoff import FailureBackoff
from smsd.config import User
from smsd.core.directory import Directory
from smsd.passwords import hash_password, parse, verify

log = structlog.get_logger(__name__)

REALM = "smsd"
# Entries kept before the cache is emptied; far above any PBX's user count, so
# only a flood of distinct valid passwords (impossible without the hashes) clears it.
CACHE_MAX = 4096
# scrypt runs in worker threads (hashlib releases the GIL; running it on the loop
# would stall every connection for ~50 ms).  Two at once bounds CPU spent on
# guessing to two cores' worth.
MAX_PARALLEL_VERIFY = 2
# Longest wait per user name: short, because anyone can make a user wait by
# failing as that user; long enough that guessing one password takes years.
USER_MAX_WAIT_S = 60.0
# Longest wait per client address: one address failing for many names.
PEER_MAX_WAIT_S = 300.0


class LoginThrottled(web.HTTPTooManyRequests):
    """429 with Retry-After and a JSON body; raised through the API's error middleware."""

    def __init__(self, retry_after_s: float) -> None:
        seconds = max(1, math.ceil(retry_after_s))
        super().__init__(
            text=json.dumps({"error": f"too many failed logins; retry in {seconds} s"}),
            content_type="application/json",
            headers={"Retry-After": str(seconds)},
        )
        self.retry_after = seconds


def parse_basic(header: str | None) -> tuple[str, str] | None:
    """``Basic base64(user:password)`` -> (user, password); None when absent or malformed."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    if not sep:
        return None
    return username, password


class Authenticator:
    def __init__(
        self,
        directory: Directory,
        *,
        verify_fn: Callable[[str, str], bool] = verify,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._verify = verify_fn
        self._by_user = FailureBackoff(max_wait_s=USER_MAX_WAIT_S, clock=clock)
        self._by_peer = FailureBackoff(max_wait_s=PEER_MAX_WAIT_S, clock=clock)
        self._verified: dict[tuple[str, bytes], str] = {}
        # SHA-256 of a verified Authorization header -> (user name, the hash it
        # was verified against).  The digest, not the header: the header
        # carries the password, which must not stay in memory.
        self._headers: dict[bytes, tuple[str, str]] = {}
        self._slots = asyncio.Semaphore(MAX_PARALLEL_VERIFY)
        self._decoy: str | None = None

    async def _decoy_hash(self) -> str:
        """A hash with the users' own scrypt cost, made once, for unknown names.

        Checking a password for a user that does not exist costs the same
        scrypt as for one that does, so the answer time does not tell a
        guesser which user names exist.
        """
        if self._decoy is None:
            cost: dict[str, int] = {}
            for u in self._directory.users:
                if u.password_hash:
                    with contextlib.suppress(ValueError):
                        h = parse(u.password_hash)
                        cost = {"n": h.n, "r": h.r, "p": h.p}
                    break
            self._decoy = await asyncio.to_thread(
                hash_password, secrets.token_urlsafe(16), **cost)
        return self._decoy

    async def check(self, username: str, password: str) -> User | None:
        user = self._directory.user_by_username(username)
        if user is None or not user.password_hash:
            decoy = await self._decoy_hash()
            async with self._slots:
                await asyncio.to_thread(self._verify, password, decoy)
            return None
        key = (username, hashlib.sha256(password.encode("utf-8")).digest())
        cached = self._verified.get(key)
        if cached is not None and hmac.compare_digest(cached, user.password_hash):
            return user
        async with self._slots:
            ok = await asyncio.to_thread(self._verify, password, user.password_hash)
        if not ok:
            return None
        if len(self._verified) >= CACHE_MAX:
            self._verified.clear()
        self._verified[key] = user.password_hash
        return user

    async def login(self, username: str, password: str, peer: str) -> User | None:
        """check() behind the back-off; raises LoginThrottled while either key must wait."""
        wait = max(self._by_user.wait_s(username), self._by_peer.wait_s(peer))
        if wait > 0:
            log.debug("api.auth_throttled", username=username, peer=peer, wait_s=round(wait, 1))
            raise LoginThrottled(wait)
        user = await self.check(username, password)
        if user is not None:
            self._by_user.succeeded(username)
            self._by_peer.succeeded(peer)
            return user
        wait = max(self._by_user.failed(username), self._by_peer.failed(peer))
        if wait > 0:
            log.warning("api.auth_backoff", username=username, peer=peer, wait_s=wait)
        else:
            log.info("api.auth_failed", username=username, peer=peer)
        return None

    async def authenticate(self, request: web.Request) -> User | None:
        header = request.headers.get("Authorization")
        if not header:
            return None
        peer = request.remote or "unknown"
        key = hashlib.sha256(header.encode("utf-8", "surrogatepass")).digest()
        known = self._headers.get(key)
        if known is not None:
            user = self._known(known, peer)
            if user is not None:
                return user
        creds = parse_basic(header)
        if creds is None:
            return None
        user = await self.login(creds[0], creds[1], peer)
        if user is not None and user.password_hash:
            if len(self._headers) >= CACHE_MAX:
                self._headers.clear()
            self._headers[key] = (user.username, user.password_hash)
        return user

    def _known(self, known: tuple[str, str], peer: str) -> User | None:
        """The user of a header verified before, when nothing changed since: the
        user still has the hash it was verified against and neither the user
        nor the address must wait.  None sends the request down the full path
        (which answers the wait, or checks the password against the new hash)."""
        username, verified = known
        user = self._directory.user_by_username(username)
        if user is None or not user.password_hash \
                or not hmac.compare_digest(user.password_hash, verified):
            return None
        if self._by_user.wait_s(username) > 0 or self._by_peer.wait_s(peer) > 0:
            return None
        self._by_user.succeeded(username)
        self._by_peer.succeeded(peer)
        return user


def challenge_headers() -> dict[str, str]:
    return {"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'}
