"""Pure AT command builders and response parsers (TS 27.005 / TS 27.007).

Nothing here does I/O, so each parser is tested against tables of exact
device captures (tests/data/at/<vendor-model>/).  Builders validate their
arguments: only digits, hex PDUs and known tokens ever reach a command line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from smsd.codec import gsm7

# ---------------------------------------------------------------- final codes

FINAL_OK = frozenset({"OK"})
# TS 27.007 5.7 / V.250 6.1.9: result codes that end a command unsuccessfully.
FINAL_ERROR = frozenset({"ERROR", "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE",
                         "COMMAND NOT SUPPORT", "TOO MANY PARAMETERS"})
CME_PREFIX = "+CME ERROR:"
CMS_PREFIX = "+CMS ERROR:"


def is_final(line: str) -> bool:
    """A whole line that ends the command in flight (never a substring match)."""
    return (line in FINAL_OK or line in FINAL_ERROR
            or line.startswith(CME_PREFIX) or line.startswith(CMS_PREFIX))


def split_params(text: str) -> list[str]:
    """Split ``a,"b,c",d`` on commas outside quotes; quotes are removed."""
    out: list[str] = []
    cur: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return out


def _body(line: str, prefix: str) -> str:
    if not line.startswith(prefix):
        raise ValueError(f"expected {prefix!r}, got {line!r}")
    return line[len(prefix):].lstrip(": ").strip()


def _int(text: str) -> int | None:
    text = text.strip().strip('"')
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        return None


# ---------------------------------------------------------------- errors

# +CME ERROR texts (TS 27.007 9.2.1) for modems in verbose mode (+CMEE=2) or
# modems that answer verbosely before +CMEE=1 has been sent.
_CME_TEXT = {
    "operation not allowed": 3, "operation not supported": 4, "ph-sim pin required": 5,
    "sim not inserted": 10, "sim pin required": 11, "sim puk required": 12,
    "sim failure": 13, "sim busy": 14, "sim wrong": 15, "incorrect password": 16,
    "sim pin2 required": 17, "sim puk2 required": 18, "memory full": 20,
    "no network service": 30, "network timeout": 31, "unknown": 100,
}
CME_SIM_NOT_INSERTED = 10
CME_SIM_PIN = 11
CME_SIM_PUK = 12
CME_SIM_FAILURE = 13
CME_SIM_BUSY = 14
CME_INCORRECT_PASSWORD = 16
CMS_INVALID_INDEX = 321      # TS 27.005 3.2.5: invalid memory index (slot empty)


def error_code(line: str) -> int | None:
    """Numeric code of a ``+CME ERROR`` / ``+CMS ERROR`` line, verbose text mapped."""
    body = line.split(":", 1)[1].strip() if ":" in line else ""
    code = _int(body)
    if code is not None:
        return code
    return _CME_TEXT.get(body.lower())


# TS 24.011 8.2.5.4 (RP-cause, 0..127) classified temporary where the table
# says so; TS 23.040 9.2.3.22 TP-FCS (128..255): SC busy / system failure /
# memory full are temporary; TS 27.005 3.2.5 (300..): ME and network state
# is temporary (another modem or a later attempt may succeed), a bad PDU or
# an unsupported operation is not.  "Temporary" means the message itself is
# not at fault.
_CMS_TEMPORARY = frozenset({
    17, 22, 27, 38, 41, 42, 47,                              # RP causes
    0xC0, 0xC2, 0xD0, 0xD2, 0xD3, 0xD4, 0xD5, 0xFF,          # TP-FCS
    300, 301, 310, 311, 312, 313, 314, 315, 316, 317, 318, 320, 322,
    330, 331, 332, 500,
})


def cms_temporary(code: int | None) -> bool:
    if code is None:
        return True          # bare ERROR: nothing says the message is at fault
    if code >= 512:
        return True          # manufacturer specific (27.005 3.2.5): assume transient
    return code in _CMS_TEMPORARY


# ---------------------------------------------------------------- builders

_PIN = re.compile(r"^[0-9]{4,8}$")
_USSD = re.compile(r"^[0-9*#]{1,32}$")
_NUMBER = re.compile(r"^\+?[0-9]{1,20}$")
_HEX_DIGITS = re.compile(r"[0-9A-Fa-f]+$")


def _is_hex(text: str) -> bool:
    """An even run of hex digits to the end (or to a final newline): what
    ``^(?:[0-9A-Fa-f]{2})+$`` matched, tested with a character class, three
    times faster per PDU (issue 17)."""
    m = _HEX_DIGITS.match(text)
    return m is not None and m.end() % 2 == 0
_MEM = frozenset({"SM", "ME", "MT", "SR", "BM", "TA"})


def build_cpin(pin: str) -> str:
    if not _PIN.match(pin):
        raise ValueError("a PIN is 4 to 8 digits")
    return f'AT+CPIN="{pin}"'


def build_cmgs(tpdu_length: int) -> str:
    if not 1 <= tpdu_length <= 176:     # TS 23.040: SUBMIT TPDU at most 176 octets
        raise ValueError(f"TPDU length {tpdu_length} out of range")
    return f"AT+CMGS={tpdu_length}"


def check_pdu_hex(pdu: str) -> str:
    if not _is_hex(pdu):
        raise ValueError("PDU is not hex")
    return pdu.upper()


def build_cmgr(index: int) -> str:
    return f"AT+CMGR={int(index)}"


def build_cmgd(index: int) -> str:
    return f"AT+CMGD={int(index)}"


def build_cmgl(stat: int = 4) -> str:
    """``AT+CMGL=4`` lists all messages in PDU mode (TS 27.005 3.4.2)."""
    return f"AT+CMGL={int(stat)}"


def build_cpms(read: str, write: str | None = None, receive: str | None = None) -> str:
    mems = [m for m in (read, write, receive) if m is not None]
    for m in mems:
        if m not in _MEM:
            raise ValueError(f"unknown message storage {m!r}")
    return "AT+CPMS=" + ",".join(f'"{m}"' for m in mems)


def build_csca(number: str) -> str:
    if not _NUMBER.match(number):
        raise ValueError("SMSC must be digits with an optional +")
    ton = 145 if number.startswith("+") else 129
    return f'AT+CSCA="{number}",{ton}'


def build_cusd(code: str, *, packed: bool = False) -> str:
    """``packed``: modems that take the string as packed GSM 7-bit hex (Huawei)."""
    if not is_ussd_code(code):
        raise ValueError("USSD code may hold only digits, * and #")
    if packed:
        code = gsm7.pack_septets(gsm7.encode_septets(code)).hex().upper()
    return f'AT+CUSD=1,"{code}",15'


# ---------------------------------------------------------------- parsers


@dataclass(frozen=True)
class Signal:
    rssi: int
    ber: int
    dbm: int | None
    bars: int | None    # 0..4: marginal .. excellent


def parse_csq(line: str) -> Signal:
    """``+CSQ: <rssi>,<ber>``; rssi 0..31 maps to -113..-51 dBm (TS 27.007 8.5)."""
    parts = split_params(_body(line, "+CSQ"))
    rssi = _int(parts[0])
    ber = _int(parts[1]) if len(parts) > 1 else 99
    if rssi is None:
        raise ValueError(f"bad +CSQ {line!r}")
    if not 0 <= rssi <= 31:
        return Signal(rssi, ber if ber is not None else 99, None, None)
    dbm = -113 + 2 * rssi
    bars = 0 if rssi < 2 else 1 if rssi < 10 else 2 if rssi < 15 else 3 if rssi < 20 else 4
    return Signal(rssi, ber if ber is not None else 99, dbm, bars)


REG_REGISTERED = frozenset({1, 5, 6, 7, 9, 10})   # home/roaming incl. SMS-only, CSFB


@dataclass(frozen=True)
class Registration:
    stat: int
    lac: str | None = None
    ci: str | None = None
    act: int | None = None

    @property
    def registered(self) -> bool:
        return self.stat in REG_REGISTERED

    @property
    def roaming(self) -> bool:
        return self.stat in (5, 7, 10)

    @property
    def denied(self) -> bool:
        return self.stat == 3


def parse_creg(line: str, *, solicited: bool) -> Registration:
    """+CREG/+CGREG/+CEREG.  The read answer starts with ``<n>``, a URC does not."""
    prefix = line.split(":", 1)[0]
    parts = split_params(_body(line, prefix))
    if solicited:
        parts = parts[1:]
    stat = _int(parts[0]) if parts else None
    if stat is None:
        raise ValueError(f"bad registration line {line!r}")
    lac = parts[1] or None if len(parts) > 1 else None
    ci = parts[2] or None if len(parts) > 2 else None
    act = _int(parts[3]) if len(parts) > 3 else None
    return Registration(stat, lac, ci, act)


@dataclass(frozen=True)
class Operator:
    mode: int
    name: str | None
    act: int | None


def parse_cops(line: str) -> Operator:
    parts = split_params(_body(line, "+COPS"))
    mode = _int(parts[0]) or 0
    name = parts[2] if len(parts) > 2 and parts[2] else None
    act = _int(parts[3]) if len(parts) > 3 else None
    return Operator(mode, name, act)


def parse_cpin(line: str) -> str:
    """``+CPIN: READY`` / ``SIM PIN`` / ``SIM PUK`` ... (TS 27.007 8.3)."""
    return _body(line, "+CPIN").strip('"').upper()


@dataclass(frozen=True)
class Storage:
    mem: str | None
    used: int
    total: int


def parse_cpms(line: str) -> list[Storage]:
    """Read form ``"SM",1,30,...`` or set form ``1,30,1,30,1,30``."""
    parts = split_params(_body(line, "+CPMS"))
    out: list[Storage] = []
    i = 0
    while i < len(parts):
        mem: str | None = None
        if _int(parts[i]) is None:
            mem = parts[i]
            i += 1
        if i + 1 >= len(parts):
            break
        used, total = _int(parts[i]), _int(parts[i + 1])
        if used is None or total is None:
            raise ValueError(f"bad +CPMS {line!r}")
        out.append(Storage(mem, used, total))
        i += 2
    return out


@dataclass(frozen=True)
class StoredPdu:
    index: int | None     # None for +CMGR (the caller knows the index)
    stat: int             # 0 unread, 1 read, 2 unsent, 3 sent (TS 27.005 3.1)
    length: int
    pdu: str


def parse_cmgl(lines: list[str]) -> list[StoredPdu]:
    """``+CMGL: <index>,<stat>,[<alpha>],<length>`` each followed by its PDU line."""
    out: list[StoredPdu] = []
    it = iter(lines)
    for line in it:
        if not line.startswith("+CMGL"):
            continue
        parts = split_params(_body(line, "+CMGL"))
        pdu = next(it, "")
        if len(parts) < 3:      # <index>,<stat>,[<alpha>,]<length>: a garbled line
            raise ValueError(f"bad +CMGL entry {line!r}")
        index, stat, length = _int(parts[0]), _int(parts[1]), _int(parts[-1])
        if index is None or stat is None or length is None or not _is_hex(pdu):
            raise ValueError(f"bad +CMGL entry {line!r} / {pdu!r}")
        out.append(StoredPdu(index, stat, length, pdu.upper()))
    return out


def parse_cmgr(lines: list[str]) -> StoredPdu | None:
    """``+CMGR: <stat>,[<alpha>],<length>`` + PDU; None for an empty slot."""
    for i, line in enumerate(lines):
        if line.startswith("+CMGR"):
            parts = split_params(_body(line, "+CMGR"))
            pdu = lines[i + 1] if i + 1 < len(lines) else ""
            stat, length = _int(parts[0]), _int(parts[-1])
            if stat is None or length is None or not _is_hex(pdu):
                raise ValueError(f"bad +CMGR {line!r} / {pdu!r}")
            return StoredPdu(None, stat, length, pdu.upper())
    return None


def parse_cmgs(lines: list[str]) -> int:
    """``+CMGS: <mr>[,<ackpdu>]`` -> TP-MR (0..255)."""
    for line in lines:
        if line.startswith("+CMGS"):
            mr = _int(split_params(_body(line, "+CMGS"))[0])
            if mr is not None and 0 <= mr <= 255:
                return mr
    raise ValueError(f"no +CMGS reference in {lines!r}")


def _maybe_ucs2(text: str) -> str:
    """Undo UCS-2 hex some modems use for strings when +CSCS="UCS2"."""
    if len(text) >= 8 and len(text) % 4 == 0 and _is_hex(text) and text.startswith("00"):
        try:
            return bytes.fromhex(text).decode("utf-16-be")
        except UnicodeDecodeError:
            return text
    return text


def parse_csca(line: str) -> str | None:
    parts = split_params(_body(line, "+CSCA"))
    number = _maybe_ucs2(parts[0]) if parts and parts[0] else ""
    if not number:
        return None
    ton = _int(parts[1]) if len(parts) > 1 else None
    if ton == 145 and not number.startswith("+"):
        number = "+" + number
    return number


def parse_cnum(lines: list[str]) -> list[str]:
    """``+CNUM: [<alpha>],<number>,<type>`` lines -> numbers (``+`` for type 145)."""
    out: list[str] = []
    for line in lines:
        if not line.startswith("+CNUM"):
            continue
        parts = split_params(_body(line, "+CNUM"))
        if len(parts) < 2 or not parts[1]:
            continue
        number = _maybe_ucs2(parts[1])
        if len(parts) > 2 and _int(parts[2]) == 145 and not number.startswith("+"):
            number = "+" + number
        out.append(number)
    return out


def parse_index_urc(line: str) -> tuple[str, int]:
    """``+CMTI: "SM",3`` / ``+CDSI: "SR",1`` -> (memory, index)."""
    prefix = line.split(":", 1)[0]
    parts = split_params(_body(line, prefix))
    index = _int(parts[-1])
    if index is None or len(parts) < 2:
        raise ValueError(f"bad indication {line!r}")
    return parts[0], index


# +CUSD <m> (TS 27.007 7.15): what the network's answer means.
USSD_STATUS = {
    0: "no further action required",
    1: "further action required (the network offers a menu)",
    2: "USSD terminated by the network",
    3: "another local client has responded",
    4: "operation not supported",
    5: "network time out",
}
# Answers that carry the network's text; 3, 4 and 5 say the request failed.
USSD_ANSWERED = frozenset({0, 1, 2})
USSD_MENU_ENDED = "smsd does not answer USSD menus: the session was ended (AT+CUSD=2)"


def is_ussd_code(code: str) -> bool:
    """What a modem may be given after AT+CUSD=1: 1 to 32 of 0-9, * and #."""
    return bool(_USSD.match(code))


