"""HTTP digest authentication as SIP uses it (RFC 7616, RFC 2617, RFC 8760): no I/O.

A carrier answers an unauthenticated request with 401 (WWW-Authenticate) or
407 (Proxy-Authenticate); the UA repeats it with Authorization or
Proxy-Authorization.  MD5 and SHA-256 (and their ``-sess`` variants) with
``qop=auth``, or RFC 2069's no-qop form when the server offers none.
``auth-int`` alone is refused: it would hash the body into the credentials
and nothing in a carrier trunk needs it.

A ``Credentials`` remembers the last challenge so later requests can carry an
answer before they are challenged (nonce count increasing, RFC 7616 3.4):
one round trip per MESSAGE instead of two.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass, field

from smsd.errors import SipAuthError

# Preference when one header offers several: RFC 8760 2.4 lets the server
# order them; among algorithms we support we take the first offered.
_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}
_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*,?')


@dataclass(frozen=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str = "MD5"  # upper case, "-sess" kept
    qop: tuple[str, ...] = ()
    opaque: str | None = None
    stale: bool = False

    @property
    def supported(self) -> bool:
        base = self.algorithm.removesuffix("-SESS")
        return base in _HASHES and (not self.qop or "auth" in self.qop)


def parse_challenge(value: str) -> Challenge | None:
    """One WWW-/Proxy-Authenticate value; None when it is not a usable Digest challenge."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    pos = 0
    while pos < len(rest):
        m = _PARAM.match(rest, pos)
        if not m or m.end() == pos:
            return None
        raw = m.group(2)
        if raw.startswith('"'):
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        params[m.group(1).lower()] = raw
        pos = m.end()
    if "realm" not in params or "nonce" not in params:
        return None
    qop = tuple(q.strip().lower() for q in params.get("qop", "").split(",") if q.strip())
    return Challenge(
        realm=params["realm"],
        nonce=params["nonce"],
        algorithm=params.get("algorithm", "MD5").upper(),
        qop=qop,
        opaque=params.get("opaque"),
        stale=params.get("stale", "").lower() == "true",
    )


def choose(values: list[str]) -> Challenge:
    """The first supported challenge among header values, else SipAuthError naming them."""
    offered = [c for c in (parse_challenge(v) for v in values) if c is not None]
    for c in offered:
        if c.supported:
            return c
    names = ", ".join(f"{c.algorithm} qop={','.join(c.qop) or '-'}" for c in offered)
    raise SipAuthError(f"no supported digest challenge (offered: {names or 'none'})")


def _h(algorithm: str, text: str) -> str:
    return _HASHES[algorithm.removesuffix("-SESS")](text.encode("utf-8")).hexdigest()


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def response(
    ch: Challenge, *, username: str, password: str, method: str, uri: str,
    cnonce: str, nc: int,
) -> str:
    """The ``response`` value (RFC 7616 3.4.1); ``nc``/``cnonce`` ignored without qop."""
    alg = ch.algorithm
    ha1 = _h(alg, f"{username}:{ch.realm}:{password}")
    if alg.endswith("-SESS"):
        ha1 = _h(alg, f"{ha1}:{ch.nonce}:{cnonce}")
    ha2 = _h(alg, f"{method}:{uri}")
    if ch.qop:
        return _h(alg, f"{ha1}:{ch.nonce}:{nc:08x}:{cnonce}:auth:{ha2}")
    return _h(alg, f"{ha1}:{ch.nonce}:{ha2}")


def authorization(
    ch: Challenge, *, username: str, password: str, method: str, uri: str,
    cnonce: str, nc: int,
) -> str:
    """The Authorization / Proxy-Authorization header value."""
    if not ch.supported:
        raise SipAuthError(f"cannot answer digest algorithm {ch.algorithm} qop={ch.qop}")
    digest = response(ch, username=username, password=password, method=method, uri=uri,
                      cnonce=cnonce, nc=nc)
    parts = [
        f"username={_quote(username)}",
        f"realm={_quote(ch.realm)}",
        f"nonce={_quote(ch.nonce)}",
        f"uri={_quote(uri)}",
        f"response={_quote(digest)}",
        f"algorithm={ch.algorithm}",
    ]
    if ch.qop:
        parts += [f"cnonce={_quote(cnonce)}", "qop=auth", f"nc={nc:08x}"]
    if ch.opaque is not None:
        parts.append(f"opaque={_quote(ch.opaque)}")
    return "Digest " + ", ".join(parts)


@dataclass
class Credentials:
    """One account's secret and the challenges last seen, per header kind.

    ``header`` is "Authorization" (answering 401) or "Proxy-Authorization" (407).
    """

    username: str
    password: str = field(repr=False)
    _last: dict[str, Challenge] = field(default_factory=dict, repr=False)
    _nc: dict[str, int] = field(default_factory=dict, repr=False)

    def learn(self, header: str, ch: Challenge) -> None:
        if self._last.get(header) != ch:
            self._last[header] = ch
            self._nc[header] = 0

    def forget(self) -> None:
        self._last.clear()
        self._nc.clear()

    def headers(self, method: str, uri: str) -> list[tuple[str, str]]:
        """Answers to every challenge seen so far, with the next nonce count."""
        out: list[tuple[str, str]] = []
        for header, ch in self._last.items():
            self._nc[header] = nc = self._nc.get(header, 0) + 1
            out.append((header, authorization(
                ch, username=self.username, password=self.password, method=method, uri=uri,
                cnonce=secrets.token_hex(8), nc=nc,
            )))
        return out
