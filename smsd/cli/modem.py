"""``smsd modem ...``: probe, send, read, ussd, list ports, and run/script the simulator.

smsd/cli/main.py calls :func:`add_modem_parser` and :func:`run_modem`; this module
also runs on its own (``python -m smsd.cli.modem <verb> ...``).  Output for
people goes to stdout, reasons for failure to stderr with a non-zero exit.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import structlog

from smsd.cli import modem_device as dev
from smsd.cli.modem_device import EXIT_NO_MODEM, EXIT_PROBLEM, ModemCliError, check_e164
from smsd.modem import at
from smsd.modem.usbinfo import port_info
from smsd.simulator.control import WAIT_S, control_request
from smsd.simulator.faults import MOMENTS
from smsd.simulator.profiles import PROFILES
from smsd.simulator.vendor import URC_PORTS

# The control socket is local and answers at once; 10 s only guards against
# a simulator that hangs (wedged event loop).
CONTROL_TIMEOUT_S = 10.0


def add_modem_parser(subparsers: argparse._SubParsersAction[Any]) -> None:
    p = subparsers.add_parser("modem", help="talk to a GSM modem directly, or simulate modems")
    add_verbs(p.add_subparsers(dest="modem_command", metavar="VERB", required=True))
    p.set_defaults(func=run_modem)


def add_verbs(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser("probe", help="identity, SIM, network, signal and storage of a modem")
    p.add_argument("device", help="serial port, e.g. /dev/serial/by-id/...-if02-port0")
    _pin_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _verbose(p)

    p = sub.add_parser("send", help="send one SMS through a modem (daemon must not hold it)")
    p.add_argument("device")
    p.add_argument("number", help="E.164 destination, e.g. +447700900123")
    p.add_argument("text")
    _pin_args(p)
    p.add_argument("--wait-report", action="store_true", help="wait for delivery reports")
    p.add_argument("--timeout", type=float, default=dev.DEFAULT_REPORT_TIMEOUT_S,
                   metavar="S", help="how long to wait for reports (default %(default)s s)")
    _verbose(p)

    p = sub.add_parser("read", help="messages stored on the SIM, multipart joined")
    p.add_argument("device")
    _pin_args(p)
    p.add_argument("--delete", action="store_true", help="delete what was shown")
    p.add_argument("--json", action="store_true")
    _verbose(p)

    p = sub.add_parser("ussd", help="a USSD request such as a balance check (*100#)")
    p.add_argument("device")
    p.add_argument("code", help="the USSD code: digits, * and #, e.g. '*100#' (quote it)")
    _pin_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    _verbose(p)

    p = sub.add_parser("list", help="candidate serial ports with vendor/model from sysfs")
    p.add_argument("--json", action="store_true")

    p = sub.add_parser("simulate", help="run simulated modems on pseudo-terminals")
    p.add_argument("--link", required=True, help="symlink to the pty (N>1: PATH0, PATH1, ...)")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--profile", choices=sorted(PROFILES), default="generic")
    p.add_argument("--latency-ms", type=float, default=0.0)
    p.add_argument("--send-ms", type=float, default=0.0,
                   help="extra time the network takes per SMS sent (PDU to +CMGS)")
    p.add_argument("--fail-rate", type=float, default=0.0, help="0..1 share of sends refused")
    p.add_argument("--control", help="unix socket for inject/report/unplug/...")
    p.add_argument("--own-number", default="+447700900001", help="first modem's number")
    p.add_argument("--pin", help="the SIM asks for this PIN")
    p.add_argument("--no-sim", action="store_true", help="no SIM card inserted")
    p.add_argument("--no-network", action="store_true", help="no network coverage")
    p.add_argument("--report-delay", type=float, default=0.0, metavar="S",
                   help="delay before automatic delivery reports")
    p.add_argument("--sim-capacity", type=int, help="messages the SIM holds")
    p.add_argument("--seed", type=int, help="random seed for --fail-rate")
    p.add_argument("--port-identity", choices=URC_PORTS, default="usbat",
                   help='which Quectel port the pty plays; URCs arrive only while '
                        'AT+QURCCFG="urcport" names it (default %(default)s)')

    p = sub.add_parser("inject", help="simulator: an SMS arrives from the network")
    _control(p)
    p.add_argument("--from", dest="sender", required=True,
                   help="E.164 sender, or an alphanumeric name such as MyBank")
    p.add_argument("--text", required=True)
    p.add_argument("--order", help="arrival order of the parts, e.g. 3,1,2")

    p = sub.add_parser("report", help="simulator: a delivery report arrives")
    _control(p)
    p.add_argument("--mr", type=int, required=True, help="TP-MR of the sent part")
    p.add_argument("--to", required=True, help="the recipient it was sent to")
    p.add_argument("--status", type=int, default=0, help="TP-ST (0 delivered)")

    for verb, text in (("unplug", "simulator: pull the modem's USB plug"),
                       ("replug", "simulator: plug it back in (new pty, link re-pointed)"),
                       ("silent", "simulator: the modem stops answering"),
                       ("loud", "simulator: the modem answers again")):
        p = sub.add_parser(verb, help=text)
        _control(p)
        if verb in ("unplug", "silent"):
            _moment(p)

    p = sub.add_parser("network", help="simulator: network coverage on or off")
    _control(p)
    p.add_argument("state", choices=("up", "down"))

    p = sub.add_parser("garbage", help="simulator: the modem emits these bytes")
    _control(p)
    p.add_argument("hex", help="bytes as hex, e.g. 00ff41")
    _moment(p)

    p = sub.add_parser("submitted", help="simulator: SMS-SUBMITs the modem accepted")
    _control(p)
    p.add_argument("--json", action="store_true")


def _moment(p: argparse.ArgumentParser) -> None:
    p.add_argument("--at", choices=MOMENTS, help="not now but at the modem's next moment: "
                   "prompt (instead of / glued before '> '), cmgs (after the network took "
                   "the PDU, before +CMGS), cmgr (in the answer to AT+CMGR)")
    p.add_argument("--wait", action="store_true",
                   help=f"with --at: return once it happened (at most {WAIT_S:g} s)")


def _pin_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--pin", help="SIM PIN to enter if the SIM asks for one (visible in ps)")
    g.add_argument("--pin-file", help="file holding the SIM PIN (kept out of the process list)")


def _pin(args: argparse.Namespace) -> str | None:
    if args.pin_file:
        try:
            with open(args.pin_file) as f:
                return f.read().strip() or None
        except OSError as exc:
            raise ModemCliError(f"cannot read --pin-file {args.pin_file}: {exc.strerror}") from exc
    return str(args.pin) if args.pin else None


def _verbose(p: argparse.ArgumentParser) -> None:
    p.add_argument("-v", "--verbose", action="store_true", help="show the driver's log")


def _control(p: argparse.ArgumentParser) -> None:
    p.add_argument("--control", required=True, help="the simulator's control socket")
    p.add_argument("--modem", type=int, default=0, help="which simulated modem (default 0)")


def _setup_logging(verbose: bool, level: int = logging.CRITICAL) -> None:
    """Driver events only with --verbose: the technician reads our summary, not the log."""
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG if verbose else level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        processors=[structlog.processors.add_log_level,
                    structlog.processors.TimeStamper(fmt="iso", utc=True),
                    structlog.dev.ConsoleRenderer(colors=False)],
    )


def run_modem(args: argparse.Namespace) -> int:
    verb = args.modem_command
    _setup_logging(getattr(args, "verbose", False),
                   logging.INFO if verb == "simulate" else logging.CRITICAL)
    try:
        handler = _VERBS[verb]
        return handler(args)
    except ModemCliError as exc:
        print(f"smsd modem {verb}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


# --- device verbs ---------------------------------------------------------------


def _probe(args: argparse.Namespace) -> int:
    report = asyncio.run(dev.probe(args.device, pin=_pin(args)))
    print(dev.render_probe(report, as_json=args.json))
    return 0 if report.ok else EXIT_PROBLEM


def _send(args: argparse.Namespace) -> int:
    result = asyncio.run(dev.send(args.device, args.number, args.text, pin=_pin(args),
                                  wait_report=args.wait_report, timeout_s=args.timeout,
                                  out=sys.stdout))
    if not args.wait_report:
        return 0
    failed = False
    for mr in result.references:
        report = result.reports.get(mr)
        if report is None:
            print(f"TP-MR {mr}: no delivery report within {args.timeout:g} s")
            failed = True
            continue
        print(f"TP-MR {mr}: {dev.describe_report(report)}")
        failed = failed or not report.delivered
    return EXIT_PROBLEM if failed else 0


def _read(args: argparse.Namespace) -> int:
    result = asyncio.run(dev.read(args.device, pin=_pin(args), delete=args.delete))
    if args.json:
        print(json.dumps({"messages": result.messages, "reports": result.reports,
                          "undecodable": result.undecodable}, indent=2, ensure_ascii=False))
        return 0
    if not (result.messages or result.reports or result.undecodable):
        print("no messages on the SIM")
    for m in result.messages:
        where = ",".join(str(i) for i in m["indexes"])
        state = "" if m["complete"] else " (INCOMPLETE: parts missing)"
        print(f"from {m['from']} at {m['timestamp']}, {m['parts']} part(s), "
              f"SIM index {where}{state}:")
        print(f"  {m['text']}")
    for r in result.reports:
        state = "delivered" if r["delivered"] else f"status 0x{r['status']:02X}"
        print(f"delivery report for TP-MR {r['mr']} to {r['recipient']}: {state}")
    for u in result.undecodable:
        print(f"SIM index {u['index']}: undecodable PDU left in place ({u['error']})")
    if args.delete:
        print("deleted from the SIM")
    return 0


def _ussd(args: argparse.Namespace) -> int:
    result = asyncio.run(dev.ussd(args.device, args.code, pin=_pin(args)))
    ok = result.status in at.USSD_ANSWERED
    if args.json:
        print(json.dumps(result.to_json(), indent=2, ensure_ascii=False))
        return 0 if ok else EXIT_PROBLEM
    print("\n".join(result.answer.report_lines()))
    return 0 if ok else EXIT_PROBLEM


# --- list -------------------------------------------------------------------------


def candidate_ports() -> list[str]:
    by_id = sorted(glob.glob("/dev/serial/by-id/*"))
    seen = {os.path.realpath(p) for p in by_id}
    rest = [p for p in sorted(glob.glob("/dev/ttyUSB*") + glob.glob("/dev/ttyACM*"))
            if os.path.realpath(p) not in seen]
    return by_id + rest


def _list(args: argparse.Namespace) -> int:
    ports = [port_info(p) for p in candidate_ports()]
    if args.json:
        print(json.dumps(ports, indent=2))
    elif not ports:
        # An answer, not a failure: nothing is plugged in (exit 0, on stdout).
        print("no candidate ports (looked at /dev/serial/by-id/*, /dev/ttyUSB*, /dev/ttyACM*)")
    for p in ports if not args.json else []:
        extra = " ".join(f"{k}={p[k]}" for k in ("usb_id", "manufacturer", "product",
                                                   "interface", "driver") if p.get(k))
        target = f" -> {p['device']}" if p["device"] != p["path"] else ""
        print(f"{p['path']}{target}  {extra}".rstrip())
    return 0


# --- simulator ----------------------------------------------------------------------


def _simulate(args: argparse.Namespace) -> int:
    if args.count < 1:
        raise ModemCliError("--count must be at least 1")
    if not 0.0 <= args.fail_rate <= 1.0:
        raise ModemCliError("--fail-rate must be within 0..1")
    check_e164(args.own_number)
    return asyncio.run(_run_simulator(args))


async def _run_simulator(args: argparse.Namespace) -> int:
    from smsd.simulator.farm import SimulatorFarm

    kw: dict[str, Any] = dict(latency_ms=args.latency_ms, send_ms=args.send_ms,
                              fail_rate=args.fail_rate,
                              own_number=args.own_number, pin=args.pin,
                              sim_present=not args.no_sim, network=not args.no_network,
                              report_delay_s=args.report_delay, seed=args.seed,
                              sim_capacity=args.sim_capacity,
                              port_identity=args.port_identity)
    try:
        farm = SimulatorFarm(args.count, link=args.link, profile=args.profile,
                             control=args.control, **kw)
        await farm.start()
    except (OSError, ValueError) as exc:
        raise ModemCliError(f"cannot start the simulator: {exc}") from exc
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        for i, modem in enumerate(farm.modems):
            print(f"modem {i}: {modem.path} -> {modem.slave_path} ({args.profile}, "
                  f"{modem.state.sim.own_number})", flush=True)
        if args.control:
            print(f"control: {args.control}", flush=True)
        print("ready", flush=True)
        await stop.wait()
    finally:
        await farm.stop()
    return 0


async def _control_call(path: str, request: dict[str, Any],
                        wait_s: float = CONTROL_TIMEOUT_S) -> dict[str, Any]:
    try:
        async with asyncio.timeout(wait_s):
            answer = await control_request(path, request)
    except (OSError, TimeoutError) as exc:
        raise ModemCliError(f"no simulator on control socket {path}: {exc}",
                            EXIT_NO_MODEM) from exc
    except ValueError as exc:        # json.JSONDecodeError included
        raise ModemCliError(str(exc)) from exc
    if not answer.get("ok"):
        raise ModemCliError(f"the simulator refused: {answer.get('error')}")
    return answer


def _control_verb(args: argparse.Namespace) -> int:
    verb = args.modem_command
    req: dict[str, Any] = {"cmd": verb, "modem": args.modem}
    if verb == "inject":
        if args.sender.startswith("+") or args.sender.isdigit():
            check_e164(args.sender)
        elif not (args.sender.isalnum() and len(args.sender) <= 11):
            raise ModemCliError(f"--from {args.sender!r}: an E.164 number, or an alphanumeric "
                                "sender of at most 11 letters and digits")
        req.update({"cmd": "deliver", "from": args.sender, "text": args.text})
        if args.order:
            try:
                req["order"] = [int(x) for x in args.order.split(",")]
            except ValueError:
                raise ModemCliError(f"--order {args.order!r}: expected e.g. 3,1,2") from None
    elif verb == "report":
        check_e164(args.to)
        req.update({"mr": args.mr, "to": args.to, "status": args.status})
    elif verb == "network":
        req.update({"up": args.state == "up"})
    elif verb == "garbage":
        req.update({"hex": args.hex})
    wait_s = CONTROL_TIMEOUT_S
    if getattr(args, "at", None):
        req.update({"at": args.at, "wait": bool(args.wait)})
        wait_s += WAIT_S if args.wait else 0.0
    elif getattr(args, "wait", False):
        raise ModemCliError("--wait goes with --at")
    answer = asyncio.run(_control_call(args.control, req, wait_s))
    if verb == "submitted":
        if args.json:
            print(json.dumps(answer["submitted"], indent=2, ensure_ascii=False))
        for s in answer["submitted"] if not args.json else []:
            print(f"TP-MR {s['mr']}: to {s['to']} part {s['part']}/{s['parts']} "
                  f"({s['encoding']}): {s['text']}")
    elif "armed" in answer:
        print(f"modem {args.modem}: {verb} armed for its next {answer['armed']}")
    elif "fired" in answer:
        print(f"modem {args.modem}: {verb} at {answer['fired']['moment']}: "
              f"{json.dumps(answer['fired'])}")
    elif "path" in answer:
        print(f"modem {args.modem}: {verb} done, {answer['path']}")
    else:
        print(f"modem {args.modem}: {verb} done")
    return 0


_VERBS = {
    "probe": _probe, "send": _send, "read": _read, "ussd": _ussd, "list": _list,
    "simulate": _simulate,
    "inject": _control_verb, "report": _control_verb, "unplug": _control_verb,
    "replug": _control_verb, "silent": _control_verb, "loud": _control_verb,
    "network": _control_verb, "garbage": _control_verb, "submitted": _control_verb,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="smsd modem",
                                     description="talk to a GSM modem, or simulate modems")
    add_verbs(parser.add_subparsers(dest="modem_command", metavar="VERB", required=True))
    return run_modem(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
