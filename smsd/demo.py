"""``smsd run --demo``: a daemon with no config file and no hardware.

One simulated modem on a pseudo-terminal, one user (demo/demo), loopback
listeners, and a banner that says how to try it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from smsd.config import Config, Licence, Listen, User

DEMO_NUMBER = "+447700900001"
DEMO_RECIPIENT = "+447700900123"
DEMO_USER = "demo"
DEMO_PASSWORD = "demo"
DEMO_EXTENSION = "100"
# A cheap scrypt cost for the demo's known password: it protects nothing, and a
# fast hash keeps the first request snappy.  Real users get passwords.DEFAULT_N.
DEMO_SCRYPT_N = 2**10


def demo_config(state_dir: Path, http: Listen | None, agi: Listen | None) -> Config:
    """A config that needs no file and no hardware: one simulated modem, one user."""
    from smsd.config import GsmGateway, Policy
    from smsd.modem.spec import ModemSpec
    from smsd.passwords import hash_password

    state_dir = state_dir.resolve()
    user = User(
        extension=DEMO_EXTENSION,
        name="Demo User",
        username=DEMO_USER,
        office_number=DEMO_NUMBER,
        licence=Licence.UC_BUSINESS,
        endpoint=f"pjsip:{DEMO_EXTENSION}",
        password_hash=hash_password(DEMO_PASSWORD, n=DEMO_SCRYPT_N),
        admin=True,
    )
    modem = ModemSpec(
        id="gsm0",
        path=str(state_dir / "modem0"),
        own_number=DEMO_NUMBER,
        profile="generic",
    )
    return Config(
        state_dir=state_dir,
        database=state_dir / "smsd.sqlite3",
        users=(user,),
        # demo may ask the simulated network for the SIM's balance (USSD *100#):
        # the simulator answers at once and it costs nothing.
        gsm=GsmGateway((modem,), (DEMO_USER,)),
        routing=("gsm",),
        policy=Policy(country="GB", timezone="Europe/London"),
        http=http or Listen("127.0.0.1", 8080),
        agi=agi or Listen("127.0.0.1", 4573),
    )


@asynccontextmanager
async def demo_modems(cfg: Config) -> AsyncIterator[Any]:
    """The demo's one simulated modem, on this loop, with its control socket."""
    from smsd.simulator.farm import SimulatorFarm

    control = cfg.state_dir / "modem.sock"
    with contextlib.suppress(FileNotFoundError):
        control.unlink()
    farm = SimulatorFarm(
        1,
        link=str(cfg.state_dir / "modem0"),
        control=str(control),
        own_number=DEMO_NUMBER,
    )
    await farm.start()
    try:
        yield farm
    finally:
        await farm.stop()


def demo_banner(cfg: Config, http_port: int | None, agi_port: int | None) -> str:
    base = f"http://{cfg.http.host}:{http_port}"
    control = cfg.state_dir / "modem.sock"
    return "\n".join(
        [
            "",
            "smsd demo is running (Ctrl-C to stop).",
            f"  state:     {cfg.state_dir}",
            f"  Console:   {base}/ui/   sign in as {DEMO_USER} / {DEMO_PASSWORD}",
            f"  HTTP API:  {base}   user {DEMO_USER} / password {DEMO_PASSWORD}"
            f"   (described at {base}/api/v1/doc)",
            f"  FastAGI:   agi://{cfg.agi.host}:{agi_port}/sms-send",
            f"  modem:     simulated, SIM number {DEMO_NUMBER}",
            "",
            "Send an SMS:",
            f"  curl -u {DEMO_USER}:{DEMO_PASSWORD} -d number={DEMO_RECIPIENT} -d message=Hello "
            f"{base}/api/v1/originate/sms",
            "Follow it:",
            f"  curl -u {DEMO_USER}:{DEMO_PASSWORD} {base}/api/v1/sms?limit=5",
            "Make the far end reply:",
            f'  smsd modem inject --control {control} --from {DEMO_RECIPIENT} --text "Hi"',
            "See the conversation it opened for user demo:",
            f"  curl -u {DEMO_USER}:{DEMO_PASSWORD} {base}/api/v1/conversations",
            "",
        ]
    )
