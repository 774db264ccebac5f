"""The one container of the daemon's long-lived parts.

Entry points (HTTP API, AGI, Mail2SMS, CLI-through-API) receive this object
rather than importing each other, so each part can be built and tested with
exactly the collaborators it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import structlog

if TYPE_CHECKING:
    from smsd.asterisk.ami import AmiClient
    from smsd.codec.pdu import DeliverPdu, StatusReportPdu
    from smsd.config import Config
    from smsd.core.conversations import Conversations
    from smsd.core.directory import Directory
    from smsd.core.dispatcher import Dispatcher
    from smsd.core.events import EventBus
    from smsd.core.inbox import Inbox
    from smsd.core.outbox import Outbox
    from smsd.core.router import Router
    from smsd.dialplan.procedure import KiteSmsProcedure
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
    from smsd.core.conversations import Conversations
    from smsd.core.dispatcher import Dispatcher
    from smsd.core.events import EventBus
    from smsd.core.inbox import Inbox
    from smsd.core.outbox import Outbox
    from smsd.core.router import Router
    from smsd.dialplan.procedure import KiteSmsProcedure

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
    if config.classound is not None:
        _register_classound(router, config, ami, inbox)

    conversations = Conversations(store, directory, config, ami=ami, outbox=outbox)
    procedure = KiteSmsProcedure(
        store, directory, conversations, ami,
        claim_timeout_s=config.policy.kite_sms_claim_timeout_s,
    )
    bus.subscribe_inbound(procedure.on_inbound)
    if ami is not None:
        bus.subscribe_status(ami.on_status)
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
    )


def _register_classound(
    router: Router, config: Config, ami: AmiClient | None, inbox: Inbox
) -> None:
    """The CLASSOUND trunk gateway, when this build has one."""
    from smsd.gateways import classound

    factory = getattr(classound, "build_classound", None)
    if factory is None:
        log.warning(
            "gateway.classound_unavailable",
            reason="this build has no CLASSOUND trunk gateway; [gateways.classound] ignored",
        )
        return
    router.register(factory(config.classound, ami=ami, inbox=inbox))


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
