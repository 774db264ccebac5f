"""Vendor-only AT commands of the simulated modems (Huawei, Quectel, SIMCom, Sierra).

Which model answers which command is decided by Profile.vendor_commands;
every other model answers ERROR, as a real one would.
"""

from __future__ import annotations

from smsd.simulator.at import AtEngine, Handler, int_arg
from smsd.simulator.state import cme, error


def _curc(e: AtEngine, op: str, args: list[str]) -> list[str]:
    """Huawei ^CURC: 0 stops the periodic ^RSSI/^BOOT/^MODE reports."""
    s = e.state.settings
    if op == "test":
        return ["^CURC: (0-1)"]
    if op == "read":
        return [f"^CURC: {s.curc}"]
    if op == "set":
        s.curc = int_arg(args, 0, range(2))
        return []
    raise error()


def _hw_cpin(e: AtEngine, op: str, args: list[str]) -> list[str]:
    """Huawei ^CPIN?: code, times left, PUK times, PIN times, PUK2, PIN2."""
    if op != "read":
        raise error()
    sim = e.state.sim
    if not sim.present:
        raise cme(10)
    code = "READY" if sim.ready else sim.state
    left = sim.puk_attempts if sim.puk_required else sim.pin_attempts
    return [f"^CPIN: {code},{left},{sim.puk_attempts},{sim.pin_attempts},10,3"]


def _hcsq(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op != "read":
        raise error()
    if not e.state.registered:
        return ['^HCSQ: "NOSERVICE"']
    return ['^HCSQ: "LTE",49,39,119,21']


def _sysinfoex(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op != "exec":
        raise error()
    srv = 2 if e.state.registered else 0
    return [f'^SYSINFOEX: {srv},3,0,1,,6,"LTE",101,"LTE"']


# AT+QURCCFG="urcport" values of the EC2x (Quectel EC25 AT manual): the USB
# AT interface (default), the USB modem interface, the main UART.
URC_PORTS = ("usbat", "usbmodem", "uart1")


def _qurccfg(e: AtEngine, op: str, args: list[str]) -> list[str]:
    """Quectel +QURCCFG="urcport"[,<port>]: which port carries URCs.

    Write form answers OK and takes effect at once; the read form answers
    ``+QURCCFG: "urcport","<port>"``.  The value lives in NV memory
    (ModemState.qurc_port), so it outlasts a reboot.
    """
    if op == "test":
        return ['+QURCCFG: "urcport",(' + ",".join(f'"{p}"' for p in URC_PORTS) + ")"]
    if op != "set" or not args or args[0].lower() != "urcport":
        raise error()
    if len(args) == 1:
        return [f'+QURCCFG: "urcport","{e.state.qurc_port}"']
    port = args[1].lower()
    if len(args) > 2 or port not in URC_PORTS:
        raise error()
    e.state.qurc_port = port
    return []


def _qindcfg(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op == "test":
        return ['+QINDCFG: "all",(0,1),(0,1)']
    if op == "set" and args:
        if len(args) == 1:
            return [f'+QINDCFG: "{args[0]}",1']
        return []
    raise error()


def _qpinc(e: AtEngine, op: str, args: list[str]) -> list[str]:
    sim = e.state.sim
    if op == "read":
        return [f'+QPINC: "SC",{sim.pin_attempts},{sim.puk_attempts}', '+QPINC: "P2",3,10']
    if op == "set" and args:
        return [f'+QPINC: "SC",{sim.pin_attempts},{sim.puk_attempts}']
    if op == "test":
        return ['+QPINC: ("SC","P2")']
    raise error()


def _qcsq(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op != "exec":
        raise error()
    if not e.state.registered:
        return ['+QCSQ: "NOSERVICE"']
    return ['+QCSQ: "LTE",-73,-95,160,-9']


def _qnwinfo(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op != "exec":
        raise error()
    if not e.state.registered:
        return ["+QNWINFO: No Service"]
    return [f'+QNWINFO: "FDD LTE","{e.state.operator_numeric}","LTE BAND 20",6300']


def _spic(e: AtEngine, op: str, args: list[str]) -> list[str]:
    """SIMCom +SPIC: PIN1, PUK1, PIN2, PUK2 tries left."""
    if op != "exec":
        raise error()
    sim = e.state.sim
    return [f"+SPIC: {sim.pin_attempts},{sim.puk_attempts},3,10"]


def _cpsi(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op != "read":
        raise error()
    if not e.state.registered:
        return ["+CPSI: NO SERVICE,Online"]
    mcc, mnc = e.state.operator_numeric[:3], e.state.operator_numeric[3:]
    return [f"+CPSI: LTE,Online,{mcc}-{mnc},0x1A2B,30000001,301,EUTRAN-BAND20,6300,"
            "3,3,-9,-95,-73,14"]


def _csub(e: AtEngine, op: str, args: list[str]) -> list[str]:
    if op != "exec":
        raise error()
    return ["+CSUB: B04V03", "+CSUB: SIM7600M22_V2.0"]


def _gstatus(e: AtEngine, op: str, args: list[str]) -> list[str]:
    """Sierra !GSTATUS?: a multi-line status table, label/value pairs in tab-separated columns.

    The layout is the MC73xx one: a "!GSTATUS: " header, two columns per row,
    a blank line before the signal rows; the values depend on radio and
    registration state.
    """
    if op not in ("read", "exec"):
        raise error()
    st = e.state
    mode = "ONLINE" if st.settings.cfun == 1 else "LOW POWER MODE"
    lines = ["!GSTATUS: ",
             f"Current Time:  {1000 + st.boot_count}\t\tTemperature: 38",
             f"Reset Counter: {st.boot_count}\t\tMode:        {mode}         "]
    if not st.registered:
        return [*lines,
                "System mode:   No service \tPS state:    Not attached     ",
                "EMM state:     Deregistered   \tNo Service     ",
                "RRC state:     RRC Idle       "]
    dbm = -113 + 2 * st.rssi
    return [*lines,
            "System mode:   LTE        \tPS state:    Attached     ",
            "LTE band:      B20    \t\tLTE bw:      10 MHz  ",
            "LTE Rx chan:   6300\t\tLTE Tx chan: 24300",
            "EMM state:     Registered     \tNormal Service ",
            "RRC state:     RRC Idle       ",
            "IMS reg state: No Srv  \t\t",
            "",
            f"RSSI (dBm):    {dbm}\t\tTx Power:    0",
            "RSRP (dBm):    -95\t\tTAC:         1A2B (6699)",
            "RSRQ (dB):     -9\t\tCell ID:     01C3D4E5 (29611237)",
            "SINR (dB):     14.0"]


VENDOR_HANDLERS: dict[str, Handler] = {
    "^CURC": _curc,
    "^CPIN": _hw_cpin,
    "^HCSQ": _hcsq,
    "^SYSINFOEX": _sysinfoex,
    "+QURCCFG": _qurccfg,
    "+QINDCFG": _qindcfg,
    "+QPINC": _qpinc,
    "+QCSQ": _qcsq,
    "+QNWINFO": _qnwinfo,
    "+SPIC": _spic,
    "+CPSI": _cpsi,
    "+CSUB": _csub,
    "!GSTATUS": _gstatus,
}
