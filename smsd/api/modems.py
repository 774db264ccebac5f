"""``/api/v1/modems/{id}/ussd``: a USSD request (balance check) through one modem.

The daemon holds the modems' ports, so a technician's ``smsd modem ussd``
cannot open them while it runs; ``smsd ussd`` comes here instead.  Only the
users listed in ``[gateways.gsm] ussd_users`` may: a USSD code can transfer
the SIM's credit or change its services, which an API licence alone should
not allow.  Every +CUSD answer is a 200 carrying the network's status
(TS 27.007 7.15: 0 done, 1 menu, which the driver ends, 2 terminated, 4 not
supported, 5 timeout); the HTTP status says what went wrong before any
answer came.
"""

from __future__ import annotations

import structlog
from aiohttp import web

from smsd.api.common import SERVICES, api_error, json_response, read_json, require_user
from smsd.errors import AtError, AtTimeout, GatewayUnavailable, PortGone, ValidationError

log = structlog.get_logger(__name__)


async def ussd(request: web.Request) -> web.Response:
    user = await require_user(request)
    if isinstance(user, web.Response):
        return user
    modem = request.match_info["modem"]
    services = request.app[SERVICES]
    pool, gsm = services.pool, services.config.gsm
    if pool is None or gsm is None:
        return api_error(404, "no GSM modems are configured", modem=modem)
    if user.username not in gsm.ussd_users:
        return api_error(403, f"user {user.username!r} may not send USSD: list the username "
                              "in [gateways.gsm] ussd_users", modem=modem)
    body = await read_json(request)
    if not isinstance(body, dict) or not isinstance(body.get("code"), str):
        return api_error(400, 'body must be a JSON object with \'code\', e.g. {"code": "*100#"}')
    code: str = body["code"]
    # Only with modems configured: like services.py, the API does not load the
    # modem stack (pyserial) for a daemon without one.
    from smsd.modem.pool import UnknownModem

    try:
        answer = await pool.ussd(modem, code)
    except UnknownModem as exc:
        return api_error(404, str(exc), modem=modem)
    except ValidationError as exc:
        return api_error(400, f"{exc}; nothing was sent", modem=modem)
    except GatewayUnavailable as exc:
        return api_error(503, str(exc), modem=modem)
    except PortGone as exc:
        return api_error(503, f"modem {modem} went away: {exc}", modem=modem)
    except AtTimeout as exc:
        return api_error(504, f"no USSD answer within {exc.seconds:g} s", modem=modem)
    except AtError as exc:
        # The modem refused the request (no network, SIM barred from USSD...).
        return api_error(502, f"modem {modem} refused the USSD request: {exc.raw}", modem=modem)
    log.info("api.ussd", user=user.username, modem=modem, code=code, status=answer.status)
    return json_response(
        {"modem": modem, "code": code, "status": answer.status, "text": answer.text}
    )


def routes() -> list[web.RouteDef]:
    return [web.post("/api/v1/modems/{modem}/ussd", ussd)]
