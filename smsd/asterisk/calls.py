"""The phones' current calls, followed from AMI events ("SMS to this caller").

Asterisk 20 tells the AMI about every channel (tests/asterisk/data/
ami-call-tracking.txt, from the lab): ``Newchannel`` when a phone dials
(``ChannelState: 4`` Ring, ``Exten`` the dialled number) or when Asterisk
rings it (``ChannelState: 0`` Down), ``NewConnectedLine`` once the other
party is known (``ConnectedLineNum``), ``Newstate`` for Ringing and Up,
``DialBegin`` (the dialled leg in its ``Dest*`` headers), ``BridgeEnter``
when the two talk, ``Hangup`` at the end.  A phone's channel is named
``<tech>/<endpoint>-<sequence>`` (``PJSIP/100-00000001``), which ties it to
the user whose ``endpoint`` is ``pjsip:100``.

Only state is kept here (no I/O but the one ``CoreShowChannels`` after each
login): while AMI was down every event was missed, so the calls are dropped
when the link goes and listed afresh when it is back.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from smsd.errors import AmiError
from smsd.store.timefmt import utcnow

if TYPE_CHECKING:
    from smsd.asterisk.ami import AmiClient

log = structlog.get_logger(__name__)

# The events that move a channel (manager.conf eventfilters must let them through).
CALL_EVENTS = ("Newchannel", "NewConnectedLine", "Newstate", "DialBegin", "BridgeEnter",
               "Hangup")
# main/channel.h enum ast_channel_state -> what the console shows.
STATES = {"0": "down", "1": "reserved", "2": "off hook", "3": "dialling", "4": "ring",
          "5": "ringing", "6": "up", "7": "busy", "8": "dialling offhook", "9": "pre-ring"}
# What Asterisk writes where it has no number or name.
UNKNOWN = ("", "<unknown>")
# Calls kept at most (a PBX of thousands of channels, or a flood of fake events).
MAX_CHANNELS = 10_000

ChangeHook = Callable[[str], None]


@dataclass(frozen=True)
class Call:
    channel: str               # "PJSIP/100-00000001"
    endpoint: str              # "pjsip:100": the user's endpoint form
    direction: str | None      # "in": Asterisk rang the phone; "out": the phone dialled
    state: str                 # STATES value: "ringing", "up", ...
    number: str | None         # the other party's number when known
    name: str | None           # the other party's name when known
    since: datetime            # first seen (UTC)
    answered_at: datetime | None = None

    def as_json(self) -> dict[str, object]:
        return {"channel": self.channel, "direction": self.direction, "state": self.state,
                "number": self.number, "name": self.name, "since": self.since.isoformat(),
                "answered_at": self.answered_at.isoformat() if self.answered_at else None}


def endpoint_of(channel: str) -> str | None:
    """``PJSIP/100-00000001`` -> ``pjsip:100``; None for a channel with no endpoint
    (``Local/...;1``, ``Message/...``)."""
    tech, sep, rest = channel.partition("/")
    if not sep or tech.lower() in ("local", "message") or "-" not in rest:
        return None
    return f"{tech.lower()}:{rest.rsplit('-', 1)[0]}"


def normalise_endpoint(endpoint: str) -> str:
    """A user's endpoint as written in the config (``pjsip:100``, ``PJSIP/100``)."""
    tech, sep, rest = endpoint.replace("/", ":", 1).partition(":")
    return f"{tech.lower()}:{rest}" if sep else endpoint.lower()


def _known(value: str | None) -> str | None:
    return None if value is None or value.strip() in UNKNOWN else value.strip()


