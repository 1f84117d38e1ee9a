"""IMAP import: one poller per `[[mailbox]]`, each in its own thread (imapclient blocks).

In: a mailbox's settings, the database and blob store it stores into, and the config file's
directory (where `oauth2_token_command` runs). Out: every mail of the folder stored once in
`received_mail` (source `imap`), then marked `\\Seen`, deleted or moved as `after` says.

Guarantees:
- **Stored before the mailbox is changed.** Messages are fetched with `BODY.PEEK[]`, which
  never sets `\\Seen` (RFC 3501 §6.4.5); the raw bytes and the import record are committed
  in one transaction (`state.store_batch`); only then is the mailbox changed. A crash in
  between leaves the mail in the folder and recorded: the next check only finishes the
  change, it does not store the mail again.
- **Exactly once.** A message is identified by (mailbox, folder, UIDVALIDITY, UID), and
  recognised by the SHA-256 of its bytes: after a UIDVALIDITY change (RFC 3501 §2.3.1.1) every
  message is looked at again, stored ones are only recorded and marked, nothing is deleted
  that is not stored. `\\Seen` on the server is never what we rely on.
- **Never destroys.** Deleting is `\\Deleted` + `UID EXPUNGE` of our own UIDs (RFC 4315); moving
  is `UID MOVE` (RFC 6851), else `UID COPY` + `\\Deleted` + `UID EXPUNGE`. A bare `EXPUNGE`
  (which would also remove mail other people flagged) is never sent: without UIDPLUS the
  message stays flagged `\\Deleted`, and a warning says so.
- **Push and safety net.** With IDLE (RFC 2177) new mail is imported within seconds; IDLE is
  renewed after `min(poll_interval, 24 min)`, well before the 29-minute limit, and every
  renewal runs a full check. Without IDLE the folder is checked every `poll_interval`, with
  a NOOP every 4 minutes in between to keep the session (RFC 3501 §5.4). See `wait`.
- **Failures.** Every socket operation has a timeout. Any failure ends the session; the
  poller reconnects after a delay with jitter that doubles per failure (`backoff`: 1 s
  to 5 min; a refused login 60 s to 30 min, so a wrong password does not hammer the
  server). The failure is logged and recorded for `ticketgw mailbox status`, /healthz and
  /metrics. A message the server will not deliver, or an `after` action it refuses, is
  reported but ends nothing: the other mail is imported, and that one is tried again at
  the next check.
- **One poller per mailbox.** On PostgreSQL the poller holds a session advisory lock on a
  dedicated connection while it polls; other instances stand by and take over within
  seconds when it dies. Even two pollers at once could not store a mail twice (the import
  record's unique key). SQLite is one instance by nature: no lock.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from imapclient import DELETED, SEEN, IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from gateway.config.settings import MailboxSettings
from gateway.errors import TemporaryFailure
from gateway.inbound.imap import state
from gateway.inbound.imap.backoff import Backoff
from gateway.inbound.imap.connect import (
    COMMAND_TIMEOUT,
    ImapFailure,
    close_quietly,
    open_session,
    target_of,
)
from gateway.inbound.imap.fetch import fetch_batches, uid_set
from gateway.inbound.imap.lock import MailboxLock
from gateway.inbound.imap.state import AlreadyRecorded, Stored, UidSpace
from gateway.inbound.imap.wait import IDLE_RENEW, mail_arrived_during_check, wait_for_mail
from gateway.store.blobs import BlobStore
from gateway.store.db import Database

log = logging.getLogger(__name__)

BATCH_MESSAGES = 100        # per FETCH and per transaction
BATCH_BYTES = 16 * 1024**2
STANDBY_RETRY = 5.0         # seconds between tries for the lock of another instance's mailbox


@dataclass(frozen=True)
class CheckResult:
    messages: int            # in the folder when the check began
    stored: int              # new received_mail rows
    duplicates: int          # recognised as stored before (by content)
    changed: int             # messages marked, deleted or moved
    backlog: int             # left for the next check (unfetchable, or stopped)


class MailboxPoller:
    """Imports one mailbox until stopped: `start()` runs it in a thread, `stop()` ends it
    within about a second (a batch being stored is finished first)."""

    def __init__(self, db: Database, blobs: BlobStore, mailbox: MailboxSettings, *,
                 base_dir: str, wake: Callable[[], None] | None = None,
                 ssl_context: ssl.SSLContext | None = None,
                 backoff: Backoff | None = None, timeout: float = COMMAND_TIMEOUT,
                 idle_renew: float = IDLE_RENEW, use_idle: bool = True,
                 standby_retry: float = STANDBY_RETRY,
                 on_committed: Callable[[Stored], None] | None = None) -> None:
        self.db, self.blobs, self.mailbox, self.name = db, blobs, mailbox, mailbox.name
        self.base_dir = base_dir                # the config file's: oauth2_token_command
        self.target = target_of(mailbox)
        self.after, _, self.move_to = mailbox.after.partition(":")
        self.wake, self.ssl_context, self.timeout = wake, ssl_context, timeout
        self.backoff = backoff or Backoff()
        self.idle_renew, self.use_idle, self.standby_retry = idle_renew, use_idle, standby_retry
        self.on_committed = on_committed        # tests: "crash" between commit and change
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self.lock = MailboxLock(db, mailbox.name)
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.failures = 0
        self._once: set[str] = set()      # warnings given, folders checked
        self._problems: list[str] = []     # of this check: reported, not fatal

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, name=f"ticketgw-imap-{self.name}",
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)

    def run(self) -> None:
        log.info("mailbox %s: importing from %s as %r, then %s", self.name,
                 self.target.describe(), self.mailbox.user, self.mailbox.after)
        standing_by = False
        try:
            while not self.stop_event.is_set():
                if not self.lock.acquire():
                    if not standing_by:
                        log.info("mailbox %s: polled by another instance; standing by",
                                 self.name)
                    standing_by = True
                    self.stop_event.wait(self.standby_retry)
                    continue
                standing_by = False
                try:
                    self._session()
                except ImapFailure as exc:
                    self.failures += 1
                    delay = self.backoff.delay(exc.kind, self.failures)
                    self._report(exc, delay)
                    self.stop_event.wait(delay)
        finally:
            self.lock.release()
            log.info("mailbox %s: stopped", self.name)

    def _report(self, exc: ImapFailure, delay: float) -> None:
        level = logging.ERROR if exc.kind == "auth" else logging.WARNING
        log.log(level, "mailbox %s: %s failure (%d in a row): %s; next attempt in %.1f s",
                self.name, exc.kind, self.failures, exc, delay)
        try:
            state.record_failure(self.db, self.name, kind=exc.kind, message=str(exc),
                                 owner=self.owner)
        except Exception:   # the database is what failed: the log has it
            log.debug("mailbox %s: could not record the failure", self.name, exc_info=True)

    # -- one session ---------------------------------------------------------------------------
    def connect(self) -> IMAPClient:
        self._once.discard("move-target")   # a new session looks at the target folder again
        return open_session(self.mailbox, self.target, base_dir=self.base_dir,
                            ssl_context=self.ssl_context, timeout=self.timeout)

    def _session(self) -> None:
        """Connect, then check and wait (IDLE or NOOP) until stopped or the lock is lost;
        every failure comes out as `ImapFailure`."""
        client = self.connect()
        try:
            while not self.stop_event.is_set():
                if not self.lock.alive():
                    log.warning("mailbox %s: lost the lock; standing by", self.name)
                    return
                try:
                    self.check(client)
                except AlreadyRecorded:
                    log.info("mailbox %s: another instance stored the same UIDs; "
                             "checking again", self.name)
                    self.stop_event.wait(random.uniform(0.1, 0.5))   # no tight loop
                    continue
                self.failures = 0
                if mail_arrived_during_check(client):
                    continue   # it came while we checked: IDLE would not announce it
                wait_for_mail(client, self.stop_event,
                              poll_interval=float(self.mailbox.poll_interval),
                              idle_renew=self.idle_renew, use_idle=self.use_idle)
        except ImapFailure:
            raise
        except IMAPClientAbortError as exc:
            raise ImapFailure("connection", f"connection lost: {exc}") from None
        except (OSError, EOFError) as exc:
            raise ImapFailure("connection", f"connection lost: {exc or type(exc).__name__}"
                              ) from None
        except IMAPClientError as exc:
            raise ImapFailure("connection", f"server said: {exc}") from None
        except TemporaryFailure as exc:
            raise ImapFailure("database", str(exc)) from None
        except Exception as exc:   # a bug: keep polling, but say so loudly
            log.exception("mailbox %s: unexpected error", self.name)
            raise ImapFailure("internal", f"{type(exc).__name__}: {exc}") from None
        finally:
            close_quietly(client, logout=self.stop_event.is_set())

    def check_once(self) -> CheckResult:
        """Connect, run one full check, log out (for tests and tools; no lock taken)."""
        client = self.connect()
        try:
            return self.check(client)
        finally:
            close_quietly(client, logout=True)

    # -- the check -------------------------------------------------------------------------
    def check(self, client: IMAPClient) -> CheckResult:
        """One complete pass over the folder: finish pending changes, then store every
        message above the cursor that is not recorded, batch by batch, each batch
        committed before its messages are changed."""
        try:
            selected = client.select_folder(self.target.folder)
        except IMAPClientAbortError:
            raise
        except IMAPClientError as exc:
            raise ImapFailure("folder", f"cannot open folder {self.target.folder!r}: "
                                        f"{exc}") from None
        if self.after == "move" and "move-target" not in self._once:
            if not client.folder_exists(self.move_to):
                log.info("mailbox %s: creating folder %r", self.name, self.move_to)
                client.create_folder(self.move_to)
            self._once.add("move-target")
        messages = int(selected[b"EXISTS"])
        space = UidSpace(self.name, self.target.folder, int(selected[b"UIDVALIDITY"]))
        cursor = state.load_cursor(self.db, self.name)
        if (cursor.folder, cursor.uidvalidity) != (space.folder, space.uidvalidity):
            if cursor.uidvalidity is not None:
                log.warning("mailbox %s: %s UIDVALIDITY %s, now %s %s: looking at every "
                            "message again (stored ones are recognised by content)",
                            self.name, cursor.folder, cursor.uidvalidity, space.folder,
                            space.uidvalidity)
            cursor = state.reset_cursor(self.db, space)
        self._problems = []
        changed = self._finish_pending(client, space)
        candidates: list[int] = []
        if messages:
            candidates = sorted(uid for uid in client.search(["UID", f"{cursor.last_uid + 1}:*"])
                                if uid > cursor.last_uid)
        known = state.recorded(self.db, space, candidates) if candidates else {}
        new = [uid for uid in candidates if uid not in known]
        mark = _Watermark(cursor.last_uid, candidates, set(known))
        stored = duplicates = 0
        left = len(new)
        stuck: list[int] = []
        for batch in fetch_batches(client, new, max_messages=BATCH_MESSAGES,
                                   max_bytes=BATCH_BYTES):
            if self.stop_event.is_set():
                break
            left -= len(batch.uids)
            stuck += batch.unfetchable
            result = state.store_batch(self.db, space, batch.fetched,
                                       last_uid=mark.advance([*batch.stored_uids, *batch.gone]),
                                       backlog=left + len(stuck), blobs=self.blobs)
            if self.on_committed is not None:
                self.on_committed(result)
            if self._change(client, result.uids):
                state.mark_done(self.db, space, result.uids)
                changed += len(result.uids)
            stored, duplicates = stored + len(result.mail_ids), duplicates + result.duplicates
            if result.mail_ids:
                log.info("mailbox %s: stored %d mail(s) (inbound %d-%d), %d duplicate(s); %s",
                         self.name, len(result.mail_ids), result.mail_ids[0],
                         result.mail_ids[-1], result.duplicates, self.mailbox.after)
                if self.wake is not None:
                    self.wake()
        backlog = left + len(stuck)
        state.record_success(self.db, self.name, messages=messages, backlog=backlog,
                             owner=self.owner)
        if stuck:
            self._problems.append(f"the server sent no content for UID(s) {uid_set(stuck)}; "
                                  "they stay in the folder and are tried again at every check")
        if self._problems:   # reported, but the session goes on: one bad message blocks none
            problem = "; ".join(self._problems)
            log.warning("mailbox %s: %s", self.name, problem)
            state.record_failure(self.db, self.name, kind="message", message=problem,
                                 owner=self.owner)
        return CheckResult(messages, stored, duplicates, changed, backlog)

    def _finish_pending(self, client: IMAPClient, space: UidSpace) -> int:
        """Carry out the `after` action for messages stored but not yet changed."""
        uids = state.pending(self.db, space)
        if not uids:
            return 0
        present = sorted(client.search(["UID", uid_set(uids)]))
        log.info("mailbox %s: finishing %d change(s) left by an earlier run", self.name,
                 len(present))
        if not self._change(client, present):
            return 0
        state.mark_done(self.db, space, uids)
        return len(present)

    def _change(self, client: IMAPClient, uids: Sequence[int]) -> bool:
        """Carry out `after` for these stored messages; False (and a problem to report) if
        the server refused: they stay recorded as not done and are tried again at the next
        check, while new mail is still imported."""
        if not uids:
            return True
        try:
            self._apply_after(client, uid_set(uids))
        except IMAPClientAbortError:
            raise
        except IMAPClientError as exc:
            self._problems.append(f"{self.mailbox.after} of UID(s) {uid_set(uids)} refused "
                                  f"({exc}); they are stored and tried again at the next check")
            self._once.discard("move-target")   # it may have been deleted: look again
            return False
        return True

    def _apply_after(self, client: IMAPClient, ids: str) -> None:
        """Mark, delete or move. Never a bare EXPUNGE."""
        if self.after == "seen":
            client.add_flags(ids, [SEEN], silent=True)
            return
        uidplus = client.has_capability("UIDPLUS")
        if self.after == "move":
            if client.has_capability("MOVE"):
                client.move(ids, self.move_to)
                return
            client.copy(ids, self.move_to)
        client.add_flags(ids, [DELETED], silent=True)
        if uidplus:
            client.uid_expunge(ids)
        elif "no-uidplus" not in self._once:
            self._once.add("no-uidplus")
            log.warning("mailbox %s: the server lacks UIDPLUS: imported mail is flagged "
                        "\\Deleted but not expunged (a bare EXPUNGE would also remove mail "
                        "others flagged)", self.name)


class _Watermark:
    """The highest UID below which every candidate is recorded (or gone): what the cursor
    may move to. It stops below a message that could not be fetched."""

    def __init__(self, last_uid: int, candidates: Sequence[int], handled: set[int]) -> None:
        self.value, self.candidates, self.handled, self.next = last_uid, candidates, handled, 0

    def advance(self, uids: Sequence[int]) -> int:
        self.handled.update(uids)
        while (self.next < len(self.candidates)
               and self.candidates[self.next] in self.handled):
            self.value = self.candidates[self.next]
            self.next += 1
        return self.value
