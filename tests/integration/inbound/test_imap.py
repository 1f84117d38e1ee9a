"""IMAP import against a real Dovecot (tests/integration/dovecot.py), on SQLite and PostgreSQL.

What the issue asks, each as it would happen: mail appended with IMAP APPEND is imported
(with IDLE within seconds); the mailbox ends up as configured (seen / delete / move); a
gateway killed between the commit and the mailbox change imports nothing twice; a Dovecot
restart loses nothing; a recreated folder (new UIDVALIDITY) creates no duplicates; a wrong
password is reported, retried with backoff, and recovers; two instances on one PostgreSQL
poll a mailbox one at a time and take over from each other; the corpus imports as through
SMTP; `ticketgw mailbox list/status/test`, /healthz and /metrics report it.

Dovecot missing is a failure that says how to install it, never a skip.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email.parser import BytesHeaderParser
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from gateway.app import App, build_app, prepare_database
from gateway.config.settings import MailboxSettings
from gateway.errors import ConfigError
from gateway.inbound.imap.backoff import Backoff
from gateway.inbound.imap.connect import target_of
from gateway.inbound.imap.fetch import uid_set
from gateway.inbound.imap.poller import MailboxPoller
from gateway.inbound.imap.report import mailbox_statuses
from gateway.inbound.worker import process_due
from gateway.store.models import ImapImport, ReceivedMail, Ticket, table_of
from tests.conftest import REPO, make_settings, write_config
from tests.integration.dovecot import INSTALL_HINT, Dovecot, dovecot_binary
from tests.integration.inbound.test_ingest_and_corpus import corpus_mails
from tests.integration.smtp_helpers import running_listener
from tests.serve_helpers import free_port

PASSWORD_ENV = "TGW_TEST_IMAP_PASSWORD"
FAST = Backoff(first=0.1, maximum=0.5, auth_first=0.3, auth_maximum=1.0)
CATCH_ALL = {"address": "*", "queue": "servicedesk"}
_received = table_of(ReceivedMail)
_import = table_of(ImapImport)


# -- fixtures and helpers ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def dovecot() -> Iterator[Dovecot]:
    if dovecot_binary() is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    server = Dovecot().start()
    yield server
    server.cleanup()


@pytest.fixture
def user(dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh Dovecot user (an empty mail store); the gateway trusts the test CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cafile))
    monkeypatch.setenv(PASSWORD_ENV, "secret")
    return dovecot.add_user()


def entry(dovecot: Dovecot, user: str, **overrides: Any) -> dict[str, Any]:
    return {"name": "support", "url": f"imap://127.0.0.1:{dovecot.port}/INBOX", "user": user,
            "password_env": PASSWORD_ENV, **overrides}


@pytest.fixture
def make_app(database_url: str, tmp_path: Path) -> Iterator[Callable[..., App]]:
    apps: list[App] = []

    def build(*mailboxes: dict[str, Any]) -> App:
        settings = make_settings(database_url, tmp_path / "data", mailbox=list(mailboxes),
                                 route=[CATCH_ALL])
        app = build_app(settings)
        prepare_database(app, migrate=False)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.close()


@pytest.fixture
def pollers() -> Iterator[list[MailboxPoller]]:
    """Pollers started by a test; stopped and joined at its end, whatever happened."""
    started: list[MailboxPoller] = []
    yield started
    for poller in started:
        poller.stop()
    for poller in started:
        poller.join(10)
        assert poller.thread is None or not poller.thread.is_alive()


def poller_for(app: App, **options: Any) -> MailboxPoller:
    return MailboxPoller(app.db, app.blobs, app.settings.mailbox[0],
                         base_dir=app.settings.base_dir, backoff=FAST, **options)


def mail(n: int, tag: str = "m") -> bytes:
    return (f"From: Customer {n} <c{n}@customer.example>\r\nTo: helpdesk@support.example.com"
            f"\r\nSubject: Printer {tag} {n}\r\nMessage-ID: <{tag}.{n}@customer.example>\r\n"
            f"\r\nThe printer on floor {n} is broken.\r\n").encode()


def stored(app: App) -> list[Any]:
    with app.db.read() as session:
        return list(session.execute(select(_received.c.id, _received.c.source,
                                           _received.c.raw).order_by(_received.c.id)))


def import_rows(app: App) -> list[Any]:
    with app.db.read() as session:
        return list(session.execute(select(_import).order_by(_import.c.id)))


def status(app: App) -> Any:
    with app.db.read() as session:
        return mailbox_statuses(session, [app.settings.mailbox[0].name])[0]


# A loaded 2-core CI machine runs the whole suite at once: every limit gets this much slack.
# It stays far below the 600 s poll interval the IDLE tests configure, so a quick import
# still proves IDLE delivery.
SLACK = float(os.environ.get("TGW_TEST_SLACK", "3"))


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Seconds until `condition` held; fails the test after `timeout` × SLACK."""
    timeout *= SLACK
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def folder(dovecot: Dovecot, user: str, name: str = "INBOX") -> dict[int, set[bytes]]:
    """UID -> flags of every message in the folder ({} if it does not exist)."""
    with dovecot.client(user) as client:
        if not client.folder_exists(name):
            return {}
        client.select_folder(name, readonly=True)
        uids = client.search("ALL")
        return {uid: set(data[b"FLAGS"]) - {b"\\Recent"}
                for uid, data in client.fetch(uids, ["FLAGS"]).items()} if uids else {}


