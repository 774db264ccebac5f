"""Whatever a driver types, the simulated modem answers with a well-formed result."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from smsd.simulator.at import AtEngine
from smsd.simulator.general import GENERAL_HANDLERS
from smsd.simulator.profiles import PROFILES, identity_for
from smsd.simulator.sms import SMS_HANDLERS, finish_submit
from smsd.simulator.state import Memory, ModemState, SimCard
from smsd.simulator.vendor import VENDOR_HANDLERS

FINALS = ("OK", "ERROR", "+CME ERROR: ", "+CMS ERROR: ")


class _Host:
    """Records what the interpreter asks of the modem; does nothing else."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def urc(self, text: str, *, sms: bool = False) -> None:
        self.calls.append("urc")

    def after(self, delay_s: float, fn: Callable[[], None]) -> None:
        self.calls.append("after")

    def sim_became_ready(self) -> None:
        self.calls.append("ready")

    def registration_changed(self) -> None: ...

    def sms_submitted(self, hex_pdu: str, mr: int) -> None:
        self.calls.append("submitted")

    def injected_failure(self) -> int | None:
        return None

    def storage_freed(self) -> None: ...

    def indications_changed(self) -> None: ...

    def power_cycle(self) -> None: ...


def _engine(profile: str) -> AtEngine:
    prof = PROFILES[profile]
    memories = {n: Memory(n, c, prof.first_index) for n, c in prof.memories.items()}
    state = ModemState(profile=prof, identity=identity_for(0),
                       sim=SimCard(pin="1234", own_number="+447700900001"), memories=memories)
    engine = AtEngine(state, _Host(), {**GENERAL_HANDLERS, **SMS_HANDLERS, **VENDOR_HANDLERS})
    engine.power_on()
    return engine


COMMANDS = st.sampled_from(["AT", "ATE0", "ATI", "AT+CPIN?", 'AT+CPIN="1234"', "AT+CMGF=0",
                            "AT+CNMI=2,1,0,2,0", "AT+CPMS?", "AT+CMGL=4", "AT+CMGR=1",
                            "AT+CMGD=1,4", "AT+CMGS=20", "AT^CURC=0", "AT+QCCID", "AT+COPS=?"])
NOISE = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=255), max_size=40)


@settings(max_examples=300, deadline=None)
@given(profile=st.sampled_from(sorted(PROFILES)),
       lines=st.lists(st.one_of(COMMANDS, NOISE, NOISE.map(lambda s: "AT" + s)), max_size=12),
       body=st.one_of(st.none(), NOISE, st.text(alphabet="0123456789ABCDEF", max_size=60)))
def test_every_line_gets_a_final_result_or_is_ignored(profile, lines, body):
    """Each command line ends in exactly one final result (or a prompt); nothing raises."""
    engine = _engine(profile)
    for line in lines:
        reply = engine.execute(line)
        if reply is None:
            assert "AT" not in line.upper()
            continue
        if reply.prompt is not None:
            assert reply.final is None
            reply = finish_submit(engine, reply.prompt.length, body)
        assert reply.final is not None and reply.final.startswith(FINALS)
        rendered = engine.render(reply)
        # V1: <CR><LF>code<CR><LF>; V0: a numeric code ends with <CR> (V.250 5.7.1/5.7.2)
        assert rendered.endswith(b"\r\n" if engine.state.settings.verbose else b"\r")
