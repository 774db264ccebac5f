"""POST /api/v1/modems/{id}/ussd over a real socket, through a real ModemPool to the
simulated modem on a pseudo-terminal (TS 27.007 7.15: OK at once, the network's
answer later as an unsolicited +CUSD)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import aiohttp
import pytest

from smsd.config import GsmGateway
from smsd.modem.device import USSD_TIMEOUT
from smsd.modem.pool import ModemPool
from smsd.modem.spec import ModemSpec
from smsd.simulator.general import USSD_BALANCE
from smsd.simulator.modem import SimulatedModem
from tests.api.conftest import PASSWORD, Api, FakeGateway, api_services, basic, make_config, serving
from tests.backend import open_store
from tests.core.polling import eventually
from tests.modem.sim_spy import Recorder, Spy

pytestmark = pytest.mark.timeout(30)

# The pool's USSD deadline in the test of a network that never answers, so the
# 504 comes quickly.  Every other test keeps the product's deadline: the
# simulator answers after USSD_ANSWER_DELAY_S (0.2 s), and on a loaded machine
# a 1 s deadline for that answer was a false 504.
SILENT_NETWORK_DEADLINE_S = 1.0


@dataclass
class Rig:
    base: str
    session: aiohttp.ClientSession
    modem: SimulatedModem
    pool: ModemPool
    spy: Spy
    auth: dict[str, str]

    async def ussd(
        self, modem: str, body: object, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, object], aiohttp.typedefs.LooseHeaders]:
        async with self.session.post(
            f"{self.base}/api/v1/modems/{modem}/ussd",
            json=body,
            headers=self.auth if headers is None else headers,
        ) as r:
            return r.status, await r.json(), r.headers


@pytest.fixture
def ussd_users() -> tuple[str, ...]:
    """Who [gateways.gsm] ussd_users lets through; a test overrides it by parametrizing."""
    return ("alice",)


@pytest.fixture
def ussd_deadline_s() -> float:
    """The pool's USSD deadline; the 504 test overrides it by parametrizing."""
    return USSD_TIMEOUT


@pytest.fixture
async def rig(tmp_path: Path, ussd_users: tuple[str, ...],
              ussd_deadline_s: float) -> AsyncIterator[Rig]:
    spec = ModemSpec(id="gsm0", path=str(tmp_path / "ttyGSM0"), own_number="+447700900001")
    cfg = replace(make_config(tmp_path), gsm=GsmGateway((spec,), ussd_users))
    store = await open_store(cfg)
    modem = SimulatedModem(own_number="+447700900001", seed=1)
    link = str(tmp_path / "ttyGSM0")
    await modem.start(link)
    spy = Spy(modem)
    pool = ModemPool(
        [spec],
        Recorder(),
        state_dir=tmp_path,
        ussd_s=ussd_deadline_s,
    )
    services = api_services(cfg, store, FakeGateway("gsm"), pool)
    supervising = asyncio.create_task(pool.run())
    try:
        await eventually(pool.healthy)
        async with serving(services) as base, aiohttp.ClientSession() as session:
            yield Rig(base, session, modem, pool, spy, {"Authorization": basic("alice", PASSWORD)})
    finally:
        supervising.cancel()
        await asyncio.gather(supervising, return_exceptions=True)
        await modem.stop()
        await store.close()


