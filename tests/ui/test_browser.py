"""The console in a real browser (Debian's chromium, driven by Playwright) against
``smsd run --demo`` as a subprocess.

No browser is downloaded: ``playwright install`` is never run; scripts/test
installs the distribution's chromium and the tests launch it by path.  Each
test waits for what the page shows (Playwright's auto-waiting); the timeouts
only bound a broken build.  The run takes a screenshot of each page at
desktop and phone width, into a temporary directory; with
``SMSD_UPDATE_SCREENSHOTS=1`` into docs/screenshots/ instead (the README shows
them), to refresh the committed pictures after a visible change:

    SMSD_UPDATE_SCREENSHOTS=1 .venv/bin/python -m pytest tests/ui/test_browser.py
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from smsd.passwords import hash_password
from tests.backend import database_toml
from tests.daemon_process import ConfigDaemon
from tests.fakes.ami_calls import FakeCall
from tests.fakes.asterisk_ami import FakeAmi
from tests.fakes.ports import free_port
from tests.test_daemon import DemoDaemon, running_demo

T = TypeVar("T")

CHROMIUM = Path("/usr/bin/chromium")
DOCS_SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
# SMSD_UPDATE_SCREENSHOTS=1: write the screenshots over the committed ones.
UPDATE_SCREENSHOTS_ENV = "SMSD_UPDATE_SCREENSHOTS"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Upper bound for what a page must show; reached only when something is broken.
SHOW_TIMEOUT_MS = 30_000
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoDaemon]:
    with running_demo(tmp_path_factory.mktemp("console-demo")) as d:
        yield d


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    assert CHROMIUM.exists(), "no /usr/bin/chromium: scripts/test installs it (apt chromium)"
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                   args=CHROMIUM_ARGS)
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def page(browser: Browser, demo: DemoDaemon) -> Iterator[Page]:
    context = browser.new_context(base_url=demo.base, viewport=DESKTOP, accept_downloads=True)
    context.set_default_timeout(SHOW_TIMEOUT_MS)
    expect.set_options(timeout=SHOW_TIMEOUT_MS)
    p = context.new_page()
    try:
        yield p
    finally:
        context.close()


def sign_in(page: Page, user: str = "demo", password: str = "demo") -> None:
    page.goto("/ui/login")
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def mark_page(page: Page) -> None:
    """A marker that survives only as long as the page is not reloaded."""
    page.evaluate("window.__noReload = 'still here'")


def not_reloaded(page: Page) -> bool:
    return bool(page.evaluate("window.__noReload === 'still here'"))


def inject(demo: DemoDaemon, sender: str, text: str) -> None:
    """The simulated network delivers an SMS from ``sender`` to the demo's SIM."""
    subprocess.run([sys.executable, "-m", "smsd", "modem", "inject", "--control",
                    str(demo.state_dir / "modem.sock"), "--from", sender, "--text", text],
                   check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where shoot() writes: docs/screenshots/ (the README's pictures) only when
    SMSD_UPDATE_SCREENSHOTS=1 asks to refresh them, else a temporary directory,
    so an ordinary run leaves the git tree clean."""
    if os.environ.get(UPDATE_SCREENSHOTS_ENV) == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        return DOCS_SCREENSHOTS
    return tmp_path_factory.mktemp("screenshots")


def shoot(page: Page, where: Path, name: str, *, full_page: bool = True) -> None:
    """Desktop and phone screenshots of the page as it is now, into ``where``."""
    for label, size in (("desktop", DESKTOP), ("phone", PHONE)):
        page.set_viewport_size(size)
        page.screenshot(path=str(where / f"{name}-{label}.png"), full_page=full_page)
    page.set_viewport_size(DESKTOP)


class TestSignIn:
    def test_failed_login_then_sign_in(self, page: Page, demo: DemoDaemon,
                                       screenshots: Path) -> None:
        """The demo's banner names the console and its user; a wrong password shows
        the error and stays on the form; demo/demo signs in."""
        assert f"Console:   {demo.base}/ui/   sign in as demo / demo" in demo.banner
        sign_in(page, "demo", "wrong")
        expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
        expect(page).to_have_url(f"{demo.base}/ui/login")
        shoot(page, screenshots, "login")
        sign_in(page)
        expect(page).to_have_url(f"{demo.base}/ui/conversations")
        expect(page.get_by_text("Demo User (100)")).to_be_visible()

    def test_csrf_less_post_is_refused(self, page: Page) -> None:
        """A POST with the session cookie but no CSRF token is answered 403."""
        sign_in(page)
        answer = page.request.post("/ui/blocklist", form={"number": "+447700900999"})
        assert answer.status == 403
        page.goto("/ui/blocklist")
        expect(page.get_by_text("+447700900999")).to_have_count(0)


class TestConversations:
    def test_inbound_appears_live_as_text_then_reply_and_assign(
            self, page: Page, demo: DemoDaemon, screenshots: Path) -> None:
        """An injected SMS with <script> appears in the open list without a reload,
        shown as text; in the thread a second one appears live; the reply box
        counts, the reply turns delivered live, and assigning shows the agent."""
        sign_in(page)
        mark_page(page)
        inject(demo, "+447700900123", "<script>alert('pwned')</script> Hello?")
        row = page.locator("tr", has_text="+447700900123")
        expect(row.locator(".last")).to_contain_text("<script>alert('pwned')</script> Hello?")
        expect(row.get_by_label("1 unread")).to_be_visible()
        assert not_reloaded(page)
        shoot(page, screenshots, "conversations")
        row.get_by_role("link").click()
        expect(page.locator(".msg.in .text")).to_have_text(
            "<script>alert('pwned')</script> Hello?")
        mark_page(page)
        inject(demo, "+447700900123", "Are you open today?")
        expect(page.locator(".msg.in .text").last).to_have_text("Are you open today?")
        assert not_reloaded(page)
        box = page.get_by_label("Reply")
        box.fill("Yes, until 6 pm")
        expect(page.locator("#text-count")).to_have_text(
            "15 / 670 characters · GSM-7 · 1 part")
        box.fill("Yes 😀" + "x" * 70)
        expect(page.locator("#text-count")).to_contain_text("UCS-2 · 2 parts")
        box.fill("Yes, until 6 pm")
        page.get_by_role("button", name="Send reply").click()
        mine = page.locator(".msg.out", has_text="Yes, until 6 pm")
        mark_page(page)
        expect(mine.locator(".tick")).to_contain_text("delivered")
        assert not_reloaded(page)
        page.get_by_label("Assigned agent").select_option("100")
        page.get_by_role("button", name="Assign").click()
        expect(page.locator(".sub")).to_contain_text("assigned to 100")
        shoot(page, screenshots, "thread")

    def test_create_a_conversation_from_search(self, page: Page, demo: DemoDaemon,
                                               screenshots: Path) -> None:
        """A number typed in search is offered with "2 Way SMS", which opens its
        conversation on the service."""
        sign_in(page)
        page.goto("/ui/search")
        page.get_by_label("Search users, conversations, contacts or type a number").fill(
            "+447700900666")
        page.get_by_role("button", name="Search").click()
        expect(page.get_by_role("link", name="SMS", exact=True)).to_be_visible()
        shoot(page, screenshots, "search")
        page.get_by_role("button", name="2 Way SMS").click()
        expect(page).to_have_url(f"{demo.base}/ui/conversations/" +
                                 page.url.rsplit("/", 1)[-1])
        expect(page.locator("h1")).to_have_text("+447700900666")


class TestMessages:
    def test_sent_sms_turns_delivered_without_reload(self, page: Page, demo: DemoDaemon,
                                                     screenshots: Path) -> None:
        """With Messages open, an SMS sent from the Send page shows up there and
        turns delivered without a reload."""
        sign_in(page)
        page.goto("/ui/send")
        page.get_by_label("To (one or more numbers, comma separated)").fill(
            "+447700900124, 999")
        page.locator("#text").fill("Your parcel is on its way")
        expect(page.locator("#text-count")).to_contain_text("GSM-7 · 1 part")
        shoot(page, screenshots, "send")
        page.get_by_role("button", name="Send SMS").click()
        expect(page.get_by_role("status").first).to_have_text("1 queued, 1 refused.")
        expect(page.locator(".refused")).to_contain_text("999")
        page.goto("/ui/messages")
        mark_page(page)
        status, _ = demo.request("POST", "/api/v1/originate/sms", urllib.parse.urlencode(
            {"number": "+447700900125", "message": "Live one"}).encode())
        assert status == 200
        row = page.locator("tr", has_text="Live one")
        expect(row.locator(".tick")).to_contain_text("delivered")
        assert not_reloaded(page)
        shoot(page, screenshots, "messages")

    def test_bulk_csv_upload_shows_progress_and_refusals(self, page: Page,
                                                         tmp_path: Path) -> None:
        """A CSV of 210 numbers goes up in two batches: the progress bar reaches
        the end and the refused numbers are listed with their reason."""
        numbers = [f"+4477009{i:05d}" for i in range(208)] + ["12", "not-a-number"]
        book = tmp_path / "bulk.csv"
        book.write_text("number\n" + "\n".join(numbers) + "\n")
        sign_in(page)
        page.goto("/ui/send")
        mark_page(page)
        page.get_by_label("CSV file (one number per line, or a \"number\" column)").set_input_files(
            str(book))
        page.locator("#bulk-text").fill("Season's greetings")
        page.get_by_role("button", name="Upload and send").click()
        result = page.locator("#bulk-result")
        expect(result.get_by_role("status")).to_have_text("208 queued, 2 refused.")
        expect(result.locator(".refused li")).to_have_count(2)
        expect(page.locator("#bulk-progress")).to_have_js_property("value", 210)
        assert not_reloaded(page)

    def test_timeline_and_csv_export(self, page: Page, tmp_path: Path,
                                     screenshots: Path) -> None:
        """A message's page shows each state change; Export CSV downloads the list."""
        sign_in(page)
        page.goto("/ui/messages")
        with page.expect_download() as dl:
            page.get_by_role("link", name="Export CSV").click()
        saved = tmp_path / "messages.csv"
        dl.value.save_as(saved)
        assert saved.read_text().startswith("id,created_at,user,sender,recipient,state")
        page.locator("tbody tr a").first.click()
        timeline = page.get_by_label("History")
        expect(timeline).to_contain_text("queued")
        expect(timeline).to_contain_text("delivered")
        shoot(page, screenshots, "message-timeline")


class TestAdmin:
    def test_ussd_balance_of_the_demo_sim(self, page: Page, screenshots: Path) -> None:
        """The demo user may run USSD: *100# on the modem card shows the balance the
        simulated network answers."""
        sign_in(page)
        page.goto("/ui/modems")
        page.get_by_label("USSD code").fill("*100#")
        page.get_by_role("button", name="Send USSD").click()
        expect(page.get_by_role("status")).to_contain_text(
            "gsm0 *100#: Your balance is 12.34 GBP")
        shoot(page, screenshots, "modems")

    def test_modem_signal_probe_stats_and_blocklist(self, page: Page, demo: DemoDaemon,
                                                     screenshots: Path) -> None:
        """The modem card shows signal bars and its operator; probe answers; the
        statistics page renders; a number is blocked; a customer's STOP is listed,
        an opt-out added by hand is listed as ADMIN, and the admin lifts the STOP
        (confirming the dialog)."""
        sign_in(page)
        page.goto("/ui/modems")
        bars = page.locator("svg.bars")
        expect(bars).to_have_attribute("aria-label", "signal 4 of 5 bars")
        expect(page.locator(".modem")).to_contain_text("Sim Mobile")
        page.get_by_role("button", name="Probe now").click()
        expect(page.locator(".modem")).to_contain_text("home network")
        # The month's usage lists users who sent: one SMS of its own, so this test
        # does not lean on the earlier tests of the module having sent some.
        status, _ = demo.request("POST", "/api/v1/originate/sms", urllib.parse.urlencode(
            {"number": "+447700900126", "message": "Counted"}).encode())
        assert status == 200
        page.goto("/ui/stats")
        expect(page.locator("#usage")).to_contain_text("demo")
        expect(page.get_by_role("img", name="Messages per day")).to_be_visible()
        shoot(page, screenshots, "statistics")
        inject(demo, "+447700900778", "STOP")
        page.goto("/ui/blocklist")
        page.get_by_label("Number to block").fill("+447700900777")
        page.get_by_role("button", name="Block").click()
        expect(page.locator("#blocked")).to_contain_text("+447700900777")
        opted = page.locator("#opted-out tr", has_text="+447700900778")
        expect(opted).to_contain_text("STOP")
        page.get_by_label("Number to opt out").fill("+447700900779")
        page.get_by_role("button", name="Opt out", exact=True).click()
        expect(page.locator("#opted-out tr", has_text="+447700900779")).to_contain_text("ADMIN")
        shoot(page, screenshots, "blocklist")
        page.once("dialog", lambda dialog: dialog.accept())
        opted.get_by_role("button", name="Lift the opt-out of +447700900778").click()
        expect(page.locator("#opted-out tr", has_text="+447700900778")).to_have_count(0)
        page.goto("/api/v1/doc")
        expect(page.locator("h1")).to_have_text("smsd HTTP API")
        shoot(page, screenshots, "api-doc", full_page=False)


# --- during a call: a daemon logged in to the fake Asterisk ---------------------------

PBX_DID = "+447700900001"
PBX_CALLER = "+447700900456"
PBX_PASSWORD = "agent-pw-1"
# Bound on a broken build (AMI login, first CoreShowChannels); never measured.
PBX_DEADLINE_S = 30.0


class ThreadedAmi:
    """The fake Asterisk on its own event loop in a thread (the browser tests are sync)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.ami = self.run(lambda: FakeAmi())
        self.on_loop(self.ami.start())

    def on_loop(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(60)  # type: ignore[arg-type]

    def run(self, fn: Callable[[], T]) -> T:
        async def call() -> T:
            return fn()
        return self.on_loop(call())  # type: ignore[return-value]

    def close(self) -> None:
        self.on_loop(self.ami.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ConfigDaemon, ThreadedAmi]]:
    """``smsd run --config`` with [ami] on the fake Asterisk and one agent, alice (100)."""
    root = tmp_path_factory.mktemp("console-pbx")
    fake = ThreadedAmi()
    http = free_port()
    secret = root / "ami.secret"
    secret.write_text("smsd-secret\n")
    secret.chmod(0o600)
    config = root / "smsd.toml"
    config.write_text(f"""
state_dir = "state"
{database_toml()}[http]
port = {http}
[agi]
port = {free_port()}
[ami]
port = {fake.ami.port}
username = "smsd"
secret_file = "{secret}"
[policy]
country = "GB"
timezone = "Europe/London"
[[users]]
extension = "100"
name = "Alice Agent"
username = "alice"
licence = "uc-business"
office_number = "{PBX_DID}"
password_hash = "{hash_password(PBX_PASSWORD, n=2**10)}"
""")
    daemon = ConfigDaemon(config, root / "daemon.log", http_port=http)
    daemon.start()
    try:
        deadline = time.monotonic() + PBX_DEADLINE_S
        while not json.loads(daemon.request("GET", "/api/v1/calls/current", user="alice",
                                            password=PBX_PASSWORD)[1])["tracking"]:
            assert time.monotonic() < deadline, daemon.log_text()
            time.sleep(0.05)
        yield daemon, fake
    finally:
        daemon.kill()
        fake.close()


class TestDuringACall:
    def test_the_current_call_appears_live_and_sms_to_this_caller_opens_the_thread(
            self, browser: Browser, pbx: tuple[ConfigDaemon, ThreadedAmi],
            screenshots: Path) -> None:
        """With Conversations open, Asterisk ringing alice's phone shows the incoming call
        with the caller's number without a reload; answered, it says talking; "SMS to
        this caller" opens the conversation with that number; after the hangup the
        list shows no call."""
        daemon, fake = pbx
        context = browser.new_context(base_url=daemon.base, viewport=DESKTOP)
        context.set_default_timeout(SHOW_TIMEOUT_MS)
        page = context.new_page()
        try:
            sign_in(page, "alice", PBX_PASSWORD)
            expect(page).to_have_url(f"{daemon.base}/ui/conversations")
            mark_page(page)
            call: FakeCall = fake.run(lambda: fake.ami.calls.ring_phone(
                PBX_CALLER, PBX_DID, phone="100", phone_name="Alice Agent"))
            box = page.get_by_role("region", name="Current call")
            expect(box).to_contain_text(f"Incoming call from {PBX_CALLER}")
            expect(box).to_contain_text("ringing")
            fake.run(call.answer)
            expect(box).to_contain_text("talking")
            assert not_reloaded(page)
            shoot(page, screenshots, "during-a-call")
            box.get_by_role("button", name="SMS to this caller").click()
            expect(page.locator("h1")).to_have_text(PBX_CALLER)
            expect(page).to_have_url(re.compile(r"/ui/conversations/\d+$"))
            fake.run(call.hangup)
            page.goto("/ui/conversations")
            expect(box).to_be_empty()
            expect(page.locator("tr", has_text=PBX_CALLER)).to_have_count(1)
        finally:
            context.close()


# --- last in this module: what the run above left in the git tree -------------------

# When this module was imported, before any browser test ran.
_MODULE_STARTED_NS = time.time_ns()


class TestScreenshotsLeaveTheTreeClean:
    def test_committed_screenshots_were_not_rewritten(self, screenshots: Path) -> None:
        """Without SMSD_UPDATE_SCREENSHOTS=1 the browser tests above wrote their
        screenshots elsewhere: no file of docs/screenshots/ changed during this run
        (a test run must not leave the git tree dirty)."""
        if os.environ.get(UPDATE_SCREENSHOTS_ENV) == "1":
            pytest.skip("SMSD_UPDATE_SCREENSHOTS=1 asked to refresh docs/screenshots/")
        assert screenshots != DOCS_SCREENSHOTS
        rewritten = [p.name for p in DOCS_SCREENSHOTS.glob("*.png")
                     if p.stat().st_mtime_ns >= _MODULE_STARTED_NS]
        assert rewritten == []
