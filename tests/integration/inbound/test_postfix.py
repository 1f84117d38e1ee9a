"""Postfix in front of the gateway, end to end, as docs/admin.md section 2 sets it up.

Each test runs a throwaway Postfix (tests/integration/postfix.py) whose main.cf, master.cf
and maps are the snippets of docs/admin.md 2.1 (LMTP), 2.3 (pipe to `ticketgw ingest`) and
2.4 (recipients), with this test's paths and ports put in. Mail goes in over SMTP to
Postfix, which hands it to a real `ticketgw serve` (LMTP) or runs `ticketgw ingest` as an
unprivileged user (pipe). Shown here:
- a new mail becomes a ticket, a reply to `support+r-TOKEN@…` reaches its ticket, and a
  bounce arrives with an empty envelope sender (not `MAILER-DAEMON`);
- an unknown recipient is refused with 550 at RCPT, by the recipient map and by
  `reject_unverified_recipient` asking the gateway;
- a fault in the gateway (its database locked or not writable) makes Postfix defer the mail
  (LMTP 4xx, ingest exit 75); after the fault is gone and the queue is flushed there is
  exactly one ticket.

SQLite only: the pipe's user must own the database file, and what these tests show about
Postfix does not depend on the database. Needs Debian's postfix (apt-get install postfix).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import BASE_CONFIG, sqlite_path
from tests.integration.postfix import DOMAIN, Postfix, admin_blocks, admin_snippets, pipe_python
from tests.integration.smtp_helpers import customer_mail
from tests.serve_helpers import free_port, serving

PIPE_USER = "nobody"      # the docs' `user=ticketgw`: unprivileged, not root, not postfix
UNKNOWN = f"nobody-here@{DOMAIN}"



# -- the gateway's side ----------------------------------------------------------------------

def gateway_config(path: Path, database_url: str, data_dir: Path, *, lmtp: str = "",
                   web: str = "") -> Path:
    """The tests' usual desk (tests/conftest.py BASE_CONFIG) as a TOML file."""
    lines = [f'[database]\nurl = "{database_url}"\n', f'[storage]\ndata_dir = "{data_dir}"\n',
             f'[inbound]\nsmtp = ""\nlmtp = "{lmtp}"\ndomains = ["{DOMAIN}"]\n',
             f'[web]\nlisten = "{web}"\n']
    for queue in BASE_CONFIG["queue"]:
        staff = "".join(f'\nstaff = ["{s}"]' for s in queue.get("staff", [])[:1])
        lines.append(f'[[queue]]\nid = "{queue["id"]}"\nfrom = "{queue["from"]}"{staff}\n')
    for person in BASE_CONFIG["staff"]:
        lines.append(f'[[staff]]\nemail = "{person["email"]}"\nname = "{person["name"]}"\n')
    for template in BASE_CONFIG["template"]:
        name = template["name"]
        lines.append(
            f'[[template]]\nid = "{template["id"]}"\ngroup = "{template["group"]}"\n'
            f'queue = "{template["queue"]}"\n'
            f'name = {{ de = "{name["de"]}", en = "{name["en"]}" }}\n'
            f'addresses = {list(template["addresses"])!r}\n'.replace("'", '"'))
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def rows(database_url: str, sql: str, **params: Any) -> list[Any]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return list(connection.execute(text(sql), params))
    finally:
        engine.dispose()


def tickets_titled(database_url: str, title: str) -> list[Any]:
    return rows(database_url, "SELECT id, number, reply_token FROM ticket WHERE title = :t",
                t=title)


