"""SMS commands of the simulated modem, as TS 27.005 (PDU mode) defines them.

Text mode (+CMGF=1) is accepted as a setting, but like many data-card
firmwares the simulator then refuses the SMS commands with ``+CMS ERROR``.
"""

from __future__ import annotations

from smsd.codec import pdu as codec
from smsd.errors import PduError
from smsd.simulator.at import AtEngine, Handler, int_arg
from smsd.simulator.state import (
    STAT_REC_READ,
    STAT_REC_UNREAD,
    STAT_STO_SENT,
    STAT_STO_UNSENT,
    CommandFailed,
    Memory,
    Prompt,
    Reply,
    cms,
    error,
)

# 27.005 3.5.1: <length> counts TPDU octets; an SMS-SUBMIT TPDU is at most
# 164 octets (23.040 9.2.2.2: 7 header + 12 address + 1 VP(7) + 140 UD, rounded).
MAX_TPDU = 164


def tpdu_length(hex_pdu: str) -> int:
    """Octets after the SMSC field, the <length> of +CMGR/+CMGL/+CMT/+CDS."""
    data = bytes.fromhex(hex_pdu)
    return len(data) - 1 - data[0]


def _require_pdu_mode(e: AtEngine) -> None:
    if e.state.settings.cmgf != 0:
        raise cms(302)


def _mem(e: AtEngine, role: int) -> Memory:
    return e.state.memories[e.state.settings.cpms[role]]


def _cmgf(e: AtEngine, op: str, args: list[str]) -> list[str]:
    s = e.state.settings
    if op == "test":
        return ["+CMGF: (0,1)"]
    if op == "read":
        return [f"+CMGF: {s.cmgf}"]
    if op == "set":
        s.cmgf = int_arg(args, 0, range(2), default=0)
        return []
    raise error()


def _csms(e: AtEngine, op: str, args: list[str]) -> list[str]:
    s = e.state.settings
    if op == "test":
        return ["+CSMS: (0,1)"]
    if op == "read":
        return [f"+CSMS: {s.csms},1,1,1"]
    if op == "set":
        s.csms = int_arg(args, 0, range(2))
        return ["+CSMS: 1,1,1"]
    raise error()


