"""Gateway priority and failover (SEED-NOTES "Routing outbound").

The order comes from config (``routing``, default curl -> gsm -> classound);
only gateways that are both configured (registered here) and named in the
order take part.  A gateway that is down is skipped; one that fails
temporarily hands the message to the next; a permanent failure (an invalid or
barred number) ends the attempt at once, because another gateway would only be
refused the same way.  Each gateway has its own concurrency limit so a slow HTTP
provider cannot take every in-flight slot from the modems.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import structlog

from smsd.errors import GatewayError, GatewayUnavailable, SubmitInterrupted
from smsd.gateways.base import Gateway, OutboundJob, PartHooks
from smsd.turns import Turns

log = structlog.get_logger(__name__)

DEFAULT_ORDER = ("curl", "gsm", "classound")

# Messages one gateway handles at once unless configured otherwise or the
# gateway says (a ``concurrency`` attribute: the GSM gateway bounds itself per
# ready modem); an HTTP provider usually allows tens of parallel requests.
DEFAULT_CONCURRENCY = 64


class Router:
    def __init__(
        self,
        gateways: Sequence[Gateway] = (),
        order: Sequence[str] = DEFAULT_ORDER,
        *,
        concurrency: Mapping[str, int] | None = None,
    ) -> None:
        self._order = tuple(order)
        self._gateways: dict[str, Gateway] = {}
        # Each gateway's sends at once; Turns, not asyncio.Semaphore: taking a
        # free one is a plain call, and every message takes one (issue 17).
        self._limits: dict[str, Turns] = {}
        self._concurrency = dict(concurrency or {})
        # The usable gateways in priority order with their limits, rebuilt
        # when a gateway or the order changes, not per message (issue 17).
        self._route: tuple[tuple[Gateway, Turns], ...] = ()
        for gw in gateways:
            self.register(gw)

    def register(self, gateway: Gateway) -> None:
        """Add a gateway (the classound trunk registers itself this way)."""
        if gateway.name not in self._order:
            log.warning("router.gateway_not_in_routing", gateway=gateway.name, order=self._order)
        self._gateways[gateway.name] = gateway
        self._limits[gateway.name] = Turns(
            self._concurrency.get(gateway.name,
                                  getattr(gateway, "concurrency", DEFAULT_CONCURRENCY))
        )
        self._reroute()

    def set_order(self, order: Sequence[str]) -> None:
        """A reloaded ``routing`` (SIGHUP); gateways themselves are only added at start."""
        self._order = tuple(order)
        self._reroute()

    def _reroute(self) -> None:
        self._route = tuple((self._gateways[n], self._limits[n])
                            for n in self._order if n in self._gateways)

    def gateways(self) -> list[Gateway]:
        """The usable gateways in priority order."""
        return [gw for gw, _limit in self._route]

    def available(self) -> bool:
        return any(gw.available() for gw in self.gateways())

    async def send(self, job: OutboundJob, hooks: PartHooks) -> str:
        """Send through the first gateway that takes the job; return its name.

        Raises GatewayError(temporary=False) for a permanent refusal,
        SubmitInterrupted when a part may have left (never failed over),
        GatewayUnavailable when no gateway was up, else GatewayError(temporary=True)
        listing what each gateway said.
        """
        failures: list[str] = []
        tried = False
        for gw, limit in self._route:
            if not gw.available():
                failures.append(f"{gw.name}: unavailable")
                continue
            if not limit.try_take():
                await limit.take()
            try:
                await gw.send(job, hooks)
            except GatewayUnavailable as e:
                failures.append(f"{gw.name}: {e}")
                continue
            except SubmitInterrupted:
                # The part may have reached the network: another gateway
                # would send it again.  The dispatcher applies the policy.
                raise
            except GatewayError as e:
                tried = True
                if not e.temporary:
                    log.info(
                        "router.permanent_failure",
                        sms_id=job.message_id,
                        gateway=gw.name,
                        error=str(e),
                    )
                    raise GatewayError(
                        f"{gw.name}: {e}", temporary=False, gateway=gw.name
                    ) from e
                log.info(
                    "router.failover",
                    sms_id=job.message_id,
                    gateway=gw.name,
                    error=str(e),
                )
                failures.append(f"{gw.name}: {e}")
                continue
            finally:
                limit.give()
            return gw.name
        detail = "; ".join(failures) or "no gateway configured"
        if not tried:
            raise GatewayUnavailable(f"no gateway available ({detail})")
        raise GatewayError(f"every gateway failed ({detail})", temporary=True)