@dataclass(frozen=True)
class Ussd:
    status: int          # 0 done, 1 further action, 2 terminated, 4 not supported, 5 timeout
    text: str | None
    dcs: int | None

    @property
    def meaning(self) -> str:
        return USSD_STATUS.get(self.status, "unknown status")

    def report_lines(self) -> list[str]:
        """What the CLIs print: the network's text, the status, and a note for a menu."""
        lines = [self.text or "(the network sent no text)", f"status {self.status}: {self.meaning}"]
        return [*lines, USSD_MENU_ENDED] if self.status == 1 else lines


def _cbs_charset(dcs: int | None) -> str | None:
    """Character set of a USSD/CBS data coding scheme (TS 23.038 clause 5)."""
    if dcs is None:
        return None
    if dcs & 0xF0 == 0x00 or dcs == 0x10:      # language groups: GSM 7-bit
        return "gsm7"
    if dcs == 0x11:
        return "ucs2"
    if dcs & 0xC0 == 0x40 or dcs & 0xF0 == 0xF0:  # general data coding / data coding
        return ("gsm7", "8bit", "ucs2", None)[(dcs >> 2) & 3]
    return None


def parse_cusd(line: str, *, packed: bool = False) -> Ussd:
    """``+CUSD: <m>[,<str>,<dcs>]``.

    ``packed``: the modem gives GSM 7-bit text as packed hex (Huawei without
    ^USSDMODE=0), which is unpacked when the DCS says GSM 7-bit (0x0F etc.).
    """
    parts = split_params(_body(line, "+CUSD"))
    status = _int(parts[0])
    if status is None:
        raise ValueError(f"bad +CUSD {line!r}")
    text = parts[1] if len(parts) > 1 else None
    dcs = _int(parts[2]) if len(parts) > 2 else None
    charset = _cbs_charset(dcs)
    if text and charset == "ucs2" and _is_hex(text):
        try:
            text = bytes.fromhex(text).decode("utf-16-be")
        except UnicodeDecodeError:
            pass
    elif text and packed and charset == "gsm7" and _is_hex(text):
        data = bytes.fromhex(text)
        septets = gsm7.unpack_septets(data, len(data) * 8 // 7)
        if septets and septets[-1] == 0x0D and len(data) % 7 == 0:
            septets = septets[:-1]            # TS 23.038 6.1.2.3.1: CR pad of a full octet
        elif len(data) * 8 % 7 == 0 and septets and septets[-1] == 0:
            septets = septets[:-1]
        text = gsm7.decode_septets(septets)
    return Ussd(status, text, dcs)


def parse_info(lines: list[str], prefix: str) -> str | None:
    """+CGMI/+CGMM/+CGMR/+CGSN/+CIMI: one text line, sometimes prefixed."""
    for line in lines:
        text = line
        if text.startswith(prefix):
            text = text[len(prefix):].lstrip(": ")
        text = text.strip().strip('"')
        if text:
            return text
    return None