def bodies(dovecot: Dovecot, user: str, name: str = "INBOX") -> list[bytes]:
    with dovecot.client(user) as client:
        client.select_folder(name, readonly=True)
        uids = client.search("ALL")
        fetched = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
        return [fetched[uid][b"BODY[]"] for uid in sorted(fetched)]


def count(app: App, table: Any) -> int:
    with app.db.read() as session:
        return int(session.execute(select(func.count()).select_from(table)).scalar_one())


def process_all(app: App) -> list[Any]:
    done: list[Any] = []
    while batch := process_due(app.db, app.stages, limit=50):
        done += batch
    return done


# -- pure parts ----------------------------------------------------------------------------

def test_uid_sets_and_mailbox_urls() -> None:
    assert uid_set([7, 1, 2, 3, 9, 10]) == "1:3,7,9:10"
    assert uid_set([5]) == "5"

    def target(**values: Any) -> Any:
        return target_of(MailboxSettings(name="m", **values))

    assert target(url="imaps://mail.example.com").describe() == \
        "imaps://mail.example.com:993/INBOX"
    plain = target(url="imap://127.0.0.1:1143/Support%20Desk")
    assert (plain.port, plain.security, plain.folder, plain.loopback) == (
        1143, "starttls", "Support Desk", True)
    assert target(url="imap://mail.example.com", folder="Help").folder == "Help"
    for bad in ({"url": "imaps://me:pw@mail.example.com"},
                {"url": "imap://mail.example.com/A", "folder": "B"}):
        with pytest.raises(ConfigError):
            target(**bad)
    delays = [Backoff().delay("connection", n) for n in range(1, 12)]
    assert 0.5 <= delays[0] <= 1 and all(d <= 300 for d in delays) and delays[-1] >= 150
    assert 30 <= Backoff().delay("auth", 1) <= 60


# -- importing --------------------------------------------------------------------------------

def test_idle_imports_appended_mail_within_seconds(dovecot: Dovecot, user: str,
                                                   make_app: Callable[..., App],
                                                   pollers: list[MailboxPoller]) -> None:
    # poll_interval is long: only IDLE can explain a quick import
    app = make_app(entry(dovecot, user, poll_interval=600))
    poller = poller_for(app)
    pollers.append(poller)
    poller.start()
    wait_for(lambda: status(app).state == "ok", 10, "the first check")
    appended = time.monotonic()
    dovecot.append(user, "INBOX", mail(1), mail(2))
    wait_for(lambda: len(stored(app)) == 2, 10, "two mails imported")
    seconds = time.monotonic() - appended
    assert seconds < 5, f"IDLE import took {seconds:.1f} s"
    rows = stored(app)
    assert [r.source for r in rows] == ["imap", "imap"]
    assert [r.raw for r in rows] == bodies(dovecot, user)   # byte for byte what IMAP serves
    wait_for(lambda: all(b"\\Seen" in f for f in folder(dovecot, user).values()), 5,
             "both marked seen")
    wait_for(lambda: (status(app).state, status(app).imported, status(app).backlog,
                      status(app).messages) == ("ok", 2, 0, 2), 5, "the check recorded")
    stopping = time.monotonic()
    poller.stop()
    poller.join(10)
    assert time.monotonic() - stopping < 3


