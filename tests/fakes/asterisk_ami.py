"""A fake Asterisk 20 manager (AMI) on a real TCP socket.

Written from the wire captures of a real Asterisk 20.20.1
(``/work/shared/captures/asterisk-20/ami-transcript.txt``,
``pjsip-ami-transcript.txt``, ``edge-cases-transcript.txt``): the banner,
the Login answers (and the close after a refused login), header order of the
responses, the UserEvent echo, the async Originate answer followed by an
``OriginateResponse`` event carrying the ActionID, and MessageSend's
answers, including its failures for bad address forms.

It also plays a tiny dialplan: an Originate into ``Local/<exten>@<context>``
whose priorities include ``AGI(agi://...)`` makes it connect to that FastAGI
server as Asterisk's res_agi would, sending the full ``agi_*`` environment and
answering ``GET VARIABLE`` from the channel variables the Originate set.

``ShowDialPlan`` (not captured) answers from that dialplan as main/pbx.c
``manager_show_dialplan`` does, and ``write=`` models the user's manager.conf
write classes ("Permission denied" as main/manager.c ``process_message``).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.fakes.ami_calls import FakeCalls
from tests.fakes.asterisk_agi import FakeAsteriskAgi

CRLF = "\r\n"
BANNER = "Asterisk Call Manager/9.0.0\r\n"
VERSION_LINE = (
    "Asterisk 20.20.1 built by root @ vm on a x86_64 running Linux on 2026-11-25 12:08:51 UTC"
)
# main/manager.c reads a header line into a 1025-byte buffer; longer lines are
# dumped ("Dumping long line with no return") and never reach the action.
MAX_LINE = 1024
# Bound on one FastAGI exchange of the fake, so a stuck server fails the test.
AGI_READ_TIMEOUT_S = 10.0


@dataclass
class SentMessage:
    to: str
    from_: str
    body: str
    base64: bool
    variables: list[str]


@dataclass
class AgiRun:
    """Evidence of one FastAGI session the fake dialplan ran."""

    url: str
    commands: list[str] = field(default_factory=list)
    variables: dict[str, str] = field(default_factory=dict)
    status: str = ""            # AGISTATUS as Asterisk would set it
    done: asyncio.Event = field(default_factory=asyncio.Event)


class _Session:
    def __init__(self, server: FakeAmi, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.reader = reader
        self.writer = writer
        self.authenticated = False
        self.events = False
        # The user's write classes as they were at login: Asterisk copies them
        # into the session, "manager reload" never changes a live session
        # (ami-rights-copied-at-login.txt).
        self.write: tuple[str, ...] | None = None

    def send(self, lines: list[str]) -> None:
        if self.writer.is_closing():
            return
        self.writer.write((CRLF.join(lines) + CRLF + CRLF).encode("utf-8"))

    async def read_action(self) -> dict[str, list[str]] | None:
        headers: dict[str, list[str]] = {}
        order: list[tuple[str, str]] = []
        while True:
            try:
                raw = await self.reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                # Like Asterisk: the long line is dropped, the session goes on.
                await self.reader.read(65536)
                continue
            except (asyncio.IncompleteReadError, ConnectionError):
                return None
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if len(raw) > MAX_LINE:
                self.server.dumped_lines.append(line[:80])
                continue
            if not line:
                if headers:
                    headers["__order__"] = [f"{k}: {v}" for k, v in order]
                    return headers
                continue
            key, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            headers.setdefault(key.strip().lower(), []).append(value)
            order.append((key.strip(), value))


class FakeAmi:
    """Start with ``await FakeAmi(...).start()``; ``port`` is then bound."""

    def __init__(
        self,
        *,
        username: str = "smsd",
        secret: str = "smsd-secret",
        techs: tuple[str, ...] = ("sip", "pjsip"),
        registered_peers: tuple[str, ...] = ("alice",),
        dialplan: dict[str, dict[str, list[str]]] | None = None,
        answer_originate: bool = True,
        silent_actions: tuple[str, ...] = (),
        write: tuple[str, ...] | None = None,
        pjsip_contacts: tuple[str, ...] | None = None,
        read: tuple[str, ...] | None = None,
        includes: dict[str, list[str]] | None = None,
    ) -> None:
        self.username = username
        self.secret = secret
        self.techs = techs
        self.registered_peers = registered_peers
        # context -> exten -> priorities ("Answer()", "AGI(agi://...)")
        self.dialplan: dict[str, dict[str, list[str]]] = dialplan or {}
        # context -> the contexts it includes ("include => ..."), searched in order
        # after the context's own extensions, as pbx.c does.
        self.includes: dict[str, list[str]] = includes or {}
        self.answer_originate = answer_originate
        # Actions (lower-case names) received but never answered, as a hung
        # Asterisk would: for in-flight and watchdog tests.
        self.silent_actions = silent_actions
        # The user's manager.conf "write =" classes; None lets every action
        # through (tests that do not care about rights).  With classes set,
        # an action outside them is answered "Permission denied" as
        # main/manager.c process_message does.  A session keeps the classes of
        # its login: changing this models editing manager.conf + "manager
        # reload", which only a new login sees.
        self.write = write
        # PJSIP endpoints with a registered contact; None = every endpoint has
        # one.  MessageSend to an endpoint without is answered "Message failed
        # to send." (ami-unregistered-phone.txt).
        self.pjsip_contacts: set[str] | None = (
            None if pjsip_contacts is None else set(pjsip_contacts))
        # The user's manager.conf "read =" classes; None = every event is sent.
        # An event goes out when the first class of its Privilege is one of them.
        self.read = read
        self.port = 0
        self.logins: list[tuple[str, bool]] = []
        self.connections = 0
        self.actions: list[dict[str, list[str]]] = []
        self.messages: list[SentMessage] = []
        self.user_events: list[dict[str, str]] = []
        self.originates: list[dict[str, list[str]]] = []
        self.agi_runs: list[AgiRun] = []
        self.dumped_lines: list[str] = []
        self.message_arrived = asyncio.Event()
        self.login_arrived = asyncio.Event()   # set on every Login attempt (tests wait on it)
        self._server: asyncio.Server | None = None
        self._sessions: set[_Session] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._channel_seq = 0
        self._uid = 1795609790
        # Phone calls (ami_calls.py): ring_phone / phone_dials, and CoreShowChannels.
        self.calls = FakeCalls(self)

    # --- lifecycle -------------------------------------------------------------------

    async def start(self, port: int = 0) -> FakeAmi:
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", port, limit=MAX_LINE * 4
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        await self.drop()
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def drop(self) -> None:
        """Close every client connection, as an Asterisk restart would."""
        for s in list(self._sessions):
            s.writer.close()
            with contextlib.suppress(Exception):
                await s.writer.wait_closed()

    @property
    def logged_in(self) -> int:
        return sum(1 for s in self._sessions if s.authenticated)

    # --- one connection ---------------------------------------------------------------

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = _Session(self, reader, writer)
        self._sessions.add(session)
        self.connections += 1
        try:
            writer.write(BANNER.encode())
            while True:
                action = await session.read_action()
                if action is None:
                    return
                self.actions.append(action)
                if not await self._dispatch(session, action):
                    return
                await writer.drain()
        except ConnectionError:
            return
        finally:
            self._sessions.discard(session)
            writer.close()

    def broadcast(self, lines: list[str]) -> None:
        """An event to every logged-in session that has events on (and may read it)."""
        self._broadcast(lines)

    def _broadcast(self, lines: list[str]) -> None:
        privilege = next((ln[len("Privilege: "):] for ln in lines
                          if ln.startswith("Privilege: ")), "")
        if self.read is not None and "all" not in self.read \
                and privilege.split(",")[0] not in self.read:
            return
        for s in list(self._sessions):
            if s.authenticated and s.events:
                s.send(lines)

    def register_phone(self, endpoint: str, contact_port: int = 5102) -> None:
        """PJSIP endpoint ``endpoint`` registers a contact: the events Asterisk 20.20.1
        sent (ami-unregistered-phone.txt), PeerStatus only when it was unreachable."""
        if self.pjsip_contacts is None:
            self.pjsip_contacts = set()
        if endpoint not in self.pjsip_contacts:
            self._broadcast(["Event: PeerStatus", "Privilege: system,all", "ChannelType: PJSIP",
                             f"Peer: PJSIP/{endpoint}", "PeerStatus: Reachable"])
        self.pjsip_contacts.add(endpoint)
        self._broadcast(["Event: ContactStatus", "Privilege: system,all",
                         f"URI: sip:{endpoint}@127.0.0.1:{contact_port}",
                         "ContactStatus: NonQualified", f"AOR: {endpoint}",
                         f"EndpointName: {endpoint}", "RoundtripUsec: 0"])

    def _timestamp(self) -> str:
        return f"{time.time():.6f}"

    async def _dispatch(self, s: _Session, a: dict[str, list[str]]) -> bool:
        def h(name: str, default: str = "") -> str:
            return a.get(name.lower(), [default])[0]

        name = h("Action").lower()
        aid = h("ActionID")
        idl = [f"ActionID: {aid}"] if aid else []

        def ok(message: str, extra: list[str] | None = None) -> None:
            s.send(["Response: Success", *idl, f"Message: {message}", *(extra or [])])

        def err(message: str) -> None:
            s.send(["Response: Error", *idl, f"Message: {message}"])

        if name == "login":
            good = h("Username") == self.username and h("Secret") == self.secret
            self.logins.append((h("Username"), good))
            self.login_arrived.set()
            if not good:
                err("Authentication failed")
                await s.writer.drain()
                return False            # Asterisk closes the session here
            s.authenticated = True
            s.write = self.write
            s.events = h("Events", "on").lower() not in ("off", "no", "false")
            ok("Authentication accepted")
            if s.events:
                s.send(["Event: FullyBooted", "Privilege: system,all", "Uptime: 6",
                        "LastReload: 6", "Status: Fully Booted"])
            return True
        if not s.authenticated:
            err("Permission denied")
            return True
        if name in self.silent_actions:
            return True
        if not self._may(s, name):
            err("Permission denied")
            return True
        if name == "logoff":
            s.send(["Response: Goodbye", *idl, "Message: Thanks for all the fish."])
            await s.writer.drain()
            return False
        if name == "ping":
            s.send(["Response: Success", *idl, "Ping: Pong", f"Timestamp: {self._timestamp()}"])
            return True
        if name == "command":
            self._command(s, idl, h("Command"))
            return True
        if name == "showdialplan":
            self._show_dialplan(s, idl, h("Context"), h("Extension"))
            return True
        if name == "userevent":
            ok("Event Sent")
            body = [line for line in a["__order__"]
                    if not line.lower().startswith(("action:", "userevent:"))]
            self.user_events.append(
                {"UserEvent": h("UserEvent"),
                 **{k: v for k, _, v in (ln.partition(": ") for ln in body)}}
            )
            self._broadcast(["Event: UserEvent", "Privilege: user,all",
                             f"Timestamp: {self._timestamp()}",
                             f"UserEvent: {h('UserEvent')}", *body])
            return True
        if name == "messagesend":
            self._message_send(a, ok, err)
            return True
        if name == "coreshowchannels":
            for message in self.calls.core_show_channels(idl):
                s.send(message)
            return True
        if name == "originate":
            self._originate(s, a, idl, ok, err)
            return True
        err("Invalid/unknown command")
        return True

    # --- actions -------------------------------------------------------------------------

    def _command(self, s: _Session, idl: list[str], cmd: str) -> None:
        cmd = " ".join(cmd.split())
        if cmd == "core show version":
            out = [VERSION_LINE]
            resp = "Success"
        elif (m := re.fullmatch(r"dialplan show (\S+)@(\S+)", cmd)) is not None:
            out, found = self._dialplan_show(m.group(1), m.group(2))
            resp = "Success" if found else "Error"
        else:
            word = cmd.split(" ")[0] if cmd else ""
            out = [f"No such command '{word}' (type 'core show help {word}' "
                   "for other possible commands)"]
            resp = "Error"
        s.send([f"Response: {resp}", *idl, "Message: Command output follows",
                *[f"Output: {line}" for line in out]])

    def _dialplan_show(self, exten: str, context: str) -> tuple[list[str], bool]:
        ctx = self.dialplan.get(context)
        if ctx is None:
            return [f"There is no existence of '{context}' context"], False
        matching = {e: p for e, p in ctx.items() if e == exten or _pattern_matches(e, exten)}
        if not matching:
            return [f"There is no existence of {exten}@{context} extension"], False
        out = [f"[ Context '{context}' created by 'pbx_config' ]"]
        count = 0
        for e, prios in matching.items():
            for i, app in enumerate(prios, start=1):
                count += 1
                lead = f"  '{e}' =>" if i == 1 else ""
                out.append(f"{lead:<{len(e) + 8}}{i:>3}. {app:<40}[extensions.conf:{count}]")
        out.append("")
        out.append(f"-= {len(matching)} extension{'s' if len(matching) != 1 else ''} "
                   f"({count} priorities) in 1 context. =-")
        return out, True

    def _reachable(self, context: str) -> list[str]:
        """``context`` and every context it includes, depth first, each once."""
        seen: list[str] = []
        todo = [context]
        while todo:
            ctx = todo.pop(0)
            if ctx in seen or ctx not in self.dialplan:
                continue
            seen.append(ctx)
            todo[:0] = self.includes.get(ctx, [])
        return seen

    def _find(self, context: str, exten: str) -> tuple[str, list[str]] | None:
        """Where Local/<exten>@<context> lands: (context, priorities), includes followed."""
        for ctx in self._reachable(context):
            if exten in self.dialplan[ctx]:
                return ctx, self.dialplan[ctx][exten]
        return None

    def _may(self, s: _Session, action: str) -> bool:
        """The session's write classes (copied at login) cover ``action``
        (class-less actions always do)."""
        needed = ACTION_CLASSES.get(action)
        if s.write is None or needed is None or "all" in s.write:
            return True
        return any(c in s.write for c in needed)

    def _show_dialplan(self, s: _Session, idl: list[str], context: str, exten: str) -> None:
        """ShowDialPlan as main/pbx.c manager_show_dialplan answers it.

        Every extension that *matches* ``exten`` is listed (a pattern such
        as ``_+1NXX.`` for a concrete number too), one ListDialplan event per
        priority; the ack goes out before the first event, the error when
        the context or every extension is missing.
        """
        # With a context, Asterisk lists it and every context it includes; their
        # events carry the included context's name (ami-showdialplan-include.txt).
        contexts = self._reachable(context) if context else list(self.dialplan)
        if context and not contexts:
            s.send(["Response: Error", *idl, f"Message: Did not find context {context}"])
            return
        events: list[list[str]] = []
        extens = 0
        for ctx in contexts:
            names = sorted(self.dialplan[ctx], key=lambda n: n.startswith("_"))
            for name in names:
                if exten and not _extension_match(name, exten):
                    continue
                extens += 1
                for priority, step in enumerate(self.dialplan[ctx][name], start=1):
                    app, _, data = step.partition("(")
                    events.append(["Event: ListDialplan", *idl, f"Context: {ctx}",
                                   f"Extension: {name}", f"Priority: {priority}",
                                   f"Application: {app}",
                                   f"AppData: {data[:-1] if data.endswith(')') else data}",
                                   "Registrar: pbx_config"])
        if exten and not extens:
            where = f"{exten}@{context}" if context else f"{exten} in any context"
            s.send(["Response: Error", *idl, f"Message: Did not find extension {where}"])
            return
        s.send(["Response: Success", *idl, "EventList: start",
                "Message: DialPlan list will follow"])
        for event in events:
            s.send(event)
        s.send(["Event: ShowDialPlanComplete", *idl, "EventList: Complete",
                f"ListItems: {len(events)}", f"ListExtensions: {extens}",
                f"ListPriorities: {len(events)}", f"ListContexts: {len(contexts)}"])

    def _message_send(self, a: dict[str, list[str]], ok: _Reply, err: _Reply) -> None:
        to = a.get("to", [""])[0]
        from_ = a.get("from", [""])[0]
        if not to:
            err("No 'To' address specified.")
            return
        tech, sep, rest = to.partition(":")
        if not sep or tech.lower() not in self.techs:
            err("Message technology not found.")
            return
        if tech.lower() == "sip" and "@" not in rest and rest not in self.registered_peers:
            err("Message failed to send.")
            return
        if tech.lower() == "pjsip" and not rest:
            err("Message failed to send.")
            return
        if (tech.lower() == "pjsip" and self.pjsip_contacts is not None
                and "/" not in rest and rest.split("@")[0] not in self.pjsip_contacts):
            err("Message failed to send.")   # no registered contact: the phone is off
            return
        if "base64body" in a:
            body = base64.b64decode(a["base64body"][0]).decode("utf-8")
            b64 = True
        else:
            body = a.get("body", [""])[0]
            b64 = False
        self.messages.append(SentMessage(to, from_, body, b64, a.get("variable", [])))
        self.message_arrived.set()
        ok("Message successfully sent")

    def _originate(self, s: _Session, a: dict[str, list[str]], idl: list[str],
                   ok: _Reply, err: _Reply) -> None:
        self.originates.append(a)
        channel = a.get("channel", [""])[0]
        if "/" not in channel:
            err("Invalid channel")
            return
        is_async = a.get("async", ["false"])[0].lower() in ("true", "yes", "1", "on")
        variables = dict(v.partition("=")[::2] for v in a.get("variable", []))
        m = re.fullmatch(r"Local/([^@]+)@(.+)", channel)
        prios = None
        if m is not None:
            found = self._find(m.group(2), m.group(1))
            prios = None if found is None else found[1]
        if not is_async:
            # Sync Originate answers only once the call is up or failed.
            if prios is None:
                err("Originate failed")
                return
        else:
            ok("Originate successfully queued")
        task = asyncio.create_task(self._run_call(s, idl, a, m, prios, variables, is_async, ok))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_call(self, s: _Session, idl: list[str], a: dict[str, list[str]],
                        m: re.Match[str] | None, prios: list[str] | None,
                        variables: dict[str, str], is_async: bool, ok: _Reply) -> None:
        self._channel_seq += 1
        self._uid += 1
        channel = a.get("channel", [""])[0]
        uid = f"{self._uid}.{self._channel_seq * 2 + 1}"
        chan1 = f"{channel}-{self._channel_seq:08x};1"
        app = a.get("application", [""])[0]
        data = a.get("data", [""])[0]
        await asyncio.sleep(0)
        if prios is None or m is None or not self.answer_originate:
            if is_async:
                s.send(["Event: OriginateResponse", "Privilege: call,all",
                        f"Timestamp: {self._timestamp()}", *idl, "Response: Failure",
                        f"Channel: {channel}", f"Application: {app}", f"Data: {data}",
                        "Reason: 0", "Uniqueid: <null>", "CallerIDNum: <unknown>",
                        "CallerIDName: <unknown>"])
            return
        exten, context = m.group(1), m.group(2)
        chan2 = f"{channel}-{self._channel_seq:08x};2"
        answered = False
        for priority, step in enumerate(prios, start=1):
            if step.startswith("Answer(") and not answered:
                answered = True
                if is_async:
                    s.send(["Event: OriginateResponse", "Privilege: call,all",
                            f"Timestamp: {self._timestamp()}", *idl, "Response: Success",
                            f"Channel: {chan1}", f"Application: {app}", f"Data: {data}",
                            "Reason: 4", f"Uniqueid: {uid}", "CallerIDNum: <unknown>",
                            "CallerIDName: <unknown>"])
                else:
                    ok("Originate successfully queued")
            elif step.startswith("AGI(") and step.endswith(")"):
                # res_agi splits the application data like every app: on commas
                # (quotes group, backslash escapes); argv[0] is the script URL.
                url, *args = _app_args(step[4:-1])
                await self._fastagi(url, args, chan2, context, exten, priority,
                                    f"{self._uid}.{self._channel_seq * 2 + 2}", variables)
        if not answered and is_async:
            # The ;2 side hung up without answering: the originate failed.
            s.send(["Event: OriginateResponse", "Privilege: call,all",
                    f"Timestamp: {self._timestamp()}", *idl, "Response: Failure",
                    f"Channel: {chan1}", f"Application: {app}", f"Data: {data}",
                    "Reason: 1", f"Uniqueid: {uid}", "CallerIDNum: <unknown>",
                    "CallerIDName: <unknown>"])

    # --- FastAGI client (res_agi's side) --------------------------------------------------

    async def _fastagi(self, url: str, args: list[str], channel: str, context: str, exten: str,
                       priority: int, uid: str, variables: dict[str, str]) -> None:
        """Run AGI(url) as res_agi does, through the shared fake FastAGI client."""
        run = AgiRun(url)
        self.agi_runs.append(run)
        parts = urlsplit(url)
        script = parts.path.lstrip("/") + (f"?{parts.query}" if parts.query else "")
        agi = FakeAsteriskAgi(
            parts.port or 4573, script, host=parts.hostname or "127.0.0.1", args=args,
            channel=channel, channel_type="Local", context=context, extension=exten,
            priority=priority, uniqueid=uid, variables=variables,
        )
        try:
            async with asyncio.timeout(AGI_READ_TIMEOUT_S):   # not wait_for: gh-86296
                await agi.run()
            run.status = "SUCCESS"
        except (OSError, TimeoutError):
            run.status = "FAILURE"   # "Couldn't connect to any host.  FastAGI failed."
        finally:
            run.commands = list(agi.commands)
            run.variables = dict(agi.variables)
            run.done.set()


# Write class(es) each action needs (ast_manager_register_xml_core in
# main/manager.c and main/pbx.c; MessageSend from its AMI docs page).  An
# action missing here (Login, Logoff, Ping) has authority 0: always allowed.
ACTION_CLASSES: dict[str, tuple[str, ...]] = {
    "command": ("command",),
    "originate": ("originate",),
    "userevent": ("user",),
    "messagesend": ("message",),
    "showdialplan": ("config", "reporting"),
    "coreshowchannels": ("system", "reporting"),
}


def _extension_match(name: str, number: str) -> bool:
    """ast_extension_match(name, number) in E_MATCH mode (main/pbx.c).

    ``-`` is eye candy on both sides; a plain name must equal the number; a
    ``_`` pattern knows ``X`` ``Z`` ``N``, ``[...]`` sets with ranges, ``.``
    (one or more) and ``!`` (zero or more).
    """
    if not name.startswith("_"):
        return name.replace("-", "") == number.replace("-", "")
    pat = name[1:]
    data = number.replace("-", "")
    i = j = 0
    while True:
        while i < len(pat) and pat[i] == "-":
            i += 1
        if j >= len(data) or i >= len(pat) or pat[i] == "/":
            break
        ch, d = pat[i], data[j]
        if ch == "[":
            end = pat.find("]", i + 1)
            if end < 0:
                return False
            members = pat[i + 1:end]
            if not members:
                i = end + 1
                continue
            k, hit = 0, False
            while k < len(members):
                if k + 2 < len(members) and members[k + 1] == "-":
                    hit = hit or members[k] <= d <= members[k + 2]
                    k += 3
                else:
                    hit = hit or members[k] == d
                    k += 1
            if not hit:
                return False
            i = end
        elif ch in "nN":
            if not "2" <= d <= "9":
                return False
        elif ch in "xX":
            if not "0" <= d <= "9":
                return False
        elif ch in "zZ":
            if not "1" <= d <= "9":
                return False
        elif ch in ".!":
            return True
        elif ch != d:
            return False
        i += 1
        j += 1
    if j < len(data):
        return False
    rest = pat[i:].lstrip("-")
    return rest == "" or rest[0] in "/!"


class _Reply:  # typing helper for the nested reply functions
    def __call__(self, message: str, extra: list[str] | None = None) -> None: ...


def _app_args(data: str) -> list[str]:
    """Split application data as Asterisk's ast_app_separate_args does."""
    out: list[str] = []
    cur = ""
    quoted = False
    escaped = False
    for ch in data:
        if escaped:
            cur += ch
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def _pattern_matches(pattern: str, exten: str) -> bool:
    """Asterisk extension patterns (``_X.``) enough for ``dialplan show`` listings."""
    if not pattern.startswith("_"):
        return False
    rx = ""
    for ch in pattern[1:]:
        rx += {"X": "[0-9]", "Z": "[1-9]", "N": "[2-9]", ".": ".+", "!": ".*"}.get(
            ch.upper(), re.escape(ch))
    return re.fullmatch(rx, exten) is not None
