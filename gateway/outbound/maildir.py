"""The Maildir transport: each outbound mail becomes one file in a Maildir (`maildir:PATH`).

In: `send(envelope_from, recipients, raw)`, or `send_batch(envelopes)` for a batch (up to
`batch_size`). Out: one `DeliveryResult` per mail: `sent` with the file's path, or
`temporary` with the error when the disk refused.

Guarantees:
- `raw` is written unchanged, byte for byte; a file in `new/` is always complete.
- `sent` is reported only once the file is durable in `new/`: written to a unique name in
  `tmp/`, fsynced, renamed into `new/`, and then `new/` fsynced. A batch shares that one
  directory fsync (every file is still fsynced by itself before its rename), so a batch of
  N mails costs N + 1 fsyncs instead of 2 N. A power cut or OS crash before the directory
  fsync may lose any of the batch's files in `new/`; none of them is reported `sent` yet,
  so the outbox sends them again. After it, every file of the batch survives.
- Stable names: a file sent through `send_batch` is named after its `Envelope.key` (the
  outbox row id and a digest of its Message-ID), the same on every attempt. A batch sent
  again (after a crash or an outage between the fsync and the outbox recording its
  results) replaces its own files in `new/` instead of adding copies. Only a file that a
  reader has already moved from `new/` to `cur/` (or deleted) in between comes back as a
  new file: that mail is then delivered twice. The name has no host or process in it, so a
  takeover by another instance on another host replaces the file too; the Message-ID
  digest keeps two databases that share the directory apart.
- `send` (one mail, no key) uses the classic unique name `time.M<usec>P<pid>Q<n>R<rand>.host`.
- The Maildir (`tmp/`, `new/`, `cur/`) is created on first use. `send` and `send_batch`
  never raise for anything the disk does: a mail that cannot be written is `temporary`, the
  others of its batch go on; a directory fsync that fails makes the whole batch
  `temporary`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.outbound.transport import DeliveryResult, Envelope
from gateway.store.blob_files import fsync_directory

BATCH_SIZE = 100        # more than the outbox leases at once: one directory fsync per batch


class MaildirTransport:
    """Writes each mail as one file into `PATH/new/`, byte for byte as it would go over the
    wire (CRLF line endings). Created on first use. Written to `tmp/`, fsynced, renamed into
    `new/`, and `new/` fsynced once per batch: a file in `new/` is always complete."""

    _counter = itertools.count()
    batch_size = BATCH_SIZE

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ready = False

    def __repr__(self) -> str:
        return f"maildir:{self.path}"

    def send(self, envelope_from: str, recipients: tuple[str, ...],
             raw: bytes) -> DeliveryResult:
        return self._write([(self._unique_name(), raw)])[0]

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[DeliveryResult]:
        return self._write([(stable_name(e.key), e.raw) for e in envelopes])

    def _write(self, mails: list[tuple[str, bytes]]) -> list[DeliveryResult]:
        """Each (name in `new/`, bytes) written to `tmp/`, fsynced, renamed into `new/`,
        then one fsync of `new/`; a result per mail. Two passes: first every file is
        written and its writeback started, then each is fsynced and renamed, so that the
        disk takes the batch's data together and the first fsync's journal commit covers
        most of the others (measured: 2.6x less wall and CPU time per file than writing
        and fsyncing one file after the other; bench/README.md, outbound)."""
        try:
            self._make_dirs()
        except OSError as exc:
            return [self._failed(exc)] * len(mails)
        results: list[DeliveryResult | None] = []
        written: list[tuple[int, Path, int]] = []      # (index, temporary path, open fd)
        for index, (_name, raw) in enumerate(mails):
            temporary = self.path / "tmp" / self._unique_name()
            try:
                written.append((index, temporary, _write_unsynced(temporary, raw)))
                results.append(None)
            except OSError as exc:
                results.append(self._failed(exc))
        for index, temporary, fd in written:
            try:
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                # replaces the file of an earlier attempt
                os.replace(temporary, self.path / "new" / mails[index][0])
            except OSError as exc:
                with contextlib.suppress(OSError):
                    temporary.unlink()
                results[index] = self._failed(exc)
        if any(result is None for result in results):
            try:
                fsync_directory(self.path / "new")
            except OSError as exc:
                return [result or self._failed(exc) for result in results]
        return [result or DeliveryResult("sent", None, f"written to {self.path / 'new' / name}")
                for result, (name, _) in zip(results, mails, strict=True)]

    def _make_dirs(self) -> None:
        if not self._ready:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
            self._ready = True

    def _failed(self, exc: OSError) -> DeliveryResult:
        return DeliveryResult("temporary", None, f"cannot write to the Maildir {self.path}: "
                                                 f"{exc}")

    def _unique_name(self) -> str:
        # the Maildir convention: time.M<usec>P<pid>Q<count>.host, plus randomness for threads
        now = time.time()
        return (f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self._counter)}"
                f"R{os.urandom(4).hex()}.{_host()}")

    def close(self) -> None:
        return None


def stable_name(key: str) -> str:
    """The file name in `new/` for a delivery key: the key with the characters a Maildir
    name cannot hold (`/`, `:`, a leading dot) escaped as the Maildir convention does."""
    name = key.replace("\\", "\\134").replace("/", "\\057").replace(":", "\\072")
    return "\\056" + name[1:] if name.startswith(".") else name


def _host() -> str:
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072")


def _write_unsynced(path: Path, raw: bytes) -> int:
    """Create `path` with `raw` and start its writeback; the open descriptor, for the
    caller to fsync and close. Nothing is left open or behind when it raises."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        if _START_WRITEBACK is not None:    # Linux: DONTNEED starts writing dirty pages
            _START_WRITEBACK(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return fd


_START_WRITEBACK = getattr(os, "posix_fadvise", None)
