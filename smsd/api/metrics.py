"""``GET /metrics``: Prometheus text exposition (format 0.0.4).

Message counts come from the store (the record), live modem figures from the
pool snapshot, request counts from the API's own middleware.  No
authentication: loopback only, and counts reveal no content.
"""

from __future__ import annotations

from aiohttp import web

from smsd.api.common import SERVICES, STATS
from smsd.core.send_metrics import CAUSES
from smsd.services import Services
from smsd.store.stats import sends_by_gateway

PENDING_STATES = ("queued", "scheduled", "sending", "submitting")


def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_text: str) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")

    def sample(self, name: str, value: float, **labels: str) -> None:
        if labels:
            inner = ",".join(f'{k}="{_esc(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{inner}}} {value:g}")
        else:
            self.lines.append(f"{name} {value:g}")


async def render(
    services: Services, request_counts: dict[tuple[str, int], int], seconds_total: float
) -> str:
    w = _Writer()
    depth = await services.store.queue_depth()
    w.family("smsd_messages", "gauge", "Outbound messages in the store by state.")
    for state, count in sorted(depth.items()):
        w.sample("smsd_messages", count, state=state)
    w.family("smsd_queue_depth", "gauge", "Outbound messages not yet handed to a gateway.")
    w.sample("smsd_queue_depth", sum(depth.get(s, 0) for s in PENDING_STATES))

    sends = await sends_by_gateway(services.store)
    w.family("smsd_sends_total", "counter", "Messages handled by each gateway, by outcome.")
    for gateway, state, n in sends:
        w.sample("smsd_sends_total", n, gateway=gateway, state=state)

    w.family("smsd_gateway_available", "gauge", "1 when the gateway can take messages.")
    for gw in services.router.gateways():
        w.sample("smsd_gateway_available", 1 if gw.available() else 0, gateway=gw.name)

    _send_metrics(w, services)

    if services.pool is not None:
        snap = services.pool.snapshot()
        w.family("smsd_modem_up", "gauge", "1 when the modem is ready.")
        for m in snap:
            w.sample("smsd_modem_up", 1 if m.state == "ready" else 0, modem=m.id)
        w.family("smsd_modem_signal_dbm", "gauge", "Received signal strength (dBm).")
        for m in snap:
            if m.signal_dbm is not None:
                w.sample("smsd_modem_signal_dbm", m.signal_dbm, modem=m.id)
        w.family("smsd_modem_sent_today", "gauge", "SMS parts sent by the modem today.")
        for m in snap:
            w.sample("smsd_modem_sent_today", m.sent_today, modem=m.id)
        w.family("smsd_modem_daily_cap", "gauge", "The modem's daily cap of SMS parts (0 = none).")
        for m in snap:
            w.sample("smsd_modem_daily_cap", m.daily_cap, modem=m.id)
        w.family("smsd_modem_daily_cap_reached", "gauge",
                 "1 while the modem has sent its daily cap today (it sends no more).")
        for m in snap:
            capped = bool(m.daily_cap) and m.sent_today >= m.daily_cap
            w.sample("smsd_modem_daily_cap_reached", 1 if capped else 0, modem=m.id)
        w.family("smsd_modem_in_flight", "gauge", "SMS parts being submitted by the modem.")
        for m in snap:
            w.sample("smsd_modem_in_flight", m.in_flight, modem=m.id)
        w.family("smsd_modem_registered", "gauge",
                 "1 when the modem is registered on a network (home or roaming).")
        w.family("smsd_modem_registration_status", "gauge",
                 "The modem's +CREG <stat> (TS 27.007 7.2: 1 home, 5 roaming, 3 denied, ...).")
        for m in snap:
            if m.registration is not None:
                w.sample("smsd_modem_registered", 1 if m.registration in (1, 5) else 0,
                         modem=m.id)
                w.sample("smsd_modem_registration_status", m.registration, modem=m.id)
        w.family("smsd_modem_storage_used", "gauge", "SMS stored in the modem's read memory.")
        w.family("smsd_modem_storage_total", "gauge", "Size of the modem's read memory.")
        for m in snap:
            if m.storage_used is not None and m.storage_total is not None:
                w.sample("smsd_modem_storage_used", m.storage_used, modem=m.id)
                w.sample("smsd_modem_storage_total", m.storage_total, modem=m.id)

    w.family("smsd_api_requests_total", "counter", "HTTP API requests by route and status.")
    for (route, status), n in sorted(request_counts.items()):
        w.sample("smsd_api_requests_total", n, route=route, status=str(status))
    w.family("smsd_api_request_seconds_total", "counter", "Time spent answering API requests.")
    w.sample("smsd_api_request_seconds_total", seconds_total)
    return "\n".join(w.lines) + "\n"


def _send_metrics(w: _Writer, services: Services) -> None:
    sm = services.send_metrics
    if sm is None:
        return
    name = "smsd_send_latency_seconds"
    w.family(name, "histogram",
             "From when a message was due to a gateway's acceptance, queue and retries included.")
    for le, count in sm.cumulative():
        w.sample(f"{name}_bucket", count, le=le)
    w.sample(f"{name}_sum", sm.latency_sum)
    w.sample(f"{name}_count", sm.latency_count)
    w.family("smsd_send_failures_total", "counter", "Messages failed or expired, by cause.")
    for cause in CAUSES:
        w.sample("smsd_send_failures_total", sm.failures.get(cause, 0), cause=cause)


async def metrics(request: web.Request) -> web.Response:
    stats = request.app[STATS]
    text = await render(request.app[SERVICES], dict(stats.requests), stats.seconds_total)
    return web.Response(
        text=text,
        content_type="text/plain",
        charset="utf-8",
        headers={"X-Content-Type-Options": "nosniff"},
    )


def routes() -> list[web.RouteDef]:
    return [web.get("/metrics", metrics, allow_head=False)]
