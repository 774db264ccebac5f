"""Every exception smsd raises on purpose, in one place.

Callers catch by meaning (is it the caller's fault, is it worth a retry, is the
modem gone?) rather than by module, so the hierarchy follows those questions.
Each exception carries the evidence (command, code, raw reply) so that a log
line or an API error can say exactly what happened without re-deriving it.
"""

from __future__ import annotations


class SmsdError(Exception):
    """Base of every deliberate smsd error."""


# --- configuration -------------------------------------------------------


class ConfigError(SmsdError):
    """The configuration is invalid; ``problems`` lists ``(key, reason)``."""

    def __init__(self, problems: list[tuple[str, str]], file: str | None = None) -> None:
        self.problems = problems
        self.file = file
        where = f"{file}: " if file else ""
        super().__init__(
            where + "; ".join(f"{key}: {reason}" for key, reason in problems)
        )


class AlreadyRunning(SmsdError):
    """Another daemon holds this database (or, on a shared database, this node name).

    ``holder`` is what the lock says about its owner (a pid for the SQLite
    lock file), ``lock`` where the lock lives; nothing was read or written.
    """

    def __init__(self, lock: str, holder: str | None) -> None:
        self.lock = lock
        self.holder = holder
        who = f"pid {holder}" if holder else "another process"
        super().__init__(
            f"another smsd ({who}) is already running on this database (lock {lock}); "
            "stop it first (systemctl stop smsd?) or give this one its own --state-dir"
        )


# --- caller input ----------------------------------------------------------


class ValidationError(SmsdError):
    """The caller's input is wrong; nothing was stored.  Never retried."""


class InvalidNumber(ValidationError):
    def __init__(self, number: str, reason: str) -> None:
        self.number = number
        self.reason = reason
        super().__init__(f"invalid number {number!r}: {reason}")


class MessageTooLong(ValidationError):
    def __init__(self, length: int, limit: int) -> None:
        self.length = length
        self.limit = limit
        super().__init__(f"message has {length} characters, the limit is {limit}")


class NotAllowed(ValidationError):
    """The user may not do this (licence, blocklist, quota policy)."""


class QuotaExceeded(NotAllowed):
    """The user's monthly package is used up and ``[policy] quota_hard_cap`` refuses more."""

    def __init__(self, user: str, used: int, package: int, parts: int) -> None:
        self.user = user
        self.used = used
        self.package = package
        self.parts = parts
        super().__init__(
            f"monthly SMS package used up: user {user!r} has used {used} of {package} "
            f"included parts this month and this request needs {parts} more "
            "([policy] quota_hard_cap refuses billable SMS)"
        )


class MailRejected(ValidationError):
    """A Mail2SMS e-mail is not a usable request (missing line, bad number); nothing sent."""


class MailPasswordWrong(MailRejected):
    """A Mail2SMS e-mail's SMSPASSWORD: did not match; nothing sent."""


class BadTime(ValidationError):
    """A postpone time that is malformed (``kind="format"``) or names no real
    date (``kind="date"``, e.g. 31/02/2026): the two need different fixes."""

    def __init__(self, raw: str, kind: str, reason: str) -> None:
        self.raw = raw
        self.kind = kind
        self.reason = reason
        super().__init__(reason)


class CountInterrupted(SmsdError):
    """The queue's size was being counted for several callers (/healthz, systemd's
    status line) by one that was cancelled; the others get this instead."""


# --- gateways ----------------------------------------------------------------


class GatewayError(SmsdError):
    """A gateway could not take a message.

    ``temporary`` decides what the router does: a temporary failure hands the
    message to the next gateway or retries later; a permanent one (invalid
    number, barred destination) fails the message at once.
    """

    def __init__(self, message: str, *, temporary: bool, gateway: str | None = None) -> None:
        self.temporary = temporary
        self.gateway = gateway
        super().__init__(message)


class GatewayUnavailable(GatewayError):
    """No usable path right now (no healthy modem, provider down)."""

    def __init__(self, message: str, *, gateway: str | None = None) -> None:
        super().__init__(message, temporary=True, gateway=gateway)


class SubmitInterrupted(GatewayError):
    """A part left for the network but no answer said whether it was taken.

    The port vanished or the modem fell silent after the PDU was written: the
    network may have accepted it.  This is the ambiguity of a crash mid-submit
    (DESIGN.md invariant 2), so the dispatcher resolves it by
    ``policy.submitting_after_crash`` and the router never fails it over.
    """

    def __init__(self, message: str, *, gateway: str | None = None) -> None:
        super().__init__(message, temporary=True, gateway=gateway)


# --- modems --------------------------------------------------------------------


class ModemError(SmsdError):
    """Anything that went wrong talking to a modem."""


class PortBusy(ModemError):
    """Another process holds the serial port (``holder`` names it when known)."""

    def __init__(self, path: str, holder: str | None = None) -> None:
        self.path = path
        self.holder = holder
        msg = f"{path} is in use"
        if holder:
            msg += f" by {holder}"
        super().__init__(msg)


