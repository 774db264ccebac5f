"""The simulator farm's control socket: one JSON object per line, one answer per line.

Tests, the demo and the technician CLI script the simulated network through
it (deliver an SMS, send a status report, unplug a modem, ...).  A bad request
gets ``{"ok": false, "error": "..."}`` and changes nothing; the connection
stays usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import structlog

from smsd.errors import PduError
from smsd.simulator.faults import MOMENTS

if TYPE_CHECKING:
    from smsd.simulator.modem import SimulatedModem

log = structlog.get_logger(__name__)

# One request line: a deliver command with a 10-part UCS-2 text is ~3 kB of
# JSON; 64 KiB bounds what a confused client can make us buffer.
MAX_REQUEST = 64 * 1024
# A control client that sends nothing for this long is disconnected.
IDLE_TIMEOUT_S = 300.0
# How long a request armed for a moment waits for it by default ("wait": true):
# long enough for a test's bulk send to reach it, short enough to report a
# moment that never comes.
WAIT_S = 60.0


class BadRequest(Exception):
    """The request is malformed; the message goes back to the client."""


def _str(req: dict[str, Any], key: str) -> str:
    value = req.get(key)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key!r} must be a non-empty string")
    return value


def _int(req: dict[str, Any], key: str, default: int | None = None) -> int:
    value = req.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadRequest(f"{key!r} must be an integer")
    return value


Command = Callable[["SimulatedModem", dict[str, Any]], Awaitable[dict[str, Any]]]


async def _deliver(m: SimulatedModem, req: dict[str, Any]) -> dict[str, Any]:
    order = req.get("order")
    if order is not None and (not isinstance(order, list)
                              or not all(isinstance(p, int) for p in order)):
        raise BadRequest("'order' must be a list of part numbers")
    try:
        await m.deliver(_str(req, "from"), _str(req, "text"), order=order,
                        ref16=bool(req.get("ref16", False)))
    except (ValueError, PduError) as exc:
        raise BadRequest(str(exc)) from exc
    return {}


async def _report(m: SimulatedModem, req: dict[str, Any]) -> dict[str, Any]:
    mr = _int(req, "mr")
    status = _int(req, "status", 0)
    if not 0 <= mr <= 255 or not 0 <= status <= 255:
        raise BadRequest("'mr' and 'status' must be within 0..255")
    try:
        await m.status_report(mr, _str(req, "to"), status)
    except (ValueError, PduError) as exc:
        raise BadRequest(str(exc)) from exc
    return {}


async def _at_moment(m: SimulatedModem, req: dict[str, Any], kind: str,
                     data: bytes = b"") -> dict[str, Any] | None:
    """Arm ``kind`` for the moment ``req["at"]`` names; None when the request has no "at".

    With ``"wait": true`` the answer comes once the fault fired (bounded by
    ``"wait_s"``, default WAIT_S) and tells what was in flight.
    """
    moment = req.get("at")
    if moment is None:
        return None
    if not isinstance(moment, str) or moment not in MOMENTS:
        raise BadRequest(f"'at' must be one of {', '.join(MOMENTS)}")
    fired = m.faults.arm(moment, kind, data)
    if not req.get("wait"):
        return {"armed": moment}
    wait_s = req.get("wait_s", WAIT_S)
    if not isinstance(wait_s, int | float) or isinstance(wait_s, bool) or wait_s <= 0:
        raise BadRequest("'wait_s' must be a positive number")
    try:
        async with asyncio.timeout(wait_s):
            return {"fired": await asyncio.shield(fired)}
    except TimeoutError:
        fired.cancel()
        raise BadRequest(f"the moment {moment!r} did not come within {wait_s:g} s") from None


async def _unplug(m: SimulatedModem, req: dict[str, Any]) -> dict[str, Any]:
    armed = await _at_moment(m, req, "unplug")
    if armed is not None:
        return armed
    await m.unplug()
    return {"path": m.path}


async def _replug(m: SimulatedModem, req: dict[str, Any]) -> dict[str, Any]:
    await m.replug()
    return {"path": m.path, "slave": m.slave_path}


async def _silent(m: SimulatedModem, req: dict[str, Any]) -> dict[str, Any]:
    armed = await _at_moment(m, req, "silent")
    if armed is not None:
        return armed
    m.set_silent(True)
    return {}


async def _loud(m: SimulatedModem, req: dict[str, Any]) -> dict[str, Any]:
    m.set_silent(False)
    return {}


async def _garbage(m: SimulatedModem, req: dict[str, Any]) -> dict[str, Any]:
    try:
        data = bytes.fromhex(_str(req, "hex"))
    except ValueError as exc:
        raise BadRequest("'hex' must be hex digits") from exc
    armed = await _at_moment(m, req, "garbage", data)
    if armed is not None:
        return armed
    await m.spew_garbage(data)
    return {}


async def _submitted(m: SimulatedModem, req: dict[str, Any]) -> dict[str, Any]:
    return {"submitted": [s.to_json() for s in m.submissions]}


async def _network(m: SimulatedModem, req: dict[str, Any]) -> dict[str, Any]:
    up = req.get("up")
    if not isinstance(up, bool):
        raise BadRequest("'up' must be true or false")
    m.set_network(up)
    return {}


async def _stored(m: SimulatedModem, req: dict[str, Any]) -> dict[str, Any]:
    memory = req.get("memory", "SM")
    if memory not in m.state.memories:
        raise BadRequest(f"no memory {memory!r}")
    return {"stored": [{"index": i, "stat": stat, "pdu": pdu}
                       for i, (stat, pdu) in sorted(m.stored(memory).items())]}


COMMANDS: dict[str, Command] = {
    "deliver": _deliver,
    "report": _report,
    "unplug": _unplug,
    "replug": _replug,
    "silent": _silent,
    "loud": _loud,
    "garbage": _garbage,
    "submitted": _submitted,
    "network": _network,
    "stored": _stored,
}


def _describe(i: int, m: SimulatedModem) -> dict[str, Any]:
    return {"modem": i, "path": m.path, "slave": m.slave_path, "plugged": m.plugged,
            "profile": m.state.profile.name, "own_number": m.state.sim.own_number,
            "port_identity": m.port_identity, "urcs_here": m.urcs_routed_here()}


async def handle_request(modems: Sequence[SimulatedModem], raw: bytes) -> dict[str, Any]:
    """Run one request line; never raises for anything the client sent."""
    try:
        req = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return {"ok": False, "error": "request is not valid JSON"}
    if not isinstance(req, dict):
        return {"ok": False, "error": "request must be a JSON object"}
    cmd = req.get("cmd")
    if cmd == "modems":
        return {"ok": True, "modems": [_describe(i, m) for i, m in enumerate(modems)]}
    handler = COMMANDS.get(cmd) if isinstance(cmd, str) else None
    if handler is None:
        known = ", ".join(sorted([*COMMANDS, "modems"]))
        return {"ok": False, "error": f"unknown cmd {cmd!r} (known: {known})"}
    try:
        index = _int(req, "modem", 0)
        if not 0 <= index < len(modems):
            raise BadRequest(f"no modem {index} (there are {len(modems)})")
        result = await handler(modems[index], req)
    except BadRequest as exc:
        return {"ok": False, "error": str(exc)}
    return {"ok": True, **result}


async def serve_control(modems: Sequence[SimulatedModem], path: str) -> asyncio.AbstractServer:
    """Listen on the unix socket ``path`` (replacing a stale one)."""

    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    async with asyncio.timeout(IDLE_TIMEOUT_S):
                        line = await reader.readline()
                except (ValueError, asyncio.LimitOverrunError):
                    writer.write(b'{"ok": false, "error": "request too long"}\n')
                    break
                if not line:
                    break
                if not line.strip():
                    continue
                try:
                    answer = await handle_request(modems, line)
                except Exception as exc:   # a simulator bug: report it, keep serving
                    log.exception("simulator.control_failed")
                    answer = {"ok": False, "error": f"internal error: {exc}"}
                writer.write(json.dumps(answer).encode() + b"\n")
                await writer.drain()
        except (TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return await asyncio.start_unix_server(client, path, limit=MAX_REQUEST)


async def control_request(path: str, request: dict[str, Any]) -> dict[str, Any]:
    """One request on the control socket at ``path`` and its answer (``ok`` not checked).

    Raises OSError when nobody listens there, ValueError when what came back
    is not one JSON object.  The caller bounds the wait.
    """
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(json.dumps(request).encode() + b"\n")
        await writer.drain()
        line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
    if not line:
        raise ValueError(f"the simulator closed {path} without an answer")
    answer = json.loads(line)
    if not isinstance(answer, dict):
        raise ValueError(f"the simulator answered something odd: {line!r}")
    return answer