def test_idle_is_renewed_and_each_renewal_is_a_full_check(dovecot: Dovecot, user: str,
                                                          make_app: Callable[..., App],
                                                          pollers: list[MailboxPoller]) -> None:
    """Renewal every 0.3 s here (in production every poll_interval, at most 24 min, well
    before RFC 2177's 29 minutes): each ends IDLE, checks the whole folder, starts again."""
    app = make_app(entry(dovecot, user, poll_interval=600))
    poller = poller_for(app, idle_renew=0.3)
    pollers.append(poller)
    poller.start()
    wait_for(lambda: status(app).last_check is not None, 10, "the first check")
    checks = [status(app).last_check]
    for _ in range(3):   # no mail came, yet the folder is checked at every renewal
        wait_for(lambda: status(app).last_check > checks[-1], 5, "a renewal with a check")
        checks.append(status(app).last_check)
    dovecot.append(user, "INBOX", mail(1))
    wait_for(lambda: len(stored(app)) == 1, 5, "mail still announced between renewals")
    assert status(app).failures == 0


@pytest.mark.parametrize("after", ["seen", "delete", "move:Processed"])
def test_after_import_the_mailbox_is_as_configured(dovecot: Dovecot, user: str,
                                                   make_app: Callable[..., App],
                                                   after: str) -> None:
    app = make_app(entry(dovecot, user, after=after))
    dovecot.append(user, "INBOX", mail(1), mail(2), mail(3))
    with dovecot.client(user) as client:   # someone else's mail, flagged \Deleted: ours to keep
        client.select_folder("INBOX")
        client.add_flags(client.search("ALL")[:1], [b"\\Deleted"])
    result = poller_for(app).check_once()
    assert (result.stored, result.duplicates, result.changed) == (3, 0, 3)
    again = poller_for(app).check_once()
    assert (again.stored, again.changed) == (0, 0)
    assert len(stored(app)) == 3
    inbox, processed = folder(dovecot, user), folder(dovecot, user, "Processed")
    if after == "seen":
        assert len(inbox) == 3 and all(b"\\Seen" in flags for flags in inbox.values())
        assert processed == {}
    elif after == "delete":
        assert inbox == {} and processed == {}
    else:
        assert inbox == {} and len(processed) == 3
        # fetched with BODY.PEEK[]: the import itself never marked them read
        assert all(b"\\Seen" not in flags for flags in processed.values())
    assert all(r.done is not None for r in import_rows(app))


def test_a_refused_move_blocks_no_import_and_is_retried(dovecot: Dovecot, user: str,
                                                        make_app: Callable[..., App],
                                                        pollers: list[MailboxPoller]) -> None:
    app = make_app(entry(dovecot, user, after="move:Processed", poll_interval=600))
    poller = poller_for(app, idle_renew=1.0)
    pollers.append(poller)
    poller.start()
    dovecot.append(user, "INBOX", mail(1))
    wait_for(lambda: len(folder(dovecot, user, "Processed")) == 1, 10, "the first moved")
    with dovecot.client(user) as client:   # someone deletes the target folder
        client.delete_folder("Processed")
    dovecot.append(user, "INBOX", mail(2))
    wait_for(lambda: len(stored(app)) == 2, 10, "stored although the move fails")
    wait_for(lambda: len(folder(dovecot, user, "Processed")) == 1
             and folder(dovecot, user) == {}, 10, "moved at a later check, folder recreated")
    wait_for(lambda: status(app).state == "ok", 5, "the problem cleared")
    assert all(r.done is not None for r in import_rows(app))


def test_plain_polling_where_idle_is_not_used(dovecot: Dovecot, user: str,
                                              make_app: Callable[..., App],
                                              pollers: list[MailboxPoller]) -> None:
    app = make_app(entry(dovecot, user, poll_interval=1))
    poller = poller_for(app, use_idle=False)
    pollers.append(poller)
    poller.start()
    dovecot.append(user, "INBOX", mail(1))
    wait_for(lambda: len(stored(app)) == 1, 5, "imported by polling")