class PortGone(ModemError):
    """The port closed or vanished (unplugged, pty closed, EOF)."""


class AtTimeout(ModemError):
    def __init__(self, command: str, seconds: float) -> None:
        self.command = command
        self.seconds = seconds
        super().__init__(f"{command!r} got no final result within {seconds:g} s")


class PartNotSent(ModemError):
    """The modem failed before the PDU was written (dead port, no ``> `` prompt).

    Nothing of the part left the daemon, so it may go to another modem at once.
    """


class SubmitUnconfirmed(ModemError):
    """The PDU was written but the modem's answer never came (port lost, silence).

    Whether the network accepted the part is unknown; see SubmitInterrupted.
    """


class AtError(ModemError):
    """The modem answered ``ERROR`` (or a ``+CME ERROR``/``+CMS ERROR``)."""

    def __init__(self, command: str, raw: str, code: int | None = None) -> None:
        self.command = command
        self.raw = raw
        self.code = code
        super().__init__(f"{command!r} failed: {raw}")


class CmeError(AtError):
    """``+CME ERROR: <n>`` (TS 27.007 9.2): equipment/SIM/network errors."""


class CmsError(AtError):
    """``+CMS ERROR: <n>`` (TS 27.005 3.2.5): SMS errors.

    ``temporary`` follows TS 24.011 / 23.040 cause classes: congestion,
    network out of order and memory full are worth a retry; unassigned
    number, barred or invalid PDU are not.
    """

    def __init__(self, command: str, raw: str, code: int | None, temporary: bool) -> None:
        self.temporary = temporary
        super().__init__(command, raw, code)


class SimError(ModemError):
    """The SIM is missing, locked or refused its PIN; ``state`` says which."""

    def __init__(self, state: str, detail: str = "") -> None:
        self.state = state
        super().__init__(f"SIM {state}" + (f": {detail}" if detail else ""))


class PduError(ModemError, ValidationError):
    """A PDU could not be encoded or decoded; ``pdu`` holds the offending hex."""

    def __init__(self, message: str, pdu: str | None = None) -> None:
        self.pdu = pdu
        super().__init__(message)


# --- asterisk ------------------------------------------------------------------


class AmiError(SmsdError):
    """An AMI action failed or AMI is not connected."""


class AmiNotConnected(AmiError):
    """No logged-in AMI session right now; the caller keeps its work for later."""


class AmiAuthError(AmiError):
    """AMI refused our credentials: reported once, retried slowly."""


class AgiProtocolError(SmsdError):
    """The AGI peer broke the protocol (no blank line, overlong, bad bytes)."""


# --- SIP trunk -------------------------------------------------------------------


class SipParseError(SmsdError):
    """A SIP message could not be read.

    ``status`` is what a server answers (400 malformed, 505 version, 513 too
    large); ``message`` is the request or response as far as it was read, set
    when its headers were readable, so the answer can be routed back.
    """

    def __init__(self, reason: str, *, status: int = 400, message: object | None = None) -> None:
        self.status = status
        self.message = message
        super().__init__(reason)


class SipAuthError(SmsdError):
    """A digest challenge we cannot answer (unknown algorithm, no credentials)."""


# --- shared database (PostgreSQL, issue 18) ------------------------------------


class DatabaseError(SmsdError):
    """The PostgreSQL database refused or failed an action.

    ``target`` is the DSN with its password replaced by ``***`` (never the
    secret), ``action`` what smsd tried, ``reason`` the server's own words.
    """

    def __init__(self, target: str, action: str, reason: str) -> None:
        self.target = target
        self.action = action
        self.reason = reason
        super().__init__(f"database {target}: could not {action}: {reason}")


class SchemaVersionError(DatabaseError):
    """The database's schema is older or newer than this smsd's: it must not run on it."""

    def __init__(self, target: str, found: int, expected: int) -> None:
        self.found = found
        self.expected = expected
        if found < expected:
            reason = (f"schema version {found} is older than this smsd's ({expected}); "
                      "run `smsd db migrate` first")
        else:
            reason = (f"schema version {found} is newer than this smsd's ({expected}); "
                      "upgrade smsd on this node or restore a matching backup")
        super().__init__(target, "use the schema", reason)


class NodeLocked(DatabaseError):
    """Another daemon already runs under this node name on the shared database."""


class ModemIdTaken(SmsdError):
    """A modem id of this node is already declared by another live node of the shared
    database: delivery reports and claims by modem id would be ambiguous."""

    def __init__(self, node: str, clashes: list[tuple[str, str]]) -> None:
        self.node = node
        self.clashes = clashes   # (modem id, the other node's name)
        listed = ", ".join(f'"{modem}" (node "{other}")' for modem, other in clashes)
        super().__init__(
            f"modem id {listed} already declared by another live node of the database; "
            f"modem ids must be unique across nodes: rename the modem in this node's "
            f'config (node "{node}"), or stop the other node (a node that died frees '
            "its modem ids after node_dead_after_s)")