class CallTracker:
    """Every live channel of an endpoint, from the events of one AMI connection."""

    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self._clock = clock
        self._calls: dict[str, Call] = {}      # by channel name
        self._hooks: list[ChangeHook] = []
        self._ami: AmiClient | None = None
        self._synced = False                   # listed since the current login

    @property
    def tracking(self) -> bool:
        """AMI is up and the list is current (else no call is shown)."""
        return self._synced and (self._ami is None or self._ami.connected)

    def attach(self, ami: AmiClient) -> None:
        self._ami = ami
        for name in CALL_EVENTS:
            ami.on_event(name, self.on_event)

        async def resync() -> None:
            await self.resync(ami)

        ami.on_connected(resync)

    def on_change(self, hook: ChangeHook) -> None:
        """``hook(endpoint)`` after a call of ``endpoint`` started, changed or ended."""
        self._hooks.append(hook)

    def calls_of(self, endpoint: str) -> list[Call]:
        if not self.tracking:
            return []
        want = normalise_endpoint(endpoint)
        return sorted((c for c in self._calls.values() if c.endpoint == want),
                      key=lambda c: c.since)

    # --- events ---------------------------------------------------------------

    def on_event(self, headers: Mapping[str, str]) -> None:
        event = headers.get("Event", "")
        if event == "DialBegin" and "DestChannel" in headers:
            dest = {k[len("Dest"):]: v for k, v in headers.items() if k.startswith("Dest")}
            self._update(dest, new=False)
        if event == "Hangup":
            self._drop(headers.get("Channel", ""))
        else:
            self._update(headers, new=event == "Newchannel")

    def _update(self, h: Mapping[str, str], *, new: bool) -> None:
        channel = h.get("Channel", "")
        endpoint = endpoint_of(channel)
        if endpoint is None:
            return
        now = self._clock()
        old = self._calls.get(channel)
        state = STATES.get(h.get("ChannelState", ""), "unknown")
        if old is None:
            if len(self._calls) >= MAX_CHANNELS:
                log.warning("calls.too_many", channel=channel, limit=MAX_CHANNELS)
                return
            direction = None
            if new:  # a phone that dials starts in Ring; one Asterisk rings starts Down
                direction = "out" if h.get("ChannelState") == "4" else "in"
            old = Call(channel, endpoint, direction, state, None, None, now)
        number = _known(h.get("ConnectedLineNum"))
        if number is None and old.direction == "out" and h.get("Exten", "") not in ("", "s"):
            number = h["Exten"]   # dialled, not yet connected: the number typed
        name = _known(h.get("ConnectedLineName"))
        if number is None or number == old.number:
            number, name = old.number, name or old.name
        call = replace(old, state=state, number=number, name=None if name == number else name,
                       answered_at=old.answered_at or (now if state == "up" else None))
        if call != self._calls.get(channel):
            self._calls[channel] = call
            self._changed(endpoint)

    def _drop(self, channel: str) -> None:
        call = self._calls.pop(channel, None)
        if call is not None:
            self._changed(call.endpoint)

    def _changed(self, endpoint: str) -> None:
        for hook in list(self._hooks):
            try:
                hook(endpoint)
            except Exception:
                log.exception("calls.hook_failed", endpoint=endpoint)

    # --- (re)sync ------------------------------------------------------------------

    def _forget(self) -> None:
        """Events were missed (AMI went away): start again from an empty list."""
        self._synced = False
        endpoints = {c.endpoint for c in self._calls.values()}
        self._calls.clear()
        for endpoint in endpoints:
            self._changed(endpoint)

    async def resync(self, ami: AmiClient) -> None:
        """After a login: the live channels from CoreShowChannels replace the list."""
        self._forget()
        try:
            channels = await ami.channels()
        except AmiError as exc:
            # Without the "reporting" write class: calls start showing with the next ones.
            log.warning("calls.resync_failed", error=str(exc))
            channels = []
        self.load(channels)

    def load(self, channels: list[dict[str, str]]) -> None:
        """The list is exactly ``channels`` (CoreShowChannel headers), then follows events."""
        self._forget()
        now = self._clock()
        for h in channels:
            endpoint = endpoint_of(h.get("Channel", ""))
            if endpoint is None:
                continue
            # The leg Dial() created runs AppDial; the phone that dialled runs Dial itself.
            direction = "in" if h.get("Application") == "AppDial" else "out"
            since = now - _duration(h.get("Duration", ""))
            self._calls[h["Channel"]] = Call(h["Channel"], endpoint, direction, "unknown",
                                             None, None, since)
            self._update(h, new=False)
        self._synced = True
        log.info("calls.listed", channels=len(self._calls))


def _duration(text: str) -> timedelta:
    """CoreShowChannel's ``Duration: HH:MM:SS``; 0 when absent or odd."""
    try:
        h, m, s = (int(x) for x in text.split(":"))
    except ValueError:
        return timedelta(0)
    return timedelta(hours=h, minutes=m, seconds=s)