CRASHING_IMPORTER = """
import os, signal, sys
from pathlib import Path
from gateway.app import build_app
from gateway.inbound.imap.poller import MailboxPoller
from gateway.config.loading import load_settings

settings = load_settings(Path(sys.argv[1]))
app = build_app(settings)
poller = MailboxPoller(app.db, app.blobs, settings.mailbox[0], base_dir=settings.base_dir,
                       on_committed=lambda stored: os.kill(os.getpid(), signal.SIGKILL))
poller.check_once()
"""


def test_killed_between_commit_and_mailbox_change_then_serve_makes_no_duplicate(
        dovecot: Dovecot, user: str, database_url: str, tmp_path: Path,
        make_app: Callable[..., App]) -> None:
    """A real SIGKILL right after the commit; then the real `ticketgw serve` takes over:
    it finishes the move, imports nothing twice, and its worker makes one ticket per mail.
    /healthz and /metrics report the mailbox."""
    app = make_app(entry(dovecot, user, after="move:Processed"))
    web_port = free_port()
    config = write_config(tmp_path / "ticketgw.toml", database_url, extra=(
        f'\n[[route]]\naddress = "*"\nqueue = "servicedesk"\n'
        f'\n[[queue]]\nid = "servicedesk"\nfrom = "Service Desk <support@support.example.com>"\n'
        f'\n[[mailbox]]\nname = "support"\nurl = "imap://127.0.0.1:{dovecot.port}/INBOX"\n'
        f'user = "{user}"\npassword_env = "{PASSWORD_ENV}"\nafter = "move:Processed"\n'
        f'poll_interval = 600\n'))
    config.write_text(config.read_text().replace('listen = ""', f'listen = "127.0.0.1:{web_port}"'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETGW_")}
    dovecot.append(user, "INBOX", mail(1), mail(2))

    crashed = subprocess.run([sys.executable, "-c", CRASHING_IMPORTER, str(config)], env=env,
                             cwd=REPO, capture_output=True, text=True, timeout=60, check=False)
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert len(stored(app)) == 2                      # committed ...
    assert len(folder(dovecot, user)) == 2            # ... but the mailbox is unchanged
    assert all(r.done is None for r in import_rows(app))

    serve = subprocess.Popen([sys.executable, "-m", "gateway", "--config", str(config),
                              "serve"], cwd=tmp_path, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    stderr = ""
    try:
        wait_for(lambda: len(folder(dovecot, user, "Processed")) == 2, 30,
                 "serve finished the move")
        assert folder(dovecot, user) == {}
        wait_for(lambda: count(app, table_of(Ticket)) == 2, 30, "the worker made the tickets")
        dovecot.append(user, "INBOX", mail(3))
        wait_for(lambda: count(app, table_of(Ticket)) == 3, 15, "a new mail, through IDLE")
        health = httpx.get(f"http://127.0.0.1:{web_port}/healthz", timeout=5).json()
        assert health["status"] == "ok"
        assert health["mailboxes"]["support"]["state"] == "ok"
        assert health["mailboxes"]["support"]["backlog"] == 0
        assert health["mailboxes"]["support"]["last_check"]
        metrics = httpx.get(f"http://127.0.0.1:{web_port}/metrics", timeout=5).text
        assert 'ticketgw_mailbox_backlog{mailbox="support"} 0.0' in metrics
        assert 'ticketgw_mailbox_up{mailbox="support"} 1.0' in metrics
        assert 'ticketgw_mailbox_imported_mails_total{mailbox="support"} 3.0' in metrics
        assert re.search(r'ticketgw_mailbox_last_check_timestamp_seconds\{mailbox="support"\} '
                         r'1\.\d+e\+09', metrics)
    except AssertionError as exc:
        serve.send_signal(signal.SIGTERM)
        raise AssertionError(f"{exc}; serve said: {serve.communicate(timeout=30)[1]}") from None
    finally:
        if serve.poll() is None:
            serve.send_signal(signal.SIGTERM)
            _, stderr = serve.communicate(timeout=30)
    assert serve.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert len(stored(app)) == 3 and count(app, table_of(Ticket)) == 3
    assert "finishing 2 change(s) left by an earlier run" in stderr


def test_a_dovecot_restart_mid_session_loses_nothing(dovecot: Dovecot, user: str,
                                                     make_app: Callable[..., App],
                                                     pollers: list[MailboxPoller]) -> None:
    app = make_app(entry(dovecot, user, poll_interval=600))
    poller = poller_for(app)
    pollers.append(poller)
    poller.start()
    dovecot.append(user, "INBOX", mail(1), mail(2))
    wait_for(lambda: len(stored(app)) == 2, 10, "the first two")
    dovecot.restart()                         # every session is cut, as under systemd
    dovecot.append(user, "INBOX", mail(3), mail(4))
    wait_for(lambda: len(stored(app)) == 4, 15, "the two appended after the restart")
    wait_for(lambda: status(app).state == "ok" and len(folder(dovecot, user)) == 4
             and all(b"\\Seen" in f for f in folder(dovecot, user).values()), 10, "all seen")
    assert [r.raw for r in stored(app)] == bodies(dovecot, user)
    assert len(import_rows(app)) == 4


@pytest.mark.parametrize("after", ["seen", "move:Processed"])
def test_a_recreated_folder_new_uidvalidity_creates_no_duplicates(
        dovecot: Dovecot, user: str, make_app: Callable[..., App], after: str) -> None:
    app = make_app(entry(dovecot, user, url=f"imap://127.0.0.1:{dovecot.port}/Support",
                         after=after))
    dovecot.append(user, "Support", mail(1), mail(2), mail(3))
    assert poller_for(app).check_once().stored == 3
    first = status(app).uidvalidity
    # the folder is deleted and recreated with the same mails (a restore, a migration)
    with dovecot.client(user) as client:
        client.delete_folder("Support")
        client.create_folder("Support")
    dovecot.append(user, "Support", mail(1), mail(2), mail(3), mail(4))
    result = poller_for(app).check_once()
    assert (result.stored, result.duplicates, result.changed) == (1, 3, 4)
    assert status(app).uidvalidity != first
    assert len(stored(app)) == 4
    records = import_rows(app)
    assert len(records) == 7 and sum(r.duplicate for r in records) == 3
    if after == "seen":
        assert all(b"\\Seen" in f for f in folder(dovecot, user, "Support").values())
    else:
        assert folder(dovecot, user, "Support") == {}
        assert len(folder(dovecot, user, "Processed")) == 7   # nothing destroyed


def test_a_wrong_password_is_reported_retried_with_backoff_and_recovers(
        dovecot: Dovecot, make_app: Callable[..., App], pollers: list[MailboxPoller],
        monkeypatch: pytest.MonkeyPatch, run_cli: Any, database_url: str, tmp_path: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cafile))
    monkeypatch.setenv(PASSWORD_ENV, "secret")
    user = dovecot.add_user(password="changed-on-the-server")
    app = make_app(entry(dovecot, user, poll_interval=600))
    poller = poller_for(app)
    pollers.append(poller)
    with caplog.at_level(logging.ERROR, logger="gateway.inbound.imap.poller"):
        poller.start()
        wait_for(lambda: status(app).state == "auth-failed", 10, "the refusal recorded")
        time.sleep(2)
        report = status(app)
    # 0.3 s doubling to 1 s (in production 60 s doubling to 30 min): a few tries, no storm
    assert 2 <= report.failures <= 6, report.failures
    assert "refused" in (report.last_error or "") and report.error_kind == "auth"
    assert any("auth failure" in r.getMessage() for r in caplog.records)
    config = write_config(tmp_path / "c.toml", database_url, extra=(
        f'\n[[mailbox]]\nname = "support"\nurl = "imap://127.0.0.1:{dovecot.port}/INBOX"\n'
        f'user = "{user}"\npassword_env = "{PASSWORD_ENV}"\n'))
    shown = run_cli("--config", str(config), "mailbox", "status", "--json")
    assert shown.exit_code == 0, shown.output
    [row] = json.loads(shown.stdout)
    assert row["state"] == "auth-failed" and "refused" in row["last_error"]
    assert row["error_since"] and row["last_check"] is None

    dovecot.set_password(user, "secret")            # fixed on the server (read within ~5 s)
    wait_for(lambda: status(app).state == "ok", 15, "recovered once the password is right")
    dovecot.append(user, "INBOX", mail(1))
    wait_for(lambda: len(stored(app)) == 1, 5, "and imported")
    assert (status(app).failures, status(app).last_error) == (0, None)


@pytest.mark.backends("postgresql")
def test_two_instances_poll_one_mailbox_one_at_a_time(dovecot: Dovecot, user: str,
                                                      database_url: str, tmp_path: Path,
                                                      make_app: Callable[..., App],
                                                      pollers: list[MailboxPoller]) -> None:
    """Instance A (its own process) holds the mailbox; B stands by; A is killed; B takes
    over within seconds. Nothing is imported twice."""
    app = make_app(entry(dovecot, user, poll_interval=600))
    config = write_config(tmp_path / "a.toml", database_url, extra=(
        f'\n[[mailbox]]\nname = "support"\nurl = "imap://127.0.0.1:{dovecot.port}/INBOX"\n'
        f'user = "{user}"\npassword_env = "{PASSWORD_ENV}"\npoll_interval = 600\n'))
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETGW_")}
    instance_a = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; "
         "from gateway.app import build_app; from gateway.config.loading import load_settings; "
         "from gateway.inbound.imap.poller import MailboxPoller; "
         "s = load_settings(Path(sys.argv[1])); "
         "a = build_app(s); "
         "MailboxPoller(a.db, a.blobs, s.mailbox[0], base_dir=s.base_dir).run()", str(config)],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: status(app).owner == f"{socket.gethostname()}:{instance_a.pid}", 20,
                 "instance A polls")
        instance_b = poller_for(app, standby_retry=0.2)
        pollers.append(instance_b)
        instance_b.start()
        dovecot.append(user, "INBOX", mail(1), mail(2))
        wait_for(lambda: len(stored(app)) == 2, 10, "A imports")
        time.sleep(0.5)
        assert status(app).owner.endswith(f":{instance_a.pid}")   # B only stood by
        instance_a.kill()
        instance_a.wait(10)
        dovecot.append(user, "INBOX", mail(3))
        wait_for(lambda: len(stored(app)) == 3, 10, "B took over")
        wait_for(lambda: status(app).owner == instance_b.owner, 5, "B recorded its check")
    finally:
        if instance_a.poll() is None:
            instance_a.kill()
        instance_a.communicate(timeout=10)
    assert len(import_rows(app)) == 3 and len(stored(app)) == 3


