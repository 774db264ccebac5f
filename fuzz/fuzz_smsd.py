#!/usr/bin/env python3
"""Coverage-guided fuzzing of smsd's parsers with atheris (libFuzzer), for long runs.

CI runs the same targets briefly through hypothesis (tests/*/test_*fuzz*.py
and tests/test_fuzz_harness.py, which also keeps this file working); this
harness is for hours on a spare machine:

    pip install atheris
    python fuzz/fuzz_smsd.py pdu -max_total_time=3600 -jobs=2 fuzz/corpus/pdu
    python fuzz/fuzz_smsd.py --list

A target takes raw bytes and must end in a value or in the one exception type
its contract names; anything else is a crash libFuzzer saves as crash-<sha1>,
which `python fuzz/fuzz_smsd.py pdu crash-<sha1>` replays.
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable

from smsd.agi.protocol import ReplyAssembler, parse_environment, parse_reply_line
from smsd.api.originate import parse_postpone, split_numbers
from smsd.codec import pdu
from smsd.config import config_from_dict
from smsd.errors import AgiProtocolError, ConfigError, PduError
from smsd.modem.framing import LineFramer
from smsd.text import sanitize_originate_text


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def fuzz_pdu(data: bytes) -> None:
    """pdu.decode: any hex (with or without an SMSC part) decodes or raises PduError."""
    if not data:
        return
    try:
        pdu.decode(data[1:].hex(), smsc_included=bool(data[0] & 1))
    except PduError:
        pass


def fuzz_framing(data: bytes) -> None:
    """LineFramer: bytes in chunks cut at each 0xFE; buffer bounded, lines printable."""
    framer = LineFramer(max_line=256)
    for chunk in data.split(b"\xfe"):
        for frame in framer.feed(chunk):
            if isinstance(frame, str):
                assert len(frame) <= 256
                assert all(0x20 <= ord(c) < 0x7F or c == "\t" for c in frame)
        assert len(framer.pending) <= 256


def fuzz_agi_environment(data: bytes) -> None:
    """parse_environment never raises; a damaged block trusts no argument."""
    env = parse_environment(_text(data).split("\n"))
    assert not env.damaged or env.args == ()


def fuzz_agi_reply(data: bytes) -> None:
    """Reply lines: a reply, a wait inside a usage block, or AgiProtocolError."""
    asm = ReplyAssembler(max_lines=50)
    for line in _text(data).split("\n"):
        try:
            asm.feed(line)
            parse_reply_line(line)
        except AgiProtocolError:
            pass


def fuzz_originate(data: bytes) -> None:
    """The originate parameters: number list, sanitised message, postpone time."""
    number, _, rest = _text(data).partition("\x00")
    message, _, postpone = rest.partition("\x00")
    for item in split_numbers(number):
        assert item and item == item.strip()
    clean = sanitize_originate_text(message)
    assert len(clean) == len(message) and not set("'\"\\/") & set(clean)
    try:
        parse_postpone(postpone, "Europe/London")
    except ValueError:
        pass


def fuzz_config(data: bytes) -> None:
    """A config file: TOML error, ConfigError naming keys, or a Config."""
    try:
        config_from_dict(tomllib.loads(_text(data)))
    except (tomllib.TOMLDecodeError, ConfigError):
        pass


TARGETS: dict[str, Callable[[bytes], None]] = {
    "pdu": fuzz_pdu,
    "framing": fuzz_framing,
    "agi-environment": fuzz_agi_environment,
    "agi-reply": fuzz_agi_reply,
    "originate": fuzz_originate,
    "config": fuzz_config,
}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[1] not in TARGETS:
        print(f"usage: {argv[0]} TARGET [libFuzzer options] [corpus dirs or crash files]\n"
              f"targets: {', '.join(TARGETS)}", file=sys.stderr)
        return 0 if "--list" in argv else 2
    try:
        import atheris  # type: ignore[import-not-found]
    except ImportError:
        print("atheris is not installed: pip install atheris", file=sys.stderr)
        return 2
    target = TARGETS[argv[1]]
    atheris.instrument_all()
    atheris.Setup([argv[0], *argv[2:]], target)
    atheris.Fuzz()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
