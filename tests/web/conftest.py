"""Fixtures of the portal's HTTP tests: customers, a TestClient per browser, mail helpers.

The app is the real one (`create_web_app`) on SQLite and PostgreSQL; mails are read back
from the outbox table, as the Maildir transport would write them.
"""

from __future__ import annotations

import email
import email.policy
import re
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from gateway.app import App
from gateway.inbound.intake import Envelope, Incoming, accept_many
from gateway.inbound.worker import process_due
from gateway.outbound.outbox import message_bytes
from gateway.store.models import OutboundMail, table_of
from gateway.tickets.customers import NewCustomer, add_customer
from gateway.web.app import create_web_app

_outbound = table_of(OutboundMail)
PASSWORD = "correct horse battery"


@pytest.fixture
def customers(app: App) -> None:
    with app.db.write() as session:
        add_customer(session, NewCustomer("mmuster", "max@acme.example", "Max Muster", "acme",
                                          "de"))
        add_customer(session, NewCustomer("jdoe", "jane@globex.example", "Jane Doe", "globex",
                                          "en"))
        add_customer(session, NewCustomer("kkollege", "kurt@acme.example", "Kurt Kollege",
                                          "acme", "de"))


@pytest.fixture
def web(app: App) -> FastAPI:
    return create_web_app(app)


@pytest.fixture
def browser(web: FastAPI) -> Iterator[TestClient]:
    with TestClient(web, base_url="http://127.0.0.1:8080", follow_redirects=False) as client:
        yield client


def new_browser(web: FastAPI) -> TestClient:
    return TestClient(web, base_url="http://127.0.0.1:8080", follow_redirects=False)


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def post_form(client: TestClient, page: str, url: str, data: dict[str, str],
              files: Any = None) -> Any:
    """GET `page`, then POST `data` with the page's CSRF token to `url`."""
    token = csrf_of(client.get(page).text)
    return client.post(url, data={**data, "csrf": token}, files=files)


def mails(app: App, event: str | None = None) -> list[tuple[str, tuple[str, ...], EmailMessage]]:
    with app.db.read() as session:
        rows = session.execute(select(_outbound).order_by(_outbound.c.id)).all()
    found = [(r.event, tuple(r.recipients),
              email.message_from_bytes(message_bytes(r, app.renderer),
                                       policy=email.policy.default))
             for r in rows]
    return [m for m in found if event is None or m[0] == event]   # type: ignore[misc]


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())   # type: ignore[attr-defined]


def token_from(message: EmailMessage) -> str:
    match = re.search(r"/password/confirm\?token=([A-Za-z0-9_%-]+)", text_of(message))
    assert match, text_of(message)
    return match.group(1)


def password_from(message: EmailMessage) -> str:
    match = re.search(r"^\s{4}(\S+)\s*$", text_of(message), re.M)
    assert match, text_of(message)
    return match.group(1)


def set_password(app: App, username: str, password: str = PASSWORD) -> None:
    from sqlalchemy import update

    from gateway.store.models import CustomerUser
    from gateway.web.passwords import hash_password
    with app.db.write() as session:
        session.execute(update(table_of(CustomerUser))
                        .where(table_of(CustomerUser).c.username == username)
                        .values(password_hash=hash_password(password)))


def log_in(client: TestClient, username: str, password: str = PASSWORD) -> Any:
    response = post_form(client, "/login", "/login",
                         {"username": username, "password": password})
    assert response.status_code == 303, response.text
    return response


def deliver(app: App, message: EmailMessage,
            recipient: str = "incident@support.example.com") -> list[Any]:
    accept_many(app.db, blobs=app.blobs, items=[Incoming(message.as_bytes(), Envelope(
        source="smtp", mail_from=str(message["From"]), rcpt_to=(recipient,)))])
    return process_due(app.db, app.stages)


def mail(subject: str, sender: str = "max@acme.example", body: str = "Er druckt nicht.\n",
         message_id: str | None = None) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "incident@support.example.com"
    message["Subject"] = subject
    message["Message-ID"] = message_id or f"<{abs(hash(subject + body + sender))}@x>"
    message.set_content(body)
    return message


@pytest.fixture
def customers_settings(database_url: str, tmp_path: Any) -> Any:
    """Settings with `password_mode = "set-on-confirm"`."""
    from tests.conftest import make_settings
    return make_settings(database_url, tmp_path / "data", web={
        "listen": "", "password_mode": "set-on-confirm"})
