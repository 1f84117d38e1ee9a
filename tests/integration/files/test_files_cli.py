"""`ticketgw files new/list/revoke` as users run them, on both databases: the link is
printed and mailed, only its hash is stored, listings and revocation, clear errors."""

from __future__ import annotations

import email
import email.policy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from gateway.store.models import OutboundMail, table_of
from gateway.store.models_files import FileArea
from tests.conftest import write_config

LINK = re.compile(r"^http://127\.0\.0\.1:8080/files/([A-Za-z0-9_-]{43})$")


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Path:
    return write_config(tmp_path / "ticketgw.toml", database_url,
                        extra='\n[files]\nexpiry_days = 3\n')


@pytest.fixture
def number(run_cli: Any, config: Path) -> str:
    assert run_cli("--config", str(config), "demo").exit_code == 0
    tickets = json.loads(run_cli("--config", str(config), "ticket", "list", "--customer",
                                 "mmuster", "--json").stdout)
    return str(tickets[0]["number"])


def outbound(database_url: str, event: str) -> list[Any]:
    engine = create_engine(database_url)
    with engine.connect() as connection:
        rows = connection.execute(select(table_of(OutboundMail))
                                  .where(table_of(OutboundMail).c.event == event)).all()
    engine.dispose()
    return rows


def test_new_prints_the_link_mails_it_and_stores_only_its_hash(
        run_cli: Any, config: Path, number: str, database_url: str) -> None:
    result = run_cli("--config", str(config), "files", "new", "--ticket", number)
    assert result.exit_code == 0, result.output
    link = LINK.match(result.stdout.strip())
    assert link, result.stdout
    token = link.group(1)
    assert "link mailed to max.mustermann@" in result.stderr

    mails = outbound(database_url, "file-link")
    assert len(mails) == 1
    shown = run_cli("--config", str(config), "outbox", "show", str(mails[0].id), "--raw")
    message = email.message_from_bytes(shown.stdout_bytes, policy=email.policy.default)
    assert mails[0].recipients == [str(message["To"]).split("<")[-1].rstrip(">")]
    assert f"[Ticket#{number}]" in str(message["Subject"])
    body = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    assert f"http://127.0.0.1:8080/files/{token}" in body

    engine = create_engine(database_url)
    with engine.connect() as connection:
        area = connection.execute(select(table_of(FileArea))).one()
    engine.dispose()
    assert area.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(tuple(area))
    assert area.download_limit is None
    assert 3 * 86400 - 60 < (area.expires - area.created).total_seconds() <= 3 * 86400

    listed = json.loads(run_cli("--config", str(config), "files", "list", "--json").stdout)
    assert [(a["id"], a["ticket"], a["state"], a["created_by"], a["files"])
            for a in listed] == [(area.id, number, "open", "cli", [])]
    assert set(listed[0]) == {"id", "ticket", "state", "created", "created_by", "mailed_to",
                              "expires", "revoked", "download_limit", "download_count", "files"}
    table = run_cli("--config", str(config), "files", "list", "--ticket", number)
    assert table.exit_code == 0 and f"{area.id}" in table.stdout and "open" in table.stdout


def test_options_and_revocation(run_cli: Any, config: Path, number: str) -> None:
    result = run_cli("--config", str(config), "files", "new", "--ticket", number,
                     "--expires-days", "30", "--download-limit", "2")
    assert result.exit_code == 0, result.output
    area = json.loads(run_cli("--config", str(config), "files", "list", "--json").stdout)[0]
    assert (area["download_limit"], area["download_count"]) == (2, 0)
    days = (_when(area["expires"]) - _when(area["created"])).total_seconds() / 86400
    assert round(days) == 30

    revoked = run_cli("--config", str(config), "files", "revoke", str(area["id"]))
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    again = run_cli("--config", str(config), "files", "revoke", str(area["id"]))
    assert again.exit_code == 0 and "already" in again.stdout
    listed = json.loads(run_cli("--config", str(config), "files", "list", "--json").stdout)
    assert listed[0]["state"] == "revoked" and listed[0]["revoked"]


def test_errors_are_clear_and_change_nothing(run_cli: Any, config: Path, number: str) -> None:
    for args, code, message in [
        (("files", "new", "--ticket", "2020010110999999"), 1, "no ticket with number"),
        (("files", "new", "--ticket", number, "--expires-days", "0"), 2, "--expires-days"),
        (("files", "new", "--ticket", number, "--download-limit", "-1"), 2,
         "--download-limit"),
        (("files", "new"), 2, "--ticket"),
        (("files", "revoke", "999"), 1, "no file-exchange area with id 999"),
        (("files", "list", "--ticket", "2020010110999999"), 1, "no ticket with number"),
    ]:
        result = run_cli("--config", str(config), *args)
        assert result.exit_code == code and message in result.output, (args, result.output)
    assert json.loads(run_cli("--config", str(config), "files", "list", "--json").stdout) == []
    assert "(no file-exchange areas)" in run_cli("--config", str(config), "files",
                                                  "list").stdout


def _when(value: str) -> Any:
    from datetime import datetime
    return datetime.fromisoformat(value)
