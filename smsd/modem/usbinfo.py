"""Which USB interface a serial port belongs to, read from sysfs.

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


def usb_interface(path: str, *, sysfs: str = "/sys") -> int | None:
    """``bInterfaceNumber`` of the USB interface the tty at ``path`` belongs to, or None."""
    name = tty_name(path)
    if name is None:
        return None
    node = os.path.join(sysfs, "class", "tty", name, "device")
    if not os.path.exists(node):
        return None
    here = os.path.realpath(node)
    # cdc_acm: the interface itself; usb-serial: its parent.  No further up:
    # the USB device above has no bInterfaceNumber, and a hub's would mislead.
    for candidate in (here, os.path.dirname(here)):
        number = _read_hex(os.path.join(candidate, "bInterfaceNumber"))
        if number is not None:
            return number
    return None


def _read_hex(path: str) -> int | None:
    try:
        with open(path, encoding="ascii") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        return int(text, 16)
    except ValueError:
        return None
