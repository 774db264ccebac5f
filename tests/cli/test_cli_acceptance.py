"""`smsd modem ...` end to end: real subprocesses, a simulated modem on a real pty.

The simulator runs as its own process (`python -m smsd.cli.modem simulate`),
the verbs run as further processes, and what the modem was asked to send is
checked with an independent decoder (python-gammu), not with our codec.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import gammu
import pytest

from tests.cli.sim_process import CLI_TIMEOUT_S, cli

pytestmark = pytest.mark.timeout(120)

TEXT_400 = ("Grüße aus 🇬🇧 London! Das Wetter ist heute schön ☀️ und wir testen lange "
            "Nachrichten mit Emoji 😀🎉. ") * 5
TEXT_400 = TEXT_400[:400]


def control(path: str, request: dict) -> dict:
    """One request on the simulator's control socket, straight over a unix socket."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(CLI_TIMEOUT_S)
        sock.connect(path)
        sock.sendall(json.dumps(request).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    answer = json.loads(data)
    assert answer["ok"] is True, answer
    return answer


def gammu_text(pdus: list[str]) -> str:
    """Decode and join SMS-SUBMIT parts with python-gammu (libGammu), independent of smsd."""
    msgs = [gammu.DecodePDU(bytes.fromhex(p)) for p in pdus]
    linked = gammu.LinkSMS([[m] for m in msgs])
    assert len(linked) == 1, "the parts must link into exactly one message"
    decoded = gammu.DecodeSMS(linked[0])
    return "".join(e["Buffer"] or "" for e in decoded["Entries"])


class TestProbe:
    def test_probe_json_gives_every_field(self, simulator):
        """probe --json reports identity, SIM, network, signal, SMSC, storage and own number."""
        sim = simulator()
        out = cli("probe", sim.link, "--json")
        assert out.returncode == 0, out.stderr
        r = json.loads(out.stdout)
        assert r["manufacturer"] == "Generic" and r["model"] == "GSM Modem"
        assert r["firmware"] == "1.00"
        assert len(r["imei"]) == 15 and r["imei"].isdigit()
        assert r["imsi"].startswith("23415") and r["iccid"].startswith("8944")
        assert r["sim"] == "READY" and r["registered"] is True and r["registration"] == 1
        assert r["operator"] == "Sim Mobile"
        assert (r["signal_dbm"], r["signal_bars"]) == (-73, 4)
        assert r["smsc"] == "+447785016005" and r["own_number"] == "+447700900001"
        assert r["storage"][0] == {"slot": "read_delete", "memory": "SM", "used": 0, "total": 20}
        assert r["ok"] is True and r["problems"] == []

    @pytest.mark.parametrize("profile", ["huawei", "quectel", "simcom"])
    def test_probe_vendor_profiles(self, simulator, profile):
        """probe reads each vendor's ICCID command; Huawei's swapped ICCID is un-swapped."""
        sim = simulator("--profile", profile)
        out = cli("probe", sim.link, "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        r = json.loads(out.stdout)
        assert r["iccid"] == "8944100000000000018"

    def test_probe_says_pin_needed(self, simulator):
        """A PIN-locked SIM: exit 1 and 'PIN needed'; with --pin the probe is clean."""
        sim = simulator("--pin", "1234")
        out = cli("probe", sim.link)
        assert out.returncode == 1
        assert "PIN needed" in out.stdout
        out = cli("probe", sim.link, "--pin", "1234")
        assert out.returncode == 0, out.stdout
        assert "OK, ready for SMS" in out.stdout

    def test_pin_file_unlocks_and_wrong_pin_is_explained(self, simulator, tmp_path):
        """--pin-file keeps the PIN out of argv; a wrong PIN is refused with the PUK warning."""
        sim = simulator("--pin", "1234")
        bad = tmp_path / "bad"
        bad.write_text("9999\n")
        out = cli("probe", sim.link, "--pin-file", str(bad))
        assert out.returncode == 1
        assert "refused the PIN" in out.stdout and "PUK" in out.stdout
        good = tmp_path / "good"
        good.write_text("1234\n")
        out = cli("read", sim.link, "--pin-file", str(good))
        assert out.returncode == 0, out.stderr
        out = cli("probe", sim.link, "--pin-file", str(tmp_path / "missing"))
        assert out.returncode == 1 and "cannot read --pin-file" in out.stderr

    def test_probe_says_no_network(self, simulator):
        """No coverage: exit 1 and 'no network' with the registration state."""
        sim = simulator("--no-network")
        out = cli("probe", sim.link)
        assert out.returncode == 1
        assert "no network: not registered, searching" in out.stdout

    def test_probe_missing_device(self, tmp_path):
        """A path with no device: exit 2 and the reason on stderr."""
        out = cli("probe", str(tmp_path / "nothing"))
        assert out.returncode == 2
        assert "cannot open" in out.stderr and "does not exist" in out.stderr

    def test_probe_not_a_modem(self, tmp_path):
        """A pty whose far end never answers AT is reported as 'not a modem'."""
        master, slave = os.openpty()
        try:
            out = cli("probe", os.ttyname(slave))
        finally:
            os.close(master)
            os.close(slave)
        assert out.returncode == 2
        assert "not a modem" in out.stderr

    def test_probe_port_busy_names_the_holder(self, simulator):
        """Another process holding the port: exit 2, 'port busy', and that process named."""
        sim = simulator()
        holder = subprocess.Popen([sys.executable, "-c",
                                   "import os,sys,time; fd=os.open(sys.argv[1], os.O_RDWR);"
                                   " print('held', flush=True); time.sleep(60)", sim.link],
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
            out = cli("probe", sim.link)
        finally:
            holder.kill()
            holder.wait()
        assert out.returncode == 2
        assert "port busy" in out.stderr and f"pid {holder.pid}" in out.stderr

    def test_main_cli_wires_modem_verbs(self, simulator):
        """`python -m smsd modem probe` reaches the same command as the standalone module."""
        sim = simulator()
        out = cli("modem", "probe", sim.link, "--json", module="smsd")
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout)["ok"] is True


class TestSend:
    def test_long_emoji_text_goes_as_seven_ucs2_parts(self, simulator):
        """400 characters with emoji: 7 UCS-2 parts that libGammu joins back to the exact text."""
        sim = simulator()
        out = cli("send", sim.link, "+447700900123", TEXT_400)
        assert out.returncode == 0, out.stderr
        printed = [line for line in out.stdout.splitlines() if "TP-MR" in line]
        assert len(printed) == 7
        sent = sim.submitted()
        assert [s["part"] for s in sent] == list(range(1, 8))
        assert {s["encoding"] for s in sent} == {"ucs2"} and {s["to"] for s in sent} == {
            "+447700900123"}
        assert [f"TP-MR {s['mr']}" in line for s, line in zip(sent, printed, strict=True)] == [
            True] * 7
        assert gammu_text([s["pdu"] for s in sent]) == TEXT_400

    def test_wait_report_prints_delivery(self, simulator):
        """--wait-report waits for each part's status report and says 'delivered'."""
        sim = simulator("--report-delay", "0.2")
        out = cli("send", sim.link, "+447700900123", "x" * 200, "--wait-report", "--timeout", "20")
        assert out.returncode == 0, out.stdout + out.stderr
        assert out.stdout.count("delivered (TP-ST 0x00)") == 2

    def test_bad_number_sends_nothing(self, simulator):
        """A number that is not E.164 is refused before the modem is touched."""
        sim = simulator()
        out = cli("send", sim.link, "07700 900123", "hello")
        assert out.returncode == 1
        assert "not an E.164 number" in out.stderr
        assert sim.submitted() == []

    def test_network_refusal_is_reported(self, simulator):
        """Every send refused (fail-rate 1): non-zero exit naming the +CMS ERROR."""
        sim = simulator("--fail-rate", "1", "--seed", "1")
        out = cli("send", sim.link, "+447700900123", "hello")
        assert out.returncode == 1
        assert "refused: +CMS ERROR:" in out.stderr
        assert sim.submitted() == []


class TestRead:
    def test_out_of_order_parts_read_as_one_message(self, simulator):
        """Three parts injected 3,1,2 are read back as one message; --delete empties the SIM."""
        sim = simulator()
        text = "Parts arrive in any order. " * 12
        inj = cli("inject", "--control", sim.control, "--from", "+447700900555", "--text", text,
                  "--order", "3,1,2")
        assert inj.returncode == 0, inj.stderr
        out = cli("read", sim.link, "--json")
        assert out.returncode == 0, out.stderr
        (msg,) = json.loads(out.stdout)["messages"]
        assert msg["text"] == text and msg["parts"] == 3 and msg["complete"] is True
        assert msg["from"] == "+447700900555" and sorted(msg["indexes"]) == [1, 2, 3]
        assert cli("read", sim.link, "--delete").returncode == 0
        assert "no messages on the SIM" in cli("read", sim.link).stdout

    def test_missing_part_is_marked(self, simulator):
        """A message missing a part is still shown, marked incomplete, the gap marked."""
        sim = simulator()
        cli("inject", "--control", sim.control, "--from", "+447700900555", "--text",
            "abc " * 100, "--order", "1,3")
        out = cli("read", sim.link)
        assert out.returncode == 0
        assert "INCOMPLETE" in out.stdout and "[…]" in out.stdout

    def test_alphanumeric_sender(self, simulator):
        """An SMS from an alphanumeric sender (a bank, a carrier) is read with that name."""
        sim = simulator()
        assert cli("inject", "--control", sim.control, "--from", "MyBank", "--text",
                   "Your code is 1234").returncode == 0
        (msg,) = json.loads(cli("read", sim.link, "--json").stdout)["messages"]
        assert (msg["from"], msg["text"]) == ("MyBank", "Your code is 1234")
        out = cli("inject", "--control", sim.control, "--from", "My Bank; rm", "--text", "x")
        assert out.returncode == 1 and "alphanumeric" in out.stderr

    def test_inject_refuses_bad_order(self, simulator):
        """An impossible --order is refused by the simulator and nothing is stored."""
        sim = simulator()
        out = cli("inject", "--control", sim.control, "--from", "+447700900555",
                  "--text", "short", "--order", "2")
        assert out.returncode == 1 and "refused" in out.stderr
        assert "no messages on the SIM" in cli("read", sim.link).stdout


class TestReports:
    def test_injected_report_follows_cnmi(self, simulator):
        """`report` obeys +CNMI <ds>: dropped at 0 (power-on), stored in SR once set to 2."""
        sim = simulator()
        out = cli("report", "--control", sim.control, "--mr", "5", "--to", "+447700900123")
        assert out.returncode == 0, out.stderr
        assert control(sim.control, {"cmd": "stored", "memory": "SR"})["stored"] == []
        assert cli("probe", sim.link).returncode == 0
        assert cli("read", sim.link).returncode == 0          # read initialises: +CNMI=2,1,0,2,0
        cli("report", "--control", sim.control, "--mr", "6", "--to", "+447700900123",
            "--status", "0")
        (stored,) = control(sim.control, {"cmd": "stored", "memory": "SR"})["stored"]
        report = gammu.DecodePDU(bytes.fromhex(stored["pdu"]))
        assert report["Type"] == "Status_Report" and report["MessageReference"] == 6
        assert report["Number"] == "+447700900123"

    def test_report_refuses_bad_number(self, simulator):
        """`report --to` must be E.164; nothing reaches the simulator otherwise."""
        sim = simulator()
        out = cli("report", "--control", sim.control, "--mr", "5", "--to", "12")
        assert out.returncode == 1 and "not an E.164 number" in out.stderr


class TestSimulatorProcess:
    def test_sigterm_stops_cleanly_and_removes_the_link(self, simulator):
        """SIGTERM ends `simulate` with exit 0, link and control socket removed."""
        sim = simulator()
        assert os.path.islink(sim.link)
        assert sim.stop() == 0
        assert not os.path.lexists(sim.link) and not os.path.exists(sim.control)

    def test_unplug_and_replug_via_cli(self, simulator):
        """unplug removes the link, so probe fails (no such port); replug brings it back."""
        sim = simulator()
        assert cli("unplug", "--control", sim.control).returncode == 0
        # The control verb answers after the unplug is done: no wait needed.
        assert not os.path.lexists(sim.link)
        out = cli("probe", sim.link)
        assert out.returncode == 2
        assert cli("replug", "--control", sim.control).returncode == 0
        assert cli("probe", sim.link).returncode == 0

    def test_control_socket_missing(self, tmp_path):
        """Control verbs without a simulator exit 2 and say there is none."""
        out = cli("unplug", "--control", str(tmp_path / "none"))
        assert out.returncode == 2 and "no simulator" in out.stderr

    def test_list_ports(self):
        """list exits 0 with the ports listed, or with one "no candidate ports" line."""
        out = cli("list")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip()
        assert "/dev/" in out.stdout
