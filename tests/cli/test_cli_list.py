"""`smsd modem list` reads vendor/model from sysfs the way the kernel lays it out."""

from __future__ import annotations

from pathlib import Path

from smsd.cli.modem import port_info


def _fake_sysfs(root: Path) -> None:
    """A Quectel EC25's third interface as /sys shows it (usb-serial 'option' driver)."""
    usb = root / "devices/pci0000:00/0000:00:14.0/usb1/1-2"
    iface = usb / "1-2:1.2"
    port = iface / "ttyUSB2"
    port.mkdir(parents=True)
    (usb / "idVendor").write_text("2c7c\n")
    (usb / "idProduct").write_text("0125\n")
    (usb / "manufacturer").write_text("Quectel\n")
    (usb / "product").write_text("EG25-G\n")
    (usb / "serial").write_text("0123456789ABCDEF\n")
    (iface / "bInterfaceNumber").write_text("02\n")
    drivers = root / "bus/usb-serial/drivers/option1"
    drivers.mkdir(parents=True)
    (port / "driver").symlink_to(drivers)
    tty = root / "class/tty/ttyUSB2"
    tty.mkdir(parents=True)
    (tty / "device").symlink_to(port)


def test_port_info_walks_up_to_the_usb_device(tmp_path):
    """Vendor/product ids, names, interface number and driver come from the sysfs tree."""
    _fake_sysfs(tmp_path)
    info = port_info("/dev/ttyUSB2", sysfs=str(tmp_path))
    assert info["usb_id"] == "2c7c:0125"
    assert (info["manufacturer"], info["product"]) == ("Quectel", "EG25-G")
    assert info["interface"] == "02" and info["driver"] == "option1"


def test_port_without_sysfs_entry_has_only_paths(tmp_path):
    """A tty with no sysfs node (a pty, a missing device) is listed with its paths only."""
    info = port_info("/dev/ttyUSB9", sysfs=str(tmp_path))
    assert info == {"path": "/dev/ttyUSB9", "device": "/dev/ttyUSB9"}
