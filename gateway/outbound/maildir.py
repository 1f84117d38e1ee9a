"""The Maildir transport: each outbound mail becomes one file in a Maildir (`maildir:PATH`).

In: `send(envelope_from, recipients, raw)`. Out: a `DeliveryResult`: `sent` with the file's
path, or `temporary` with the error when the disk refused.

Guarantees: `raw` is written unchanged, byte for byte; `sent` is reported only once the
file is complete in `new/`: written to `tmp/`, fsynced, renamed into `new/` and the
directory fsynced. The Maildir (`tmp/`, `new/`, `cur/`) is created on first use. File names
are unique across processes and threads. `send` never raises for anything the disk does.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
from pathlib import Path

from gateway.outbound.transport import DeliveryResult


class MaildirTransport:
    """Writes each mail as one file into `PATH/new/`, byte for byte as it would go over the
    wire (CRLF line endings). Created on first use. Written to `tmp/`, fsynced, renamed into
    `new/` and the directory fsynced: a file in `new/` is always complete."""

    _counter = itertools.count()

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ready = False

    def __repr__(self) -> str:
        return f"maildir:{self.path}"

    def send(self, envelope_from: str, recipients: tuple[str, ...],
             raw: bytes) -> DeliveryResult:
        try:
            if not self._ready:
                for sub in ("tmp", "new", "cur"):
                    (self.path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
                self._ready = True
            name = self._unique_name()
            temporary, final = self.path / "tmp" / name, self.path / "new" / name
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(raw)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temporary, final)
            directory = os.open(self.path / "new", os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            return DeliveryResult("temporary", None, f"cannot write to the Maildir "
                                                     f"{self.path}: {exc}")
        return DeliveryResult("sent", None, f"written to {final}")

    def _unique_name(self) -> str:
        # the Maildir convention: time.M<usec>P<pid>Q<count>.host, plus randomness for threads
        now = time.time()
        host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        return (f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self._counter)}"
                f"R{os.urandom(4).hex()}.{host}")

    def close(self) -> None:
        return None
