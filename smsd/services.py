"""The one container of the daemon's long-lived parts.

Entry points (HTTP API, AGI, Mail2SMS, CLI-through-API) receive this object
rather than importing each other, so each part can be built and tested with
exactly the collaborators it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

import structlog

from smsd.modem.spec import DEFAULT_SEND_TIMEOUT_S

if TYPE_CHECKING:
    from smsd.asterisk.ami import AmiClient
    from smsd.asterisk.calls import CallTracker
    from smsd.codec.pdu import DeliverPdu, StatusReportPdu
    from smsd.config import Config
    from smsd.core.conversations import Conversations
    from smsd.core.deliveries import PhoneDeliveries
    from smsd.core.directory import Directory
    from smsd.core.dispatcher import Dispatcher
    from smsd.core.events import EventBus, InboundSms
    from smsd.core.inbox import Inbox
    from smsd.core.outbox import Outbox
    from smsd.core.router import Router
    from smsd.core.send_metrics import SendMetrics
    from smsd.dialplan.procedure import KiteSmsProcedure
    from smsd.gateways.classound import Trunk
    from smsd.mail2sms.service import Mail2Sms
    from smsd.modem.pool import ModemPool
    from smsd.store import Store


log = structlog.get_logger(__name__)

# Config parts a reload cannot change without dropping what they hold (bound
# listeners, the open database, live modem sessions, the AMI and trunk
# connections): a reload keeps the running values and names the keys, which
# take effect at the next restart.
RESTART_ONLY = ("state_dir", "database", "http", "http_tls", "agi", "agi_allow", "smtp",
                "smtp_password", "mail2sms_enabled", "ami", "gsm", "curl", "classound")


@dataclass
class Services:
    config: Config
    store: Store
    bus: EventBus
    outbox: Outbox
    inbox: Inbox
    dispatcher: Dispatcher
    router: Router
    pool: ModemPool | None
    directory: Directory
    ami: AmiClient | None = None
    conversations: Conversations | None = None
    # Addition: the kite-sms procedure the AGI handler calls.
    procedure: KiteSmsProcedure | None = None
    # Addition: the CLASSOUND trunk, whose sockets the daemon opens and closes.
    trunk: Trunk | None = None
    # Mail2SMS, when an SMSPASSWORD is configured ([smtp]); used by the SMTP
    # listener and by POST /api/v1/mail2sms (the `smsd mail2sms` pipe).
    mail2sms: Mail2Sms | None = None
    # Send latency and failures by cause for /metrics (fed by status events).
    send_metrics: SendMetrics | None = None
    # The phones' current calls from AMI events ("SMS to this caller"); None without AMI.
    calls: CallTracker | None = None

    def reload(self, new: Config) -> list[str]:
        """Make ``new`` the running config (SIGHUP); return the keys left for a restart.

        ``self.config`` is the one holder every entry point reads the config
        through; the parts that keep their own copy (directory, outbox,
        dispatcher, router, conversations) get theirs here, in one step with no
        await, so no request sees half of a reload.  Users, password hashes,
        call groups, routing and policy change at once; modem sessions, queued
        messages and connections are untouched.
        """
        old = self.config
        restart = [k for k in RESTART_ONLY if getattr(new, k) != getattr(old, k)]
        policy = new.policy
        if policy.kite_sms_claim_timeout_s != old.policy.kite_sms_claim_timeout_s:
            restart.append("policy.kite_sms_claim_timeout_s")
            policy = replace(policy, kite_sms_claim_timeout_s=old.policy.kite_sms_claim_timeout_s)
        kept = {k: getattr(old, k) for k in RESTART_ONLY}
        effective = replace(new, policy=policy, **kept)
        self.directory.reload(effective)
        self.outbox.set_policy(effective.policy)
        self.dispatcher.set_policy(effective.policy)
        self.router.set_order(effective.routing)
        if self.conversations is not None:
            self.conversations.set_config(effective)
        self.config = effective
        return restart


async def build_services(config: Config, store: Store, directory: Directory) -> Services:
    """Wire every component over an open store, in dependency order.

    Nothing here does network or device I/O: listeners and supervisors start
    in the daemon, so a test can build the whole core without ports.
    """
    from smsd.asterisk.ami import AmiClient
    from smsd.asterisk.calls import CallTracker
    from smsd.core.conversations import Conversations
    from smsd.core.dispatcher import Dispatcher
    from smsd.core.events import EventBus
    from smsd.core.inbox import Inbox
    from smsd.core.outbox import Outbox
    from smsd.core.router import Router
    from smsd.core.send_metrics import SendMetrics
    from smsd.dialplan.procedure import KiteSmsProcedure
    from smsd.mail2sms.service import Mail2Sms

    bus = EventBus()
    router = Router(order=config.routing)
    shared = store.dialect == "postgresql"  # several nodes: claims carry the node's name
    dispatcher = Dispatcher(store, router, bus, config.policy,
                            submit_deadline_s=_submit_deadline(config),
                            node=config.node if shared else None,
                            node_dead_after_s=config.node_dead_after_s)
    outbox = Outbox(store, config.policy, wake=dispatcher.wake, wake_for=dispatcher.wake_for)
    inbox = Inbox(store, bus)

    pool = None
    if config.gsm is not None and config.gsm.modems:
        from smsd.gateways.gsm import GsmGateway
        from smsd.modem.pool import LocalDay, ModemPool, day_bounds

        events = _WakeOnReady(inbox, dispatcher.wake)
        today = LocalDay(config.policy.timezone)
        pool = ModemPool(config.gsm.modems, events, state_dir=config.state_dir, today=today)
        if any(m.daily_cap for m in config.gsm.modems):
            # Daily caps count per modem and calendar day in policy.timezone,
            # from the store: a restart must not start the day's count afresh.
            now = datetime.now(ZoneInfo(config.policy.timezone))
            start, end = day_bounds(now)
            counts = await store.parts_sent_per_modem(start, end)
            pool.seed_sent_today(now.date().isoformat(), counts)
        inbox.set_own_number(_own_number_lookup(config, pool))
        router.register(GsmGateway(pool))
    if config.curl is not None:
        from smsd.gateways.curl import CurlGateway

        router.register(CurlGateway(config.curl))
    ami = (
        AmiClient(config.ami, auth_retry_s=config.ami.auth_retry_s)
        if config.ami.enabled
        else None
    )
    trunk = None
    if config.classound is not None:
        from smsd.gateways.classound import build_classound

        trunk = build_classound(config.classound, ami=ami, inbox=inbox)
        router.register(trunk)

    conversations = Conversations(store, directory, config, ami=ami, outbox=outbox)
    procedure = KiteSmsProcedure(
        store, directory, conversations, ami,
        claim_timeout_s=config.policy.kite_sms_claim_timeout_s,
    )
    # Inbound SMS are routed several at once (each waits on Asterisk: a lookup,
    # an Originate, the dialplan's AGI), one conversation's in order.
    bus.subscribe_inbound(procedure.on_inbound, concurrency=ROUTING_CONCURRENCY,
                          key=conversation_key)
    calls = None
    if ami is not None:
        bus.subscribe_status(ami.on_status)
        follow_phones(ami, conversations.deliveries)
        calls = CallTracker()
        calls.attach(ami)
    send_metrics = SendMetrics(store)
    bus.subscribe_status(send_metrics.on_status, states=send_metrics.STATES)
    return Services(
        config=config,
        store=store,
        bus=bus,
        outbox=outbox,
        inbox=inbox,
        dispatcher=dispatcher,
        router=router,
        pool=pool,
        directory=directory,
        ami=ami,
        conversations=conversations,
        procedure=procedure,
        trunk=trunk,
        mail2sms=Mail2Sms.from_config(config, outbox, directory),
        send_metrics=send_metrics,
        calls=calls,
    )


# Inbound SMS routed at once (issue 16: serial routing took 0.5 s per SMS).  Each
# holds at most an AMI action or two and one AGI session; 16 keeps a burst from a
# modem bank moving without flooding Asterisk with Originates.
ROUTING_CONCURRENCY = 16


def _submit_deadline(config: Config) -> float:
    """The longest one part may take once submitting, over every configured gateway."""
    deadlines = [m.send_timeout_s for m in config.gsm.modems] if config.gsm else []
    if config.curl is not None:
        deadlines.append(config.curl.timeout_s)
    if config.classound is not None:
        deadlines.append(config.classound.timeout_s)
    return max(deadlines, default=DEFAULT_SEND_TIMEOUT_S)




def conversation_key(ev: InboundSms) -> object:
    """SMS of one conversation (same customer, same DID) are routed in order."""
    return (ev.sender, ev.recipient)


def follow_phones(ami: AmiClient, deliveries: PhoneDeliveries) -> None:
    """A phone that was off gets the SMS it missed when Asterisk reports it back
    (ContactStatus, PeerStatus) and after every AMI login; its timed retries run
    in ``deliveries.run()``."""
    ami.on_event("ContactStatus", deliveries.endpoint_back)
    ami.on_event("PeerStatus", deliveries.endpoint_back)

    async def _retry_all() -> None:
        deliveries.wake()

    ami.on_connected(_retry_all)


def _own_number_lookup(config: Config, pool: ModemPool) -> Callable[[str], str | None]:
    """Modem id -> its DID: the configured number, else what the SIM reported."""
    configured = {m.id: m.own_number for m in config.gsm.modems} if config.gsm else {}

    def lookup(modem: str) -> str | None:
        if configured.get(modem):
            return configured[modem]
        for info in pool.snapshot():
            if info.id == modem:
                return info.own_number
        return None

    return lookup


class _WakeOnReady:
    """Modem events go to the inbox; a modem turning ready also wakes the dispatcher.

    Without this, messages submitted while no modem was ready would wait for
    the dispatcher's next poll instead of leaving as soon as a modem is usable.
    """

    def __init__(self, inbox: Inbox, wake: Callable[[], None]) -> None:
        self._inbox = inbox
        self._wake = wake

    async def sms_received(self, modem: str, sms: DeliverPdu) -> None:
        await self._inbox.sms_received(modem, sms)

    async def status_report(self, modem: str, report: StatusReportPdu) -> None:
        await self._inbox.status_report(modem, report)

    def modem_state(self, modem: str, state: str, detail: str | None) -> None:
        self._inbox.modem_state(modem, state, detail)
        if state == "ready":
            self._wake()