def _csmp(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op == "read":
        return ["+CSMP: 17,167,0,0"]
    if op in ("set", "test"):
        return []
    raise error()


def _cpms(e: AtEngine, op: str, args: list[str]) -> list[str]:
    """27.005 3.2.2: mem1 read/delete, mem2 write/send, mem3 receive."""
    roles = e.state.profile.mem_roles
    if op == "test":
        lists = ["(" + ",".join(f'"{m}"' for m in role) + ")" for role in roles]
        return ["+CPMS: " + ",".join(lists)]
    e.require_sim(sms=True)
    s = e.state.settings
    mems = e.state.memories
    if op == "read":
        return ["+CPMS: " + ",".join(
            f'"{name}",{mems[name].used},{mems[name].capacity}' for name in s.cpms)]
    if op != "set" or not 1 <= len(args) <= 3:
        raise error()
    chosen = list(s.cpms)
    for i, name in enumerate(args):
        name = name.upper()
        if name not in roles[i] or name not in mems:
            raise cms(302)
        chosen[i] = name
    s.cpms = (chosen[0], chosen[1], chosen[2])
    e.host.storage_freed()   # a new receive memory may have room for held messages
    return ["+CPMS: " + ",".join(f"{mems[n].used},{mems[n].capacity}" for n in s.cpms)]


def _cnmi(e: AtEngine, op: str, args: list[str]) -> list[str]:
    s = e.state.settings
    if op == "test":
        return [e.state.profile.cnmi_test]
    if op == "read":
        return ["+CNMI: " + ",".join(str(v) for v in s.cnmi)]
    if op != "set" or len(args) > 5:
        raise error()
    values: list[int] = []
    for i in range(5):
        try:
            v = int_arg(args, i, default=0)
        except CommandFailed:
            raise cms(303) from None
        if v not in e.state.profile.cnmi[i]:
            raise cms(303)
        values.append(v)
    s.cnmi = (values[0], values[1], values[2], values[3], values[4])
    e.host.indications_changed()
    return []


def _csca(e: AtEngine, op: str, args: list[str]) -> list[str]:
    sim = e.state.sim
    if op == "test":
        return []
    e.require_sim(sms=True)
    if op == "read":
        toa = 145 if sim.smsc.startswith("+") else 129
        return [f'+CSCA: "{sim.smsc}",{toa}']
    if op == "set" and args and args[0]:
        number = args[0]
        digits = number[1:] if number.startswith("+") else number
        if not digits.isdigit() or len(digits) > 20:
            raise cms(304)
        sim.smsc = number
        return []
    raise error()


def _cmgs(e: AtEngine, op: str, args: list[str]) -> list[str] | Prompt:
    if op == "test":
        return []
    if op != "set":
        raise error()
    _require_pdu_mode(e)
    e.require_sim(sms=True)
    try:
        length = int(args[0])
    except (ValueError, IndexError):
        raise cms(304) from None
    if not 1 <= length <= MAX_TPDU:
        raise cms(304)
    return Prompt(length)


def finish_submit(e: AtEngine, length: int, body: str | None) -> Reply:
    """The PDU typed at the ``> `` prompt (None = cancelled with ESC)."""
    if body is None:
        return Reply([], "OK")
    try:
        hex_pdu = "".join(body.split())
        data = bytes.fromhex(hex_pdu)
        if not data or len(data) - 1 - data[0] != length:
            raise cms(304)
        decoded = codec.decode(hex_pdu)
        if not isinstance(decoded, codec.SubmitPdu):
            raise cms(304)
        if not e.state.registered:
            raise cms(331)
        code = e.host.injected_failure()
        if code is not None:
            raise cms(code)
    except (ValueError, PduError):
        return Reply([], e._final_error(cms(304)))
    except CommandFailed as exc:
        return Reply([], e._final_error(exc))
    mr = e.state.take_mr()
    e.host.sms_submitted(hex_pdu.upper(), mr)
    return Reply([f"+CMGS: {mr}"], "OK")


def _cmgr(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op == "test":
        return []
    if op != "set":
        raise error()
    _require_pdu_mode(e)
    e.require_sim(sms=True)
    mem = _mem(e, 0)
    index = int_arg(args, 0)
    slot = mem.slots.get(index)
    if slot is None:
        raise cms(321)
    line = f"+CMGR: {slot.stat},,{tpdu_length(slot.pdu)}"
    if slot.stat == STAT_REC_UNREAD:
        slot.stat = STAT_REC_READ
    return [line, slot.pdu]


def _cmgl(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op == "test":
        return ["+CMGL: (0-4)"]
    if op not in ("set", "exec"):
        raise error()
    _require_pdu_mode(e)
    e.require_sim(sms=True)
    try:
        stat = int_arg(args, 0, range(5), default=0)
    except CommandFailed:
        raise cms(304) from None
    mem = _mem(e, 0)
    out: list[str] = []
    for index in sorted(mem.slots):
        slot = mem.slots[index]
        if stat != 4 and slot.stat != stat:
            continue
        out.append(f"+CMGL: {index},{slot.stat},,{tpdu_length(slot.pdu)}")
        out.append(slot.pdu)
        if slot.stat == STAT_REC_UNREAD:
            slot.stat = STAT_REC_READ
    return out


# 27.005 3.5.4 <delflag>: which <stat> values each flag deletes (0 = the index only).
_DELFLAG = {
    1: {STAT_REC_READ},
    2: {STAT_REC_READ, STAT_STO_SENT},
    3: {STAT_REC_READ, STAT_STO_SENT, STAT_STO_UNSENT},
    4: {STAT_REC_UNREAD, STAT_REC_READ, STAT_STO_SENT, STAT_STO_UNSENT},
}


def _cmgd(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op == "test":
        mem = _mem(e, 0)
        return [f"+CMGD: ({','.join(str(i) for i in sorted(mem.slots))}),(0-4)"]
    if op != "set":
        raise error()
    e.require_sim(sms=True)
    mem = _mem(e, 0)
    index = int_arg(args, 0)
    flag = int_arg(args, 1, range(5), default=0)
    if flag == 0:
        if not mem.valid_index(index):
            raise cms(321)
        mem.slots.pop(index, None)
    else:
        for i in [i for i, s in mem.slots.items() if s.stat in _DELFLAG[flag]]:
            del mem.slots[i]
    e.host.storage_freed()
    return []


def _cnma(e: AtEngine, op: str, args: list[str]) -> list[str]:
    """27.005 3.4.4: only meaningful while a +CMT/+CDS waits for its acknowledgement."""
    s = e.state.settings
    if op == "test":
        return ["+CNMA: (0-2)"]
    if op not in ("exec", "set"):
        raise error()
    if s.pending_cnma <= 0:
        raise cms(340)
    s.pending_cnma -= 1
    return []


SMS_HANDLERS: dict[str, Handler] = {
    "+CMGF": _cmgf,
    "+CSMS": _csms,
    "+CSMP": _csmp,
    "+CPMS": _cpms,
    "+CNMI": _cnmi,
    "+CSCA": _csca,
    "+CMGS": _cmgs,
    "+CMGR": _cmgr,
    "+CMGL": _cmgl,
    "+CMGD": _cmgd,
    "+CNMA": _cnma,
}
