"""A tiny synchronous client for the daemon's loopback API.

The daemon is the only writer of the database, so every command that changes
something goes through its HTTP API.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from typing import Any

# The daemon answers on loopback within milliseconds; 30 s covers an originate
# with 10,000 numbers on a slow disk (synchronous=FULL commit).
HTTP_TIMEOUT_S = 30.0
# A USSD request: the daemon waits up to 35 s for the modem to take AT+CUSD and
# 35 s more for the network's answer (modem/device.py USSD_TIMEOUT), so the
# daemon's own 504 arrives before this client gives up.
USSD_HTTP_TIMEOUT_S = 80.0
NEED_CREDENTIALS = (
    "credentials needed: give --user and --password-file (or set SMSD_USER and SMSD_PASSWORD)"
)


class CliError(Exception):
    """A failure to report in one line; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 1) -> None:
        self.code = code
        super().__init__(message)


class ApiClient:
    """A tiny synchronous client for the daemon's loopback API."""

    def __init__(self, base: str, user: str | None, password: str | None) -> None:
        self.base = base.rstrip("/")
        self.user = user
        self.password = password

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        auth: bool = True,
        timeout_s: float = HTTP_TIMEOUT_S,
        answer_on: tuple[int, ...] = (),
    ) -> Any:
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        if auth:
            if not self.user or self.password is None:
                raise CliError(NEED_CREDENTIALS, 2)
            token = base64.b64encode(f"{self.user}:{self.password}".encode()).decode("ascii")
            headers["Authorization"] = f"Basic {token}"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raw = exc.read().decode("utf-8", "replace")
            try:
                payload = json.loads(raw)
            except json.JSONDecodeError:
                payload = None
            if exc.code == 503 and isinstance(payload, dict):
                return payload  # /healthz: unhealthy is still an answer
            if exc.code in answer_on and isinstance(payload, dict):
                return payload  # e.g. 400 with every number of a bulk chunk refused
            reason = (
                payload.get("error") or payload.get("reason") if isinstance(payload, dict) else raw
            )
            detail = ""
            if isinstance(payload, dict) and payload.get("invalid"):
                # Each bad number once: the error itself may already name it
                # and its reason (a single bad number usually does).
                extra = [
                    f"{b['number']} ({b['reason']})"
                    for b in payload["invalid"]
                    if str(b.get("reason")) not in str(reason)
                ]
                detail = ": " + ", ".join(extra) if extra else ""
            raise CliError(f"daemon answered {exc.code}: {reason}{detail}") from None
        except urllib.error.URLError as exc:
            raise CliError(
                f"cannot reach the daemon at {self.base}: {exc.reason} (is `smsd run` running?)"
            ) from None
        except (TimeoutError, ConnectionError) as exc:
            raise CliError(f"cannot reach the daemon at {self.base}: {exc}") from None
