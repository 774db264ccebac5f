"""The USB interface number of a tty, read from a sysfs tree built with real symlinks.

The trees follow the layouts Linux gives (Documentation/ABI/stable/sysfs-bus-usb
and the usb-serial / cdc_acm drivers): for an option-driver port
``/sys/class/tty/ttyUSB2/device`` points at ``.../1-1:1.2/ttyUSB2`` whose parent
is the interface; for cdc_acm it points at the interface ``.../1-2:1.0``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from smsd.modem.usbinfo import tty_name, usb_interface

pytestmark = pytest.mark.timeout(10)

USB_DEVICE = "devices/pci0000:00/0000:00:14.0/usb1/1-1"


def _link(link: Path, target: Path) -> None:
    """A relative symlink, as sysfs and udev make them."""
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(os.path.relpath(target, link.parent))


def option_port(root: Path, tty: str, interface: str) -> Path:
    """An option-driver (usb-serial) tty under interface ``interface`` (hex text)."""
    sysfs = root / "sys"
    iface = sysfs / USB_DEVICE / f"1-1:1.{int(interface, 16)}"
    port = iface / tty
    (port / "tty" / tty).mkdir(parents=True)
    (iface / "bInterfaceNumber").write_text(f"{interface}\n")
    (iface / "bInterfaceClass").write_text("ff\n")
    (sysfs / USB_DEVICE / "idVendor").write_text("2c7c\n")
    _link(sysfs / "class" / "tty" / tty / "device", port)
    node = root / "dev" / tty
    node.parent.mkdir(parents=True, exist_ok=True)
    node.touch()
    return node


def acm_port(root: Path, tty: str, interface: str) -> Path:
    """A cdc_acm tty: its device link is the interface itself."""
    sysfs = root / "sys"
    iface = sysfs / "devices/pci0000:00/0000:00:14.0/usb1/1-2" / f"1-2:1.{int(interface, 16)}"
    (iface / "tty" / tty).mkdir(parents=True)
    (iface / "bInterfaceNumber").write_text(f"{interface}\n")
    _link(sysfs / "class" / "tty" / tty / "device", iface)
    node = root / "dev" / tty
    node.parent.mkdir(parents=True, exist_ok=True)
    node.touch()
    return node


class TestUsbSerial:
    def test_option_driver_interfaces(self, tmp_path):
        """An EC25's ttyUSB2 and ttyUSB3 sit on interfaces 2 and 3."""
        at = option_port(tmp_path, "ttyUSB2", "02")
        modem = option_port(tmp_path, "ttyUSB3", "03")
        sysfs = str(tmp_path / "sys")
        assert usb_interface(str(at), sysfs=sysfs) == 2
        assert usb_interface(str(modem), sysfs=sysfs) == 3

    def test_by_id_symlink_is_resolved(self, tmp_path):
        """/dev/serial/by-id/...-if02-port0 -> ../../ttyUSB2 gives ttyUSB2's interface."""
        node = option_port(tmp_path, "ttyUSB2", "02")
        by_id = tmp_path / "dev/serial/by-id/usb-Quectel_EC25_0123-if02-port0"
        _link(by_id, node)
        assert tty_name(str(by_id)) == "ttyUSB2"
        assert usb_interface(str(by_id), sysfs=str(tmp_path / "sys")) == 2

    def test_number_is_hex(self, tmp_path):
        """bInterfaceNumber is hex text: "0a" is interface 10."""
        node = option_port(tmp_path, "ttyUSB9", "0a")
        assert usb_interface(str(node), sysfs=str(tmp_path / "sys")) == 10


class TestCdcAcm:
    def test_acm_interface_is_the_device_dir(self, tmp_path):
        """For cdc_acm the device link is the interface: ttyACM0 on interface 0."""
        node = acm_port(tmp_path, "ttyACM0", "00")
        assert usb_interface(str(node), sysfs=str(tmp_path / "sys")) == 0

    def test_acm_second_function(self, tmp_path):
        """A second ACM function of a composite device (interface 2)."""
        node = acm_port(tmp_path, "ttyACM1", "02")
        assert usb_interface(str(node), sysfs=str(tmp_path / "sys")) == 2


class TestNotUsb:
    def test_pty_is_none(self, tmp_path):
        """A real pseudo-terminal has no USB interface, against the real /sys too."""
        master, slave = os.openpty()
        try:
            path = os.ttyname(slave)
            assert tty_name(path) is None
            assert usb_interface(path) is None
            assert usb_interface(path, sysfs=str(tmp_path)) is None
        finally:
            os.close(master)
            os.close(slave)

    def test_symlink_to_a_pty_is_none(self, tmp_path):
        """The simulator's link to its pty is followed to /dev/pts/N: None."""
        master, slave = os.openpty()
        try:
            link = tmp_path / "modem"
            link.symlink_to(os.ttyname(slave))
            assert usb_interface(str(link)) is None
        finally:
            os.close(master)
            os.close(slave)

    @pytest.mark.parametrize("url", ["socket://127.0.0.1:7000", "rfc2217://127.0.0.1:7001"])
    def test_network_port_is_none(self, url):
        """ser2net and RFC 2217 ports name no local device."""
        assert tty_name(url) is None and usb_interface(url) is None

    def test_no_sysfs_entry_is_none(self, tmp_path):
        """A tty sysfs does not know (removed meanwhile, or not a tty) gives None."""
        node = tmp_path / "dev" / "ttyUSB7"
        node.parent.mkdir(parents=True)
        node.touch()
        (tmp_path / "sys").mkdir()
        assert usb_interface(str(node), sysfs=str(tmp_path / "sys")) is None

    def test_platform_uart_is_none(self, tmp_path):
        """A built-in UART (ttyS0 on the platform bus) has no bInterfaceNumber anywhere."""
        sysfs = tmp_path / "sys"
        device = sysfs / "devices/platform/serial8250"
        (device / "tty" / "ttyS0").mkdir(parents=True)
        _link(sysfs / "class" / "tty" / "ttyS0" / "device", device)
        node = tmp_path / "dev" / "ttyS0"
        node.parent.mkdir(parents=True)
        node.touch()
        assert usb_interface(str(node), sysfs=str(sysfs)) is None

    def test_garbage_interface_number_is_none(self, tmp_path):
        """An unreadable or non-hex bInterfaceNumber gives None, not an exception."""
        node = option_port(tmp_path, "ttyUSB4", "04")
        iface = tmp_path / "sys" / USB_DEVICE / "1-1:1.4" / "bInterfaceNumber"
        iface.write_text("zz\n")
        assert usb_interface(str(node), sysfs=str(tmp_path / "sys")) is None