@pytest.mark.backends("postgresql")
def test_two_pollers_at_once_still_store_each_mail_once(dovecot: Dovecot, user: str,
                                                        make_app: Callable[..., App]) -> None:
    """Without the lock (as when a lock connection broke): the import records' unique key
    alone keeps every mail single."""
    app = make_app(entry(dovecot, user, after="seen"))
    dovecot.append(user, "INBOX", *(mail(n) for n in range(40)))
    results: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results.append(poller_for(app).check_once())
        except BaseException as exc:   # AlreadyRecorded is an acceptable way to lose
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert all(type(e).__name__ == "AlreadyRecorded" for e in errors), errors
    poller_for(app).check_once()
    assert len(stored(app)) == 40 and len(import_rows(app)) == 40


# -- TLS, XOAUTH2 and the command line -----------------------------------------------------------

def _config(tmp_path: Path, database_url: str, **mailbox: Any) -> Path:
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in mailbox.items())
    return write_config(tmp_path / "ticketgw.toml", database_url,
                        extra=f"\n[[mailbox]]\n{lines}")


@pytest.mark.backends("sqlite")
def test_mailbox_test_over_imaps_starttls_and_xoauth2(dovecot: Dovecot, user: str,
                                                      database_url: str, tmp_path: Path,
                                                      run_cli: Any,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    dovecot.append(user, "INBOX", mail(1), mail(2))
    cases = [
        ({"url": f"imaps://127.0.0.1:{dovecot.tls_port}/INBOX", "password_env": PASSWORD_ENV},
         "tls"),
        ({"url": f"imap://127.0.0.1:{dovecot.port}/INBOX", "password_env": PASSWORD_ENV},
         "starttls"),
        # Dovecot here checks the bearer token like a password: "secret" is the token
        ({"url": f"imaps://localhost:{dovecot.tls_port}", "oauth2_token_command": "echo secret"},
         "tls"),
    ]
    for mailbox, tls in cases:
        config = _config(tmp_path, database_url, name="support", user=user, after="move:Done",
                         **mailbox)
        result = run_cli("--config", str(config), "mailbox", "test", "support", "--json")
        assert result.exit_code == 0, result.output
        report = json.loads(result.stdout)
        assert (report["tls"], report["messages"], report["unseen"]) == (tls, 2, 2)
        assert {"IDLE", "MOVE", "UIDPLUS"} <= set(report["extensions"])
        assert any("'Done' does not exist yet" in note for note in report["notes"])
    assert len(folder(dovecot, user)) == 2   # looked at, nothing imported or changed
    assert all(b"\\Seen" not in f for f in folder(dovecot, user).values())

    failing = [({"oauth2_token_command": "false"}, 2, "oauth2_token_command exited 1"),
               ({"password_env": "TGW_TEST_UNSET"}, 2, "TGW_TEST_UNSET"),
               ({"password_env": PASSWORD_ENV, "folder": "Nope"}, 2, "folder 'Nope'")]
    for mailbox, code, message in failing:
        config = _config(tmp_path, database_url, name="support", user=user,
                         url=f"imaps://127.0.0.1:{dovecot.tls_port}", **mailbox)
        result = run_cli("--config", str(config), "mailbox", "test", "support")
        assert (result.exit_code, message in result.stderr) == (code, True), result.output
    monkeypatch.delenv("SSL_CERT_FILE")   # the system CAs do not know the test certificate
    config = _config(tmp_path, database_url, name="support", user=user,
                     url=f"imaps://127.0.0.1:{dovecot.tls_port}", password_env=PASSWORD_ENV)
    result = run_cli("--config", str(config), "mailbox", "test", "support")
    assert result.exit_code == 75 and "CERTIFICATE_VERIFY_FAILED" in result.stderr


def test_mailbox_list_status_and_test_exit_codes(dovecot: Dovecot, user: str,
                                                 database_url: str, tmp_path: Path,
                                                 run_cli: Any) -> None:
    config = _config(tmp_path, database_url, name="support", user=user,
                     url=f"imap://127.0.0.1:{dovecot.port}/INBOX", password_env=PASSWORD_ENV,
                     after="delete")
    listed = run_cli("--config", str(config), "mailbox", "list", "--json")
    assert listed.exit_code == 0, listed.output
    assert json.loads(listed.stdout) == [{
        "name": "support", "url": f"imap://127.0.0.1:{dovecot.port}/INBOX", "user": user,
        "folder": "INBOX", "after": "delete", "poll_interval": 60, "auth": "password"}]
    before = run_cli("--config", str(config), "mailbox", "status", "--json")
    assert before.exit_code == 0, before.output
    assert json.loads(before.stdout)[0]["state"] == "never-checked"
    table = run_cli("--config", str(config), "mailbox", "status")
    assert "never-checked" in table.stdout
    assert run_cli("--config", str(config), "mailbox", "status", "nope").exit_code == 1
    assert run_cli("--config", str(config), "mailbox", "test", "nope").exit_code == 1
    down = _config(tmp_path, database_url, name="support", user=user,
                   url=f"imap://127.0.0.1:{free_port()}", password_env=PASSWORD_ENV)
    result = run_cli("--config", str(down), "mailbox", "test", "support")
    assert result.exit_code == 75 and "cannot connect" in result.stderr


# -- the corpus ---------------------------------------------------------------------------------

@pytest.mark.slow
def test_the_corpus_imports_as_through_smtp(dovecot: Dovecot, user: str,
                                            make_app: Callable[..., App]) -> None:
    """Every corpus mail appended to the mailbox is stored byte for byte as an SMTP
    delivery of it is, and ends with the same outcome, by the same rule."""
    app = make_app(entry(dovecot, user))
    # as an MTA delivers them (into the mailbox, or to us): CRLF, ending in CRLF
    mails = [(name, re.sub(rb"\r\n|\r|\n", b"\r\n", raw).removesuffix(b"\r\n") + b"\r\n")
             for name, raw in corpus_mails()]
    dovecot.append(user, "INBOX", *(raw for _, raw in mails))
    result = poller_for(app).check_once()
    assert result.stored + result.duplicates == len(mails)
    by_imap = _outcomes(app)

    empty_database(app)      # the SMTP run starts from the same empty state
    smtp_app = make_app()
    with running_listener(smtp_app) as port, smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        for _, raw in mails:   # the envelope sender the delivering MTA recorded, if it did
            smtp.sendmail(_return_path(raw), ["helpdesk@support.example.com"], raw)
    # IMAP cannot carry NUL (RFC 3501 §4.3): Dovecot serves it as 0x80, in 2 corpus mails
    by_smtp = _outcomes(smtp_app, lambda raw: raw.replace(b"\0", b"\x80"))
    assert set(by_imap) == set(by_smtp)          # the same bytes were stored
    differing = {digest: (by_imap[digest], by_smtp[digest]) for digest in by_imap
                 if by_imap[digest] != by_smtp[digest]}
    print(f"\ncorpus through IMAP: {len(mails)} mails, {len(by_imap)} distinct: "
          f"{dict(Counter(o for o, _ in by_imap.values()))}; differing from SMTP: "
          f"{len(differing)}")
    names = {hashlib.sha256(raw.replace(b"\0", b"\x80")).hexdigest(): n for n, raw in mails}
    print("differing (IMAP, SMTP):", {names.get(d): v for d, v in differing.items()})
    # Only what the envelope explains. IMAP has no envelope recipient: a mail naming none of
    # ours in To/Cc has no route. IMAP has no envelope sender: without a Return-Path, the
    # loop rules judge a daemon's mail by its headers (a bounce), where SMTP had a sender.
    assert all(imap == ("rejected", "no-route") or (imap == ("ignored", "bounce")
                                                   and smtp[0] == "created")
               for imap, smtp in differing.values()), differing
    assert len(differing) <= 0.02 * len(by_imap)


def _return_path(raw: bytes) -> str:
    """The envelope sender as far as the mail tells: Return-Path (the delivering MTA's
    record), else an mbox From_ line, else the From header (what most senders use)."""
    headers = BytesHeaderParser().parsebytes(raw)
    if headers.get("Return-Path") is not None:
        return parseaddr(str(headers["Return-Path"]))[1]
    if raw.startswith(b"From "):
        return raw.split()[1].decode("ascii", "replace").strip("<>")
    return parseaddr(str(headers.get("From", "")))[1] or "sender@customer.example"


def empty_database(app: App) -> None:
    from sqlalchemy import inspect
    from sqlmodel import SQLModel

    existing = set(inspect(app.db.engine).get_table_names())
    with app.db.write() as session:
        for table in reversed(SQLModel.metadata.sorted_tables):
            if table.name in existing:
                session.execute(table.delete())


def _outcomes(app: App, as_imap_serves: Callable[[bytes], bytes] = bytes
              ) -> dict[str, tuple[str, str]]:
    """sha256 of the stored bytes (as IMAP would serve them) -> (outcome, rule)."""
    results = process_all(app)
    assert all(r.outcome != "quarantined" for r in results)
    with app.db.read() as session:
        rows = session.execute(select(_received.c.raw, _received.c.outcome, _received.c.rule)
                               .order_by(_received.c.id))
        outcomes: dict[str, tuple[str, str]] = {}
        for row in rows:   # a later identical copy (SMTP stores each) is the first's duplicate
            outcomes.setdefault(hashlib.sha256(as_imap_serves(row.raw)).hexdigest(),
                                (row.outcome, row.rule))
        return outcomes


def test_imported_mail_is_counted_once_as_received_from_imap(dovecot: Dovecot, user: str,
                                                              make_app: Callable[..., App]
                                                              ) -> None:
    """`ticketgw_received_total{source="imap"}` counts what the import committed; a check
    that finds nothing new counts nothing."""
    from gateway.observe.metrics import REGISTRY

    def counted() -> float:
        return REGISTRY.get_sample_value("ticketgw_received_total", {"source": "imap"}) or 0.0

    app = make_app(entry(dovecot, user))
    before = counted()
    dovecot.append(user, "INBOX", mail(1), mail(2))
    assert poller_for(app).check_once().stored == 2
    assert counted() - before == 2 == len(stored(app))
    assert poller_for(app).check_once().stored == 0
    assert counted() - before == 2