def wait_for_ticket(database_url: str, title: str, timeout: float = 60) -> list[Any]:
    """The tickets titled so, once there is one: `serve`'s worker processes what the
    listener stored (no fixed wait, a deadline)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = tickets_titled(database_url, title)
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"no ticket {title!r} in time")


def received(database_url: str, message_id: str) -> Any:
    found = rows(database_url, "SELECT envelope_from, envelope_to, source, outcome, ticket_id "
                 "FROM received_mail WHERE message_id = :m", m=message_id)
    assert len(found) == 1, found
    values = dict(found[0]._mapping)
    values["envelope_to"] = json.loads(values["envelope_to"])   # a JSON column, raw SQL
    return SimpleNamespace(**values)


def bounce_mail(to: str) -> bytes:
    """A delivery status notification (RFC 3464), as a remote MTA would send it."""
    return (f"From: Mail Delivery System <MAILER-DAEMON@mx.acme.example>\r\nTo: {to}\r\n"
            "Subject: Undelivered Mail Returned to Sender\r\n"
            "Message-ID: <bounce-1@mx.acme.example>\r\nMIME-Version: 1.0\r\n"
            'Content-Type: multipart/report; report-type=delivery-status; boundary="b1"\r\n'
            "\r\n--b1\r\nContent-Type: text/plain\r\n\r\n"
            "Your message could not be delivered.\r\n"
            "\r\n--b1\r\nContent-Type: message/delivery-status\r\n\r\n"
            "Reporting-MTA: dns; mx.acme.example\r\n\r\n"
            "Final-Recipient: rfc822; gone@acme.example\r\nAction: failed\r\n"
            "Status: 5.1.1\r\n\r\n--b1--\r\n").encode()


@contextmanager
def postfix(**kwargs: Any) -> Iterator[Postfix]:
    server = Postfix(**kwargs)
    try:
        yield server.start()
    finally:
        server.cleanup()


# -- the docs say what the tests run ----------------------------------------------------------

def test_the_admin_guide_snippets_carry_what_postfix_needs() -> None:
    """Cheap guard of docs/admin.md 2.x, the text the slow tests below feed to Postfix."""
    lmtp = admin_snippets("### 2.1")[0]
    pipe = admin_snippets("### 2.3")[0]
    recipients, verify = admin_snippets("### 2.4")
    assert "recipient_delimiter = +" in lmtp["main.cf"]
    assert "recipient_delimiter = +" in pipe["main.cf"]
    assert "lmtp:inet:127.0.0.1:2424" in lmtp["transport"]
    entry = " ".join(pipe["master.cf"].split())
    assert "null_sender= " in entry and "-f ${sender} -r ${recipient}" in entry
    listed = {line.split()[0] for line in recipients["ticketgw_recipients"].splitlines()}
    queues = {q["from"].split("<")[1].rstrip(">") for q in BASE_CONFIG["queue"]}
    templates = {a for t in BASE_CONFIG["template"] for a in t["addresses"]}
    assert queues | templates <= listed     # replies go to the queue's address + r-TOKEN
    assert "unverified_recipient_reject_code = 550" in verify["main.cf"]
    assert "exec /opt/ticketgw/venv/bin/ticketgw" in admin_blocks("### 2.3")[1]


# -- by pipe to `ticketgw ingest` (2.3, with the recipient map of 2.4) --------------------------

@contextmanager
def piped_gateway(database_url: str) -> Iterator[tuple[Postfix, str, Path]]:
    """Postfix piping the domain into `ticketgw ingest` as PIPE_USER; (postfix, the URL of
    the gateway's database, its directory)."""
    runner = pipe_python(PIPE_USER)
    section = admin_snippets("### 2.3")[0]
    recipients = admin_snippets("### 2.4")[0]
    master = section["master.cf"].replace("user=ticketgw", f"user={PIPE_USER}")
    server = Postfix(main=section["main.cf"] + recipients["main.cf"],
                     maps={"transport": section["transport"],
                           "ticketgw_recipients": recipients["ticketgw_recipients"]})
    try:
        home = server.root / "gateway"
        home.mkdir()
        database = home / "gateway.db"
        shutil.copy(sqlite_path(database_url), database)
        url = f"sqlite:///{database}"
        config = gateway_config(home / "ticketgw.toml", url, home / "data")
        (home / "data").mkdir()
        # the docs' wrapper script, with this test's files for the docs' paths; its env file
        # holds what the pipe's minimal environment lacks (here: where the code is)
        env_file = home / "ticketgw.env"
        env_file.write_text(f"PYTHONPATH={runner.pythonpath}\n")
        wrapper = home / "ticketgw-ingest"
        wrapper.write_text(admin_blocks("### 2.3")[1]
                           .replace("/etc/ticketgw/ticketgw.env", str(env_file))
                           .replace("/opt/ticketgw/venv/bin/ticketgw",
                                    f"{runner.python} -m gateway")
                           .replace("/etc/ticketgw/ticketgw.toml", str(config)))
        wrapper.chmod(0o755)
        for path in (home, *home.iterdir()):
            shutil.chown(path, PIPE_USER)
        shutil.chown(env_file, "root")
        shutil.chown(env_file, group=runner.group)
        env_file.chmod(0o640)
        # what an admin runs once: migrate and mirror the config's queues and templates
        upgraded = runner.run(["-m", "gateway", "--config", str(config), "db", "upgrade"])
        assert upgraded.returncode == 0, upgraded.stderr
        server.master = master.replace("/usr/local/libexec/ticketgw-ingest", str(wrapper))
        server.start()
        yield server, url, home
    finally:
        server.cleanup()


def give_to(user: str, home: Path) -> None:
    """The gateway's database and files belong to `user` (our reads as root may have created
    files beside the database)."""
    subprocess.run(["chown", "-R", user, str(home)], check=True)


@pytest.mark.slow
@pytest.mark.backends("sqlite")
def test_pipe_new_mail_reply_bounce_and_unknown_recipient(database_url: str) -> None:
    with piped_gateway(database_url) as (server, url, home):
        code, reply = server.rcpt_reply(UNKNOWN)
        assert code == 550, reply                       # the recipient map, at RCPT

        first = customer_mail(subject="Drucker im 3. OG", message_id="<pipe-new@acme>")
        queue_id = server.send("max@acme.example", "incident@support.example.com",
                               first.as_bytes())
        server.wait_status(queue_id, "sent")
        (ticket,) = tickets_titled(url, "Drucker im 3. OG")
        mail = received(url, "<pipe-new@acme>")
        assert (mail.source, mail.envelope_from, mail.outcome) == (
            "ingest", "max@acme.example", "created")
        assert mail.envelope_to == ["incident@support.example.com"]
        give_to(PIPE_USER, home)

        # the reply address: admitted by `support@` in the map and the delimiter
        reply_to = f"support+r-{ticket.reply_token}@{DOMAIN}"
        answer = customer_mail(subject="Re: Drucker im 3. OG", to=reply_to,
                               message_id="<pipe-reply@acme>", body="Geht wieder.\n")
        queue_id = server.send("max@acme.example", reply_to, answer.as_bytes())
        server.wait_status(queue_id, "sent")
        mail = received(url, "<pipe-reply@acme>")
        assert (mail.outcome, mail.ticket_id) == ("appended", ticket.id)
        assert mail.envelope_to == [reply_to]
        give_to(PIPE_USER, home)

        # a bounce: the empty envelope sender arrives empty (null_sender=)
        queue_id = server.send("", "incident@support.example.com",
                               bounce_mail("incident@support.example.com"))
        server.wait_status(queue_id, "sent")
        mail = received(url, "<bounce-1@mx.acme.example>")
        assert mail.envelope_from == ""
        assert mail.outcome == "ignored"
        assert len(rows(url, "SELECT id FROM ticket")) == 1


@pytest.mark.slow
@pytest.mark.backends("sqlite")
def test_pipe_fault_defers_and_delivers_once_after_recovery(database_url: str) -> None:
    with piped_gateway(database_url) as (server, url, home):
        # the fault: the pipe's user can no longer write the database or its directory
        give_to("root", home)
        message = customer_mail(subject="Kein Netz", message_id="<pipe-fault@acme>")
        queue_id = server.send("max@acme.example", "incident@support.example.com",
                               message.as_bytes())
        deferred = server.wait_status(queue_id, "deferred")
        assert "not stored, try again later" in deferred    # ingest's exit 75
        assert queue_id in server.queue()
        assert tickets_titled(url, "Kein Netz") == []

        give_to(PIPE_USER, home)                            # recovered
        mark = len(server.log_text())
        server.flush()
        server.wait_status(queue_id, "sent", after=mark)
        assert "Mail queue is empty" in server.queue()
        assert len(tickets_titled(url, "Kein Netz")) == 1
        assert received(url, "<pipe-fault@acme>").outcome == "created"


# -- by LMTP to `ticketgw serve` (2.1, with the verification of 2.4) -----------------------------

@contextmanager
def lmtp_gateway(database_url: str, tmp_path: Path, *, verify: bool
                 ) -> Iterator[Postfix]:
    """A running `ticketgw serve` with its LMTP listener, and Postfix handing it the domain
    as docs/admin.md 2.1 says (and, with `verify`, checking recipients as 2.4 says)."""
    lmtp_port, web_port = free_port(), free_port()
    config = gateway_config(tmp_path / "ticketgw.toml", database_url, tmp_path / "data",
                            lmtp=f"127.0.0.1:{lmtp_port}", web=f"127.0.0.1:{web_port}")
    section = admin_snippets("### 2.1")[0]
    main = section["main.cf"] + (admin_snippets("### 2.4")[1]["main.cf"] if verify else "")
    transport = section["transport"].replace("127.0.0.1:2424", f"127.0.0.1:{lmtp_port}")
    with serving(["--config", str(config), "serve"], tmp_path,
                 f"http://127.0.0.1:{web_port}/healthz"), \
            postfix(main=main, maps={"transport": transport}) as server:
        yield server


@pytest.mark.slow
@pytest.mark.backends("sqlite")
def test_lmtp_new_mail_and_unknown_recipient(database_url: str, tmp_path: Path) -> None:
    with lmtp_gateway(database_url, tmp_path, verify=True) as server:
        code, reply = server.rcpt_reply(UNKNOWN)
        assert code == 550, (reply, server.log_tail())   # the gateway said 550 to the probe
        assert "5.1.1" in reply

        message = customer_mail(subject="Bildschirm flackert", message_id="<lmtp-new@acme>")
        queue_id = server.send("max@acme.example", "incident@support.example.com",
                               message.as_bytes())
        assert "relay=127.0.0.1" in server.wait_status(queue_id, "sent")
        assert len(wait_for_ticket(database_url, "Bildschirm flackert")) == 1
        mail = received(database_url, "<lmtp-new@acme>")
        assert (mail.source, mail.envelope_from) == ("lmtp", "max@acme.example")


@pytest.mark.slow
@pytest.mark.backends("sqlite")
def test_lmtp_fault_defers_and_delivers_once_after_recovery(database_url: str,
                                                            tmp_path: Path) -> None:
    with lmtp_gateway(database_url, tmp_path, verify=False) as server:
        # the fault: another process holds SQLite's write lock past the gateway's busy
        # timeout, so the listener cannot store the mail and answers 4xx
        blocker = sqlite3.connect(sqlite_path(database_url), isolation_level=None)
        try:
            blocker.execute("BEGIN EXCLUSIVE")
            message = customer_mail(subject="Telefon tot", message_id="<lmtp-fault@acme>")
            queue_id = server.send("max@acme.example", "incident@support.example.com",
                                   message.as_bytes())
            deferred = server.wait_status(queue_id, "deferred")
            assert "said: 4" in deferred, deferred          # the listener's 4xx
            assert queue_id in server.queue()
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert tickets_titled(database_url, "Telefon tot") == []

        mark = len(server.log_text())
        server.flush()
        server.wait_status(queue_id, "sent", after=mark)
        assert "Mail queue is empty" in server.queue()
        assert len(wait_for_ticket(database_url, "Telefon tot")) == 1
        assert received(database_url, "<lmtp-fault@acme>").source == "lmtp"   # stored once