class TestUssdApi:
    async def test_balance_answer(self, rig: Rig) -> None:
        """A known modem and a good code: 200 with the modem, the code, +CUSD status 0
        and the network's text; the modem was sent exactly that request."""
        status, body, _ = await rig.ussd("gsm0", {"code": "*100#"})
        assert status == 200, body
        assert body == {"modem": "gsm0", "code": "*100#", "status": 0, "text": USSD_BALANCE}
        assert [line for line in rig.spy.lines if line.startswith("AT+CUSD")] == [
            'AT+CUSD=1,"*100#",15'
        ]

    async def test_concurrent_requests_each_get_their_answer(self, rig: Rig) -> None:
        """Two requests for one modem at once: the network runs one USSD dialogue per
        subscriber, so the second request goes out only after the first one's +CUSD
        answer came back, and both get the balance."""
        timeline: list[str] = []
        execute, unsolicited = rig.modem.engine.execute, rig.modem.urc

        def command(line: str) -> object:
            if line.startswith("AT+CUSD"):
                timeline.append(line.strip())
            return execute(line)

        def urc(text: str, *, sms: bool = False) -> None:
            if text.startswith("+CUSD"):
                timeline.append("+CUSD")
            unsolicited(text, sms=sms)

        rig.modem.engine.execute = command  # type: ignore[assignment]
        rig.modem.urc = urc  # type: ignore[method-assign]
        results = await asyncio.gather(
            rig.ussd("gsm0", {"code": "*100#"}), rig.ussd("gsm0", {"code": "*101#"})
        )
        assert sorted((status, body["code"], body["text"]) for status, body, _ in results) == [
            (200, "*100#", USSD_BALANCE),
            (200, "*101#", USSD_BALANCE),
        ]
        assert [t[:10] for t in timeline] == ["AT+CUSD=1,", "+CUSD", "AT+CUSD=1,", "+CUSD"]

    async def test_bad_bodies_are_400_and_nothing_sent(self, rig: Rig) -> None:
        """No code, a code that is not a string, characters other than 0-9 * #, an
        overlong code and a non-object body: each a 400 with an 'error' reason, and the
        modem never sees an AT+CUSD."""
        for bad in (
            {},
            {"code": 100},
            {"code": ""},
            {"code": '*100#",1;AT+CMGD=1'},
            {"code": "*100# "},
            {"code": "*" * 33},
            ["*100#"],
        ):
            status, body, _ = await rig.ussd("gsm0", bad)
            assert status == 400, bad
            assert isinstance(body.get("error"), str) and body["error"], bad
        async with rig.session.post(
            f"{rig.base}/api/v1/modems/gsm0/ussd",
            data=b"{not json",
            headers={"Content-Type": "application/json", **rig.auth},
        ) as r:
            assert r.status == 400
            assert "not valid JSON" in (await r.json())["error"]
        assert rig.spy.count("AT+CUSD") == 0

    async def test_needs_an_api_user(self, rig: Rig) -> None:
        """No credentials: 401 with a Basic challenge; a user without the API licence
        (UC-Essential): 403; neither reaches the modem."""
        status, body, headers = await rig.ussd("gsm0", {"code": "*100#"}, headers={})
        assert status == 401 and "error" in body
        assert headers["WWW-Authenticate"].startswith("Basic ")
        status, body, _ = await rig.ussd(
            "gsm0", {"code": "*100#"}, headers={"Authorization": basic("eve", PASSWORD)}
        )
        assert status == 403 and "licence" in str(body["error"])
        status, _, _ = await rig.ussd(
            "gsm0", {"code": "*100#"}, headers={"Authorization": basic("alice", "wrong")}
        )
        assert status == 401
        assert rig.spy.count("AT+CUSD") == 0

    @pytest.mark.parametrize("ussd_users", [()])
    async def test_only_listed_users_may_send_ussd(self, rig: Rig) -> None:
        """A UC-Business user not in [gateways.gsm] ussd_users: 403 naming the setting,
        and the modem never sees AT+CUSD (a USSD code can move the SIM's credit)."""
        status, body, _ = await rig.ussd("gsm0", {"code": "*100#"})
        assert status == 403 and "ussd_users" in str(body["error"])
        assert rig.spy.count("AT+CUSD") == 0

    async def test_unknown_modem_is_404(self, rig: Rig) -> None:
        """A modem id the pool does not have: 404 naming the modems there are."""
        status, body, _ = await rig.ussd("gsm9", {"code": "*100#"})
        assert status == 404
        assert body["modem"] == "gsm9" and "gsm0" in str(body["error"])
        assert rig.spy.count("AT+CUSD") == 0

    async def test_modem_without_network_is_503(self, rig: Rig) -> None:
        """Network coverage lost (+CREG: 0): the modem is not ready, so 503 saying
        why, and no USSD request goes out."""
        rig.modem.set_network(False)
        await eventually(lambda: not rig.pool.healthy())
        status, body, _ = await rig.ussd("gsm0", {"code": "*100#"})
        assert status == 503
        assert "not ready" in str(body["error"]) and "no_network" in str(body["error"])
        assert rig.spy.count("AT+CUSD") == 0

    @pytest.mark.parametrize("ussd_deadline_s", [SILENT_NETWORK_DEADLINE_S])
    async def test_no_answer_is_504(self, rig: Rig) -> None:
        """The modem takes AT+CUSD (OK) but the network never answers (no +CUSD): after
        the deadline a 504 in the project's error shape, not a hung request or a 500."""
        unsolicited = rig.modem.urc

        def network_never_answers(text: str, *, sms: bool = False) -> None:
            if not text.startswith("+CUSD"):
                unsolicited(text, sms=sms)

        rig.modem.urc = network_never_answers  # type: ignore[method-assign]
        status, body, _ = await rig.ussd("gsm0", {"code": "*100#"})
        assert status == 504, body
        assert "no USSD answer" in str(body["error"]) and body["modem"] == "gsm0"
        assert rig.spy.count("AT+CUSD=1") == 1


async def test_daemon_without_modems_is_404(api: Api) -> None:
    """A daemon with no GSM modems configured: every modem id is unknown (404)."""
    async with api.session.post(
        api.base + "/api/v1/modems/gsm0/ussd", json={"code": "*100#"}, headers=api.auth
    ) as r:
        assert r.status == 404
        assert "no GSM modems" in (await r.json())["error"]
