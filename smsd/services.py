"""The one container of the daemon's long-lived parts.

Entry points (HTTP API, AGI, Mail2SMS, CLI-through-API) receive this object
rather than importing each other, so each part can be built and tested with
exactly the collaborators it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from smsd.asterisk.ami import AmiClient
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


async def build_services(config: Config, store: Store, directory: Directory) -> Services:
    """Wire every component over an open store, in dependency order.

    Nothing here does network or device I/O: listeners and supervisors start
    in the daemon, so a test can build the whole core without ports.
    """
    from smsd.asterisk.ami import AmiClient
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
    dispatcher = Dispatcher(store, router, bus, config.policy)
    outbox = Outbox(store, config.policy, wake=dispatcher.wake)
    inbox = Inbox(store, bus)

    pool = None
    if config.gsm is not None and config.gsm.modems:
        from smsd.gateways.gsm import GsmGateway
        from smsd.modem.pool import ModemPool

        events = _WakeOnReady(inbox, dispatcher.wake)
        pool = ModemPool(config.gsm.modems, events, state_dir=config.state_dir)
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
    if ami is not None:
        bus.subscribe_status(ami.on_status)
        follow_phones(ami, conversations.deliveries)
    send_metrics = SendMetrics(store)
    bus.subscribe_status(send_metrics.on_status)
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
    )


# Inbound SMS routed at once (issue 16: serial routing took 0.5 s per SMS).  Each
# holds at most an AMI action or two and one AGI session; 16 keeps a burst from a
# modem bank moving without flooding Asterisk with Originates.
ROUTING_CONCURRENCY = 16


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
