"""Phone calls on the fake AMI: the events Asterisk 20.20.1 sends, in its order.

Written from tests/asterisk/data/ami-call-tracking.txt (the lab, PJSIP,
app_dial): a call from the carrier to a DID that rings a phone (section 1 and
3: what smsd's user receives with the sample eventfilters), and a phone
dialling out through the carrier (section 2).  Each event carries the
channel block in Asterisk's header order; DialBegin adds the dialled leg as
``Dest*`` headers; BridgeEnter starts with the bridge block.  CoreShowChannels
lists the live channels as ``CoreShowChannel`` events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.fakes.asterisk_ami import FakeAmi

UNKNOWN = "<unknown>"
STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up"}


@dataclass
class Chan:
    name: str
    state: int
    cid_num: str
    cid_name: str
    cl_num: str = UNKNOWN
    cl_name: str = UNKNOWN
    context: str = ""
    exten: str = ""
    uniqueid: str = ""
    linkedid: str = ""
    application: str = ""
    app_data: str = ""
    bridge: str = ""

    def block(self, prefix: str = "") -> list[str]:
        p = prefix
        return [f"{p}Channel: {self.name}", f"{p}ChannelState: {self.state}",
                f"{p}ChannelStateDesc: {STATE_DESC[self.state]}",
                f"{p}CallerIDNum: {self.cid_num}", f"{p}CallerIDName: {self.cid_name}",
                f"{p}ConnectedLineNum: {self.cl_num}", f"{p}ConnectedLineName: {self.cl_name}",
                f"{p}Language: en", f"{p}AccountCode: ", f"{p}Context: {self.context}",
                f"{p}Exten: {self.exten}", f"{p}Priority: 1", f"{p}Uniqueid: {self.uniqueid}",
                f"{p}Linkedid: {self.linkedid}"]


@dataclass
class FakeCall:
    """One two-leg call: ``phone`` (the PBX user's channel) and ``trunk`` (the carrier's)."""

    calls: FakeCalls
    phone: Chan
    trunk: Chan
    inbound: bool
    bridge_id: str
    ended: bool = field(default=False)

    def answer(self) -> None:
        """The called side answers: both legs Up, then both enter one bridge."""
        ev = self.calls.event
        first, second = (self.phone, self.trunk) if self.inbound else (self.trunk, self.phone)
        for ch in (first, second):
            ch.state = 6
            ev("Newstate", ch.block())
        if self.inbound:
            self.phone.exten = ""     # the Dial()ed leg leaves the dialplan
        else:
            self.trunk.exten = ""
        for n, ch in enumerate((first, second), 1):
            ch.bridge = self.bridge_id
            ev("BridgeEnter", [f"BridgeUniqueid: {self.bridge_id}", "BridgeType: basic",
                               "BridgeTechnology: simple_bridge", f"BridgeCreator: {UNKNOWN}",
                               f"BridgeName: {UNKNOWN}", f"BridgeNumChannels: {n}",
                               "BridgeVideoSourceMode: none", *ch.block()])

    def hangup(self) -> None:
        """The far end hangs up (inbound) or the phone does (outbound): both legs go."""
        if self.ended:
            return
        self.ended = True
        ev = self.calls.event
        leaving = self.trunk if self.inbound else self.phone
        ev("HangupRequest", [*leaving.block(), "Cause: 16"])
        for ch in (self.phone, self.trunk):
            ev("Hangup", [*ch.block(), "Cause: 16", "Cause-txt: Normal Clearing"])
            self.calls.live.pop(ch.name, None)


class FakeCalls:
    """The fake PBX's channels; events go to every logged-in session of ``ami``."""

    def __init__(self, ami: FakeAmi, trunk: str = "classound") -> None:
        self.ami = ami
        self.trunk = trunk
        self.live: dict[str, Chan] = {}
        self._seq = 0
        self._uid = 1796633562

    def event(self, name: str, lines: list[str]) -> None:
        self.ami.broadcast([f"Event: {name}", "Privilege: call,all", *lines])

    def _chan(self, tech_resource: str, **kw: object) -> Chan:
        ch = Chan(name=f"{tech_resource}-{self._seq:08x}", uniqueid=f"{self._uid}.{self._seq}",
                  **kw)  # type: ignore[arg-type]
        self._seq += 1
        self.live[ch.name] = ch
        return ch

    def ring_phone(self, caller: str, did: str, phone: str = "100",
                   phone_name: str = "Alice Agent") -> FakeCall:
        """The carrier's caller dials ``did``; Dial(PJSIP/<phone>) rings the phone
        (section 1 of the capture, up to Ringing)."""
        trunk = self._chan(f"PJSIP/{self.trunk}", state=4, cid_num=caller, cid_name=caller,
                           context="from-classound", exten=did, application="Dial",
                           app_data=f"PJSIP/{phone},30")
        trunk.linkedid = trunk.uniqueid
        self.event("Newchannel", trunk.block())
        leg = self._chan(f"PJSIP/{phone}", state=0, cid_num=phone, cid_name=phone_name,
                         context="from-internal", exten="s", linkedid=trunk.uniqueid,
                         application="AppDial", app_data="(Outgoing Line)")
        self.event("Newchannel", leg.block())
        leg.cl_num, leg.cl_name, leg.exten = caller, caller, did
        self.event("NewConnectedLine", leg.block())
        self.event("DialBegin", [*trunk.block(), *leg.block("Dest"), f"DialString: {phone}"])
        trunk.cl_num, trunk.cl_name = phone, phone_name
        self.event("NewConnectedLine", trunk.block())
        leg.state = 5
        self.event("Newstate", leg.block())
        return FakeCall(self, leg, trunk, True, f"bridge-{trunk.uniqueid}")

    def phone_dials(self, number: str, phone: str = "100",
                    phone_name: str = "Alice Agent") -> FakeCall:
        """The phone dials ``number``; Dial(PJSIP/<number>@<trunk>) (section 2, up to
        the carrier's Ringing)."""
        own = self._chan(f"PJSIP/{phone}", state=4, cid_num=phone, cid_name=phone_name,
                         context="from-internal", exten=number, application="Dial",
                         app_data=f"PJSIP/{number}@{self.trunk},30")
        own.linkedid = own.uniqueid
        self.event("Newchannel", own.block())
        leg = self._chan(f"PJSIP/{self.trunk}", state=0, cid_num=UNKNOWN, cid_name=UNKNOWN,
                         context="from-classound", exten="s", linkedid=own.uniqueid,
                         application="AppDial", app_data="(Outgoing Line)")
        self.event("Newchannel", leg.block())
        leg.cid_num, leg.cl_num, leg.cl_name, leg.exten = number, phone, phone_name, number
        self.event("NewConnectedLine", leg.block())
        self.event("DialBegin", [*own.block(), *leg.block("Dest"),
                                 f"DialString: {number}@{self.trunk}"])
        own.cl_num = number
        self.event("NewConnectedLine", own.block())
        leg.state = 5
        self.event("Newstate", leg.block())
        return FakeCall(self, own, leg, False, f"bridge-{own.uniqueid}")

    def core_show_channels(self, idl: list[str]) -> list[list[str]]:
        """The answer to CoreShowChannels: Success, one event per channel, Complete."""
        out = [["Response: Success", *idl, "EventList: start",
                "Message: Channels will follow"]]
        for ch in reversed(self.live.values()):   # newest first, as captured
            out.append(["Event: CoreShowChannel", *idl, *ch.block(),
                        f"Application: {ch.application}", f"ApplicationData: {ch.app_data}",
                        "Duration: 00:00:03", f"BridgeId: {ch.bridge}"])
        out.append(["Event: CoreShowChannelsComplete", *idl, "EventList: Complete",
                    f"ListItems: {len(self.live)}"])
        return out
