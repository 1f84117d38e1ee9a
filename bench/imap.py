"""Benchmark: mails imported per second from a Dovecot folder, as a ratio to a plain
imapclient loop that fetches the same mails from the same server without processing them.

What is measured, per backend (SQLite in a temp dir, PostgreSQL in a fresh database):
- baseline: `IMAPClient` connect, STARTTLS, LOGIN, SELECT, `UID SEARCH ALL`, then
            `UID FETCH (BODY.PEEK[])` in batches of 100 (the gateway's batch size), LOGOUT.
            The bytes are only counted.
- gateway:  `MailboxPoller.check_once()` of gateway/inbound/imap/poller.py, as `ticketgw serve` runs
            it: connect, STARTTLS, LOGIN, SELECT, cursor, search, RFC822.SIZE, then per batch
            of 100: fetch, one transaction with the `received_mail` rows and their import
            records, the `after` action on the server (`--after`, default `seen`), the batch
            marked done; the mailbox state recorded; LOGOUT. Parsing and tickets (the worker)
            are not included: this is the import.
The clock runs from before the connection to after the logout, for both.

The folder: N mails (~3.9 KiB of text each, a distinct Message-ID and subject each) appended
once to a template user of a throwaway Dovecot (tests/integration/dovecot.py, as the tests
use it: 127.0.0.1, STARTTLS with a self-signed certificate). Before every run its mail store
is copied to a new user, so each run (baseline or gateway) reads an identical, untouched
folder that Dovecot has indexed the same way. The gateway imports each run under its own
mailbox name (nothing is recognised as already stored).

Rounds alternate baseline, gateway; the table gives medians and
`ratio = median gateway mails/s / median baseline mails/s`, and `+ms/mail`, the time a mail
costs on top of fetching it. Each gateway run checks that it stored exactly N new mails.

Run:  .venv/bin/python bench/imap.py [--backends sqlite,postgresql] [--count 2000]
      [--rounds 5] [--after seen|delete|move:Processed] [--pg-admin-url URL]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import ssl
import statistics
import sys
import tempfile
import textwrap
import time
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

from imapclient import IMAPClient
from sqlalchemy import func, select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))   # tests/integration/dovecot.py: the same Dovecot as the tests

from scratch import scratch_database  # noqa: E402 - bench/scratch.py, the run's own database

from gateway.app import App, build_app, prepare_database  # noqa: E402
from gateway.config.loading import settings_from_mapping  # noqa: E402
from gateway.config.settings import DATABASE_URL_ENV, MailboxSettings  # noqa: E402
from gateway.inbound.imap.poller import BATCH_MESSAGES, MailboxPoller  # noqa: E402
from gateway.store.models import ReceivedMail, table_of  # noqa: E402
from tests.integration.dovecot import INSTALL_HINT, PASSWORD, Dovecot, dovecot_binary  # noqa: E402

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PASSWORD_ENV = "TGW_BENCH_IMAP_PASSWORD"
_received = table_of(ReceivedMail)
_BODY = ("Hello support team, since this morning the printer on the third floor shows error "
         "50.4 and stops after every second page. We already switched it off and on again "
         "and replaced the toner cartridge, but nothing changed. ") * 20


def make_mail(n: int) -> bytes:
    body = "\r\n".join(textwrap.wrap(_BODY[:3800], 76))
    return (f"From: Customer {n % 50} <customer{n % 50}@customer.example>\r\n"
            f"To: Service Desk <helpdesk@support.example.com>\r\n"
            f"Subject: Printer on floor 3: error 50.4 (#{n})\r\n"
            f"Message-ID: <bench.{n}@customer.example>\r\n"
            f"Date: {format_datetime(datetime.now(UTC))}\r\n"
            "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"\r\n{body}\r\n\r\nRegards\r\nCustomer {n % 50}\r\n").encode()


class Folders:
    """A Dovecot with a template user holding the N mails; `fresh_user()` copies them."""

    def __init__(self, server: Dovecot, count: int) -> None:
        self.server = server
        self.template = server.add_user()
        mails = [make_mail(n) for n in range(count)]
        with server.client(self.template) as client:
            for start in range(0, count, 200):
                client.multiappend("INBOX", mails[start:start + 200])
            client.select_folder("INBOX")             # let Dovecot build its index once
            client.fetch(client.search("ALL")[:1], ["RFC822.SIZE"])
        self.bytes = sum(len(m) for m in mails)

    def fresh_user(self) -> str:
        user = self.server.add_user()
        home = self.server.root / "home"
        shutil.copytree(home / self.template, home / user, symlinks=True)
        for path in [home / user, *(home / user).rglob("*")]:
            shutil.chown(path, "dovecot", "dovecot")
        return user


def run_baseline(server: Dovecot, user: str, count: int) -> float:
    start = time.perf_counter()
    client = IMAPClient(server.host, server.port, ssl=False, timeout=60)
    client.starttls(ssl.create_default_context())
    client.login(user, PASSWORD)
    client.select_folder("INBOX")
    uids = sorted(client.search("ALL"))
    size = 0
    for first in range(0, len(uids), BATCH_MESSAGES):
        response = client.fetch(uids[first:first + BATCH_MESSAGES], ["BODY.PEEK[]"])
        size += sum(len(data[b"BODY[]"]) for data in response.values())
    client.logout()
    elapsed = time.perf_counter() - start
    if len(uids) != count or not size:
        raise SystemExit(f"baseline fetched {len(uids)} of {count} mails")
    return count / elapsed


def run_gateway(app: App, server: Dovecot, user: str, count: int, after: str) -> float:
    before = _count(app)
    mailbox = MailboxSettings(name=f"bench-{secrets.token_hex(4)}",
                              url=f"imap://{server.host}:{server.port}/INBOX", user=user,
                              password_env=PASSWORD_ENV, after=after)
    start = time.perf_counter()
    result = MailboxPoller(app.db, app.blobs, mailbox,
                           base_dir=app.settings.base_dir).check_once()
    elapsed = time.perf_counter() - start
    stored = _count(app) - before
    if (stored, result.stored, result.backlog) != (count, count, 0):
        raise SystemExit(f"the gateway stored {stored} of {count} mails ({result})")
    return count / elapsed


def _count(app: App) -> int:
    with app.db.read() as session:
        return int(session.execute(select(func.count()).select_from(_received)).scalar_one())



def database(backend: str, tmp: Path, admin_url: str) -> AbstractContextManager[str]:
    return scratch_database(backend, tmp, admin_url, sqlite_name="bench.db")


def bench_backend(backend: str, folders: Folders, args: argparse.Namespace) -> dict[str, float]:
    rates: dict[str, list[float]] = {"baseline": [], "gateway": []}
    with tempfile.TemporaryDirectory(prefix="tgw-bench-") as tmp_name, \
            database(backend, Path(tmp_name), args.pg_admin_url) as url:
        settings = settings_from_mapping({"database": {"url": url},
                                          "storage": {"data_dir": tmp_name}},
                                         "bench/imap.py", Path(tmp_name))
        app = build_app(settings)
        prepare_database(app, migrate=True)
        server = folders.server

        def run(kind: str) -> float:
            user = folders.fresh_user()           # before the clock
            if kind == "baseline":
                return run_baseline(server, user, args.count)
            return run_gateway(app, server, user, args.count, args.after)

        run("baseline")                           # warm-up: connections, caches
        run("gateway")
        for round_no in range(1, args.rounds + 1):
            for kind in rates:
                rates[kind].append(run(kind))
            print(f"  {backend} round {round_no}/{args.rounds}: " + ", ".join(
                f"{kind} {rates[kind][-1]:7.1f}/s" for kind in rates), file=sys.stderr)
        app.close()
    return {kind: statistics.median(values) for kind, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--count", type=int, default=2000, help="mails in the folder")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--after", default="seen", help="seen, delete or move:FOLDER")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    if set(backends) - {"sqlite", "postgresql"} or args.count < 1 or args.rounds < 1:
        parser.error("check --backends, --count and --rounds")
    if dovecot_binary() is None:
        raise SystemExit(INSTALL_HINT)
    os.environ.pop(DATABASE_URL_ENV, None)
    server = Dovecot().start()
    try:
        os.environ["SSL_CERT_FILE"] = str(server.cafile)    # trust the throwaway certificate
        os.environ[PASSWORD_ENV] = PASSWORD
        folders = Folders(server, args.count)
        results = {backend: bench_backend(backend, folders, args) for backend in backends}
    finally:
        server.cleanup()
    print(f"\n{args.count} mails in the folder ({folders.bytes / args.count / 1024:.1f} KiB "
          f"each), after = {args.after}, {args.rounds} rounds, medians")
    print(f"{'backend':<11} {'baseline mails/s':>16} {'gateway mails/s':>15} {'ratio':>5} "
          f"{'+ms/mail':>8}")
    for backend, medians in results.items():
        baseline, gateway = medians["baseline"], medians["gateway"]
        print(f"{backend:<11} {baseline:>16.1f} {gateway:>15.1f} {gateway / baseline:>5.2f} "
              f"{1000 / gateway - 1000 / baseline:>8.2f}")


if __name__ == "__main__":
    main()
