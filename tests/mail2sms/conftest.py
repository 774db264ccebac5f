"""Mail2SMS over the real store and outbox: sample mails and the wiring the tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

import pytest

from smsd.config import Config, Licence, Policy, User
from smsd.core.directory import Directory
from smsd.core.outbox import Outbox
from smsd.mail2sms.service import Mail2Sms
from smsd.passwords import hash_password
from smsd.store import Store
from tests.backend import database_url, open_store

# A cheap scrypt cost keeps the suite fast; the format and code path are the real ones.
FAST_N = 2**4
SMS_PASSWORD = "mail-s3cret"
TO = "+447700900123"
CC = ("+447700900124", "+447700900125")


def body(password: str = SMS_PASSWORD, *, to: str = TO, cc: tuple[str, ...] = CC,
         message: str = "Your order has shipped.") -> str:
    lines = ["SENDSMS: TRUE", "FROMNUMBER: 100", f"TONUMBER: {to}"]
    if cc:
        lines.append(f"CCNUMBER: {', '.join(cc)}")
    lines += [f"SMSPASSWORD: {password}", f"MESSAGE: {message}", ""]
    return "\n".join(lines)


def plain_mail(text: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "alice@pbx.example"
    msg["To"] = "sms@pbx.example"
    msg["Subject"] = "SMS"
    msg.set_content(text)
    return msg


def make_config(tmp_path: Path) -> Config:
    return Config(
        state_dir=tmp_path,
        database=tmp_path / "smsd.sqlite3",
        database_url=database_url(),
        users=(
            User("100", "Alice Example", "alice", "+447700900001", Licence.UC_BUSINESS,
                 "pjsip:100"),
            User("102", "Nobody Unlicensed", "nobody", None, Licence.NONE, "pjsip:102"),
        ),
        policy=Policy(country="GB", timezone="Europe/London"),
        smtp_password_hash=hash_password(SMS_PASSWORD, n=FAST_N),
        mail2sms_enabled=True,
    )


@dataclass
class MailRig:
    config: Config
    store: Store
    outbox: Outbox
    mail: Mail2Sms

    async def queued(self) -> list[str]:
        rows = await self.store.fetchall(
            "SELECT recipient FROM messages WHERE origin = 'mail2sms' ORDER BY id"
        )
        return [r["recipient"] for r in rows]


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[MailRig]:
    cfg = make_config(tmp_path)
    store = await open_store(cfg)
    outbox = Outbox(store, cfg.policy)
    mail = Mail2Sms.from_config(cfg, outbox, Directory(cfg))
    assert mail is not None
    try:
        yield MailRig(cfg, store, outbox, mail)
    finally:
        await store.close()
