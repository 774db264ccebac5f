"""The CLASSOUND carrier trunk: the last gateway in the routing order.

``build_classound`` picks the transport named by ``[gateways.classound] mode``:

- ``sip``: smsd is a SIP user agent (MESSAGE out and in), smsd/gateways/classound/sip.py;
- ``ami``: Asterisk sends MESSAGE through its own trunk, ami.py;
- ``http``: the carrier's REST API, http.py.

Each is a Gateway (docs/internals.md) with a lifecycle the daemon drives:
``start`` binds what it listens on before READY=1, ``run`` keeps it alive
(registration refresh) under the daemon's TaskGroup, ``close`` at the end.
"""

from __future__ import annotations

from typing import Protocol

from smsd.config import ClassoundGateway as ClassoundConfig
from smsd.gateways.base import InboundSink, OutboundJob, PartHooks
from smsd.gateways.classound.ami import MessageSender


class Trunk(Protocol):
    name: str

    def available(self) -> bool: ...

    async def send(self, job: OutboundJob, hooks: PartHooks) -> None: ...

    async def start(self) -> None: ...

    async def run(self) -> None: ...

    async def close(self) -> None: ...


def build_classound(
    config: ClassoundConfig, *, ami: MessageSender | None, inbox: InboundSink | None
) -> Trunk:
    if config.mode == "sip":
        from smsd.gateways.classound.sip import SipTrunk

        return SipTrunk(config, inbox)
    if config.mode == "ami":
        from smsd.gateways.classound.ami import AmiTrunk

        return AmiTrunk(config, ami)
    from smsd.gateways.classound.http import HttpTrunk

    return HttpTrunk(config, inbox)
