"""Password hashes for API users: scrypt in a self-describing string.

The string ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>`` carries its own cost
parameters, so the cost can be raised later without breaking old hashes, and a
config file can be checked for well-formed hashes without knowing a password.
Only the standard library is used (``hashlib.scrypt``).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

# RFC 7914 section 2 recommends N=2^14..2^20 for interactive logins; 2^14 with
# r=8 costs ~16 MiB and ~50 ms, which the API amortises with a verified-cache.
DEFAULT_N = 2**14
DEFAULT_R = 8
DEFAULT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
# OpenSSL refuses scrypt above its default maxmem (32 MiB); 128*n*r*p is the need.
_MAXMEM = 64 * 1024 * 1024
SCHEME = "scrypt"


class BadHash(ValueError):
    """The stored hash string is not in the ``scrypt$n$r$p$salt$hash`` format."""


@dataclass(frozen=True)
class ParsedHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    pad = "=" * (-len(text) % 4)
    return base64.b64decode(text + pad, validate=True)


def parse(encoded: str) -> ParsedHash:
    """Split a stored hash; raises BadHash naming what is wrong."""
    fields = encoded.split("$")
    if len(fields) != 6 or fields[0] != SCHEME:
        raise BadHash("expected 'scrypt$n$r$p$salt$hash' (make one with `smsd passwd`)")
    try:
        n, r, p = int(fields[1]), int(fields[2]), int(fields[3])
    except ValueError:
        raise BadHash("n, r and p must be integers") from None
    if n < 2 or n & (n - 1) or r < 1 or p < 1:
        raise BadHash("n must be a power of two > 1; r and p must be positive")
    if 128 * n * r * p > _MAXMEM:
        raise BadHash(f"cost n={n} r={r} p={p} needs more than {_MAXMEM} bytes")
    try:
        salt, digest = _unb64(fields[4]), _unb64(fields[5])
    except ValueError:
        raise BadHash("salt and hash must be base64") from None
    if not salt or not digest:
        raise BadHash("salt and hash must not be empty")
    return ParsedHash(n, r, p, salt, digest)


def hash_password(
    password: str, *, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P
) -> str:
    salt = secrets.token_bytes(SALT_BYTES)
    digest = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=HASH_BYTES, maxmem=_MAXMEM
    )
    return f"{SCHEME}${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def verify(password: str, encoded: str) -> bool:
    """True when ``password`` matches; a malformed hash never matches.

    The comparison is constant-time (hmac.compare_digest) so the answer's timing
    does not leak how many bytes matched.
    """
    try:
        parsed = parse(encoded)
    except BadHash:
        return False
    digest = hashlib.scrypt(
        password.encode("utf-8"),
        salt=parsed.salt,
        n=parsed.n,
        r=parsed.r,
        p=parsed.p,
        dklen=len(parsed.digest),
        maxmem=_MAXMEM,
    )
    return hmac.compare_digest(digest, parsed.digest)
