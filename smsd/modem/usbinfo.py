"""What sysfs says about a serial port: its USB interface, driver, vendor and model.

The interface number serves the driver; the rest is what ``smsd modem list``
shows.

A multi-port USB modem exposes one tty per USB interface, and some vendors
give the interfaces different jobs (Quectel sends URCs only to the one
AT+QURCCFG="urcport" names).  The interface number tells the driver which
port it holds without opening anything else.  Only sysfs is read: the device
node itself is never opened, so this is safe on a port another process holds.

sysfs layouts (Linux ``Documentation/ABI/stable/sysfs-bus-usb``):

* usb-serial drivers (option, qcserial, usb_wwan): ``/sys/class/tty/ttyUSB2/device``
  is the port device ``.../1-1:1.2/ttyUSB2``; its parent ``1-1:1.2`` is the
  USB interface and holds ``bInterfaceNumber``.
* cdc_acm: ``/sys/class/tty/ttyACM0/device`` is the interface ``.../1-1:1.0``
  itself.

``bInterfaceNumber`` is two hex digits ("02").  Anything that is not a USB
tty (a pty, ``socket://`` for ser2net, a built-in UART) gives None.
"""

from __future__ import annotations

import os
from typing import Any

# pyserial URL handlers (socket://, rfc2217://, loop://, ...) name no local device.
_URL_MARK = "://"


def tty_name(path: str) -> str | None:
    """The kernel name of the tty behind ``path`` (symlinks such as by-id resolved)."""
    if _URL_MARK in path:
        return None
    real = os.path.realpath(path)
    if os.path.basename(os.path.dirname(real)) == "pts":
        return None          # a pseudo-terminal: no device behind it
    return os.path.basename(real) or None


def _attr(directory: str, name: str) -> str | None:
    try:
        with open(os.path.join(directory, name), encoding="ascii", errors="replace") as f:
            return f.read().strip() or None
    except OSError:
        return None


def port_info(path: str, sysfs: str = "/sys") -> dict[str, Any]:
    """What sysfs says about the tty at ``path``: driver, USB interface, vendor, product.

    Walks up from the tty's device directory to the USB device (the first
    directory with ``idVendor``); the first ``bInterfaceNumber`` on the way is
    the port's interface (hex text, as sysfs writes it).  Nothing above the
    USB device is read: a hub's interface would mislead.  A tty sysfs does
    not know (a pty, a URL port, a vanished device) gives only the paths.
    """
    real = path if _URL_MARK in path else os.path.realpath(path)
    info: dict[str, Any] = {"path": path, "device": real}
    name = tty_name(path)
    node = os.path.join(sysfs, "class", "tty", name, "device") if name else None
    if node is None or not os.path.exists(node):
        return info
    here = os.path.realpath(node)
    driver = os.path.join(here, "driver")
    if os.path.exists(driver):
        info["driver"] = os.path.basename(os.path.realpath(driver))
    top = os.path.realpath(sysfs)
    while here.startswith(top + os.sep):
        iface = _attr(here, "bInterfaceNumber")
        if iface is not None and "interface" not in info:
            info["interface"] = iface
        vendor = _attr(here, "idVendor")
        if vendor is not None:
            info["usb_id"] = f"{vendor}:{_attr(here, 'idProduct')}"
            info["manufacturer"] = _attr(here, "manufacturer")
            info["product"] = _attr(here, "product")
            info["serial"] = _attr(here, "serial")
            break
        here = os.path.dirname(here)
    return info


def usb_interface(path: str, *, sysfs: str = "/sys") -> int | None:
    """``bInterfaceNumber`` of the USB interface the tty at ``path`` belongs to, or None."""
    text = port_info(path, sysfs).get("interface")
    try:
        return int(text, 16) if text is not None else None
    except ValueError:
        return None
