"""Reading one TOML table with types, collecting problems instead of raising.

Split from smsd/config.py so that module holds only what a config *is*; this
one knows how to read any table and say precisely what is wrong with a key.
"""

from __future__ import annotations

import math
import re
import stat
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import structlog

T = TypeVar("T")
log = structlog.get_logger(__name__)

# Shape check only (ITU-T E.164: "+", country code, at most 15 digits);
# the full check with phonenumbers happens where numbers are used.
_E164 = re.compile(r"^\+[1-9][0-9]{5,14}$")
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# Keys whose value is a secret: a problem with one names its type, never its value
# (``pin = 1234`` without quotes is an easy mistake, and check-config output is shared).
SECRET_KEYS = frozenset({"pin", "secret", "password"})


class Section:
    """Typed access to one TOML table that records problems instead of raising."""

    def __init__(self, data: Mapping[str, Any], key: str, problems: list[tuple[str, str]]):
        self.data = data
        self.prefix = key
        self.problems = problems
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.prefix}.{name}" if self.prefix else name

    def problem(self, name: str, reason: str) -> None:
        self.problems.append((self.key(name), reason))

    def _get(self, name: str, kinds: tuple[type, ...], what: str, default: T) -> Any:
        self.seen.add(name)
        if name not in self.data:
            return default
        value = self.data[name]
        if isinstance(value, bool) and bool not in kinds:
            self.problem(name, f"must be {what}, not a boolean")
            return default
        if not isinstance(value, kinds):
            shown = "" if name in SECRET_KEYS else f" {value!r}"
            self.problem(name, f"must be {what}, got {type(value).__name__}{shown}")
            return default
        return value

    def text(self, name: str, default: T) -> str | T:
        v = self._get(name, (str,), "a string", default)
        return v  # type: ignore[no-any-return]

    def req_str(self, name: str) -> str:
        if name not in self.data:
            self.seen.add(name)
            self.problem(name, "is required")
            return ""
        v = self._get(name, (str,), "a string", "")
        if v == "":
            self.problem(name, "must not be empty")
        return v  # type: ignore[no-any-return]

    def integer(
        self, name: str, default: int, *, lo: int | None = None, hi: int | None = None
    ) -> int:
        v: int = self._get(name, (int,), "an integer", default)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f"{lo if lo is not None else '-inf'}..{hi if hi is not None else 'inf'}"
            self.problem(name, f"must be in {rng}, got {v}")
            return default
        return v

    def number(
        self, name: str, default: float, *, lo: float = 0.0, hi: float | None = None
    ) -> float:
        v = float(self._get(name, (int, float), "a number", default))
        if not math.isfinite(v):
            # TOML allows inf and nan; neither is a usable duration or price
            self.problem(name, f"must be a finite number, got {v:g}")
            return default
        if v < lo:
            self.problem(name, f"must be at least {lo:g}, got {v:g}")
            return default
        if hi is not None and v > hi:
            self.problem(name, f"must be at most {hi:g}, got {v:g}")
            return default
        return v

    def flag(self, name: str, default: bool) -> bool:
        return self._get(name, (bool,), "true or false", default)  # type: ignore[no-any-return]

    def choice(self, name: str, default: str, choices: tuple[str, ...]) -> str:
        v = self.text(name, default)
        if v not in choices:
            self.problem(name, f"must be one of {', '.join(choices)}, got {v!r}")
            return default
        return v

    def str_list(self, name: str, check: Callable[[str], str | None] | None = None) -> list[str]:
        raw = self._get(name, (list,), "a list of strings", [])
        out: list[str] = []
        for i, item in enumerate(raw):
            if not isinstance(item, str):
                self.problems.append((f"{self.key(name)}[{i}]", "must be a string"))
                continue
            reason = check(item) if check else None
            if reason:
                self.problems.append((f"{self.key(name)}[{i}]", reason))
                continue
            out.append(item)
        return out

    def table(self, name: str) -> Section | None:
        raw = self._get(name, (dict,), "a table", None)
        return None if raw is None else Section(raw, self.key(name), self.problems)

    def tables(self, name: str) -> list[Section]:
        raw = self._get(name, (list,), "an array of tables ([[...]])", [])
        out = []
        for i, item in enumerate(raw):
            if not isinstance(item, dict):
                self.problems.append((f"{self.key(name)}[{i}]", "must be a table"))
                continue
            out.append(Section(item, f"{self.key(name)}[{i}]", self.problems))
        return out

    def secret(self, name: str, base: Path | None) -> str | None:
        """``name`` inline or ``name_file`` (first line of that file)."""
        inline = self.text(name, None)
        path = self.text(f"{name}_file", None)
        if inline is not None and path is not None:
            self.problem(name, f"give {name} or {name}_file, not both")
        if path is None:
            return inline
        p = Path(path)
        if base is not None and not p.is_absolute():
            p = base / p
        warn_if_world_readable(p, self.key(f"{name}_file"))
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            self.problem(f"{name}_file", f"cannot read {str(p)!r}: {exc.strerror or exc}")
            return None
        value = text.splitlines()[0].strip() if text.strip() else ""
        if not value:
            self.problem(f"{name}_file", f"{str(p)!r} is empty")
            return None
        return value

    def done(self) -> None:
        for name in self.data:
            if name not in self.seen:
                self.problem(name, "unknown key")


def warn_if_world_readable(path: Path, key: str) -> bool:
    """Warn (once per load) when a file holding a secret is readable by every local user.

    A warning, not a refusal: the daemon must still start on a host whose
    admin has not tightened the file yet, and the log says how to.  The
    secret itself is never read here.  True when it warned.
    """
    try:
        mode = path.stat().st_mode
    except OSError:
        return False  # reading the file reports why it cannot be used
    if not mode & stat.S_IROTH:
        return False
    log.warning("config.secret_file_world_readable", key=key, file=str(path),
                mode=f"{stat.S_IMODE(mode):04o}", fix=f"chmod o-rwx {path}")
    return True


def inline_secret_keys(data: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys of secrets written in the config itself (``secret =``, not ``secret_file``).

    Also the curl gateway's Authorization header, the usual home of a provider's token.
    """
    found: list[str] = []
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key in SECRET_KEYS and isinstance(value, str):
            found.append(dotted)
        elif key == "headers" and isinstance(value, Mapping):
            found += [f"{dotted}.{h}" for h in value if str(h).lower() == "authorization"]
        elif isinstance(value, Mapping):
            found += inline_secret_keys(value, dotted)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, Mapping):
                    found += inline_secret_keys(item, f"{dotted}[{i}]")
    return found


def e164_problem(value: str) -> str | None:
    return None if _E164.match(value) else f"{value!r} is not an E.164 number (+ and 6-15 digits)"


def country_problem(value: str) -> str | None:
    return None if _COUNTRY.match(value) else f"{value!r} is not an ISO 3166 alpha-2 code like 'GB'"
