"""Content-addressed attachment storage on disk: DATA_DIR/attachments/ab/cd/<sha256>.

Guarantees:
- `put` writes to a temporary file in the same directory, fsyncs it, renames it into place
  and fsyncs the directory, so a blob file is either complete or absent, also after a power
  loss; identical content is stored once. Files are mode 0640.
- The file is written *before* the database row that references it commits; a rollback can
  leave an unreferenced file behind (harmless; a sweep can remove it), never a row without
  its file.
- Content is streamed and hashed in chunks: memory stays flat whatever the size.
- Streamed uploads (the file exchange) are written by their receiver into `staging_file()`
  (a temporary file in the same directory, so the rename is atomic) and `adopt`ed inside the
  transaction that records them; a refused upload only ever leaves its staging file, which
  the receiver removes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO

from sqlmodel import Session

from gateway.store.models import Blob, table_of, utcnow
from gateway.store.upsert import upsert_for

CHUNK = 1024 * 1024
FILE_MODE = 0o640    # owner and group: instances sharing the directory share a group


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int


class BlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, sha256: str) -> Path:
        if len(sha256) != 64 or not all(c in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def put(self, data: bytes | Iterable[bytes]) -> StoredBlob:
        """Store content (bytes or an iterable of chunks); returns its digest and size."""
        chunks: Iterable[bytes] = [data] if isinstance(data, bytes) else data
        writer = self.writer()
        try:
            for chunk in chunks:
                writer.write(chunk)
        except BaseException:
            writer.discard()
            raise
        return writer.finish()

    def writer(self) -> BlobWriter:
        """Content that arrives piece by piece (mail from the network): `write` the pieces,
        then `finish` (stored as by `put`) or `discard`."""
        return BlobWriter(self)

    def open(self, sha256: str) -> BinaryIO:
        return self.path_for(sha256).open("rb")

    def staging_file(self) -> IO[bytes]:
        """A new temporary file beside the blobs (`.incoming-*`), for a receiver that hashes
        while it writes; the caller adopts it or removes it."""
        self.root.mkdir(parents=True, exist_ok=True)
        # not a context manager: the caller decides when it is closed and where it goes
        return tempfile.NamedTemporaryFile(dir=self.root, prefix=".incoming-", delete=False)

    def adopt(self, staged: Path, sha256: str) -> None:
        """Move a complete, fsynced staging file into place as blob `sha256` (or drop it
        when that content is stored already)."""
        target = self.path_for(sha256)
        if target.exists():
            staged.unlink()
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(staged, FILE_MODE)
        os.replace(staged, target)
        _fsync_directory(target.parent)

    def remove(self, sha256: str) -> None:
        """Delete a blob's file (its rows must be gone in the same transaction)."""
        self.path_for(sha256).unlink(missing_ok=True)


class BlobWriter:
    def __init__(self, store: BlobStore) -> None:
        self.store = store
        store.root.mkdir(parents=True, exist_ok=True)
        # not a context manager: the file must outlive the `with` to be renamed into place
        self._handle = tempfile.NamedTemporaryFile(  # noqa: SIM115
            dir=store.root, prefix=".incoming-", delete=False)
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self._digest.update(chunk)
        self.size += len(chunk)
        self._handle.write(chunk)

    def finish(self) -> StoredBlob:
        """Fsync, rename into place (or drop when the content is there already), fsync the
        directory; on any failure the temporary file is removed and the error raised."""
        try:
            with self._handle:
                self._handle.flush()
                os.fsync(self._handle.fileno())
            target = self.store.path_for(self._digest.hexdigest())
            if target.exists():
                os.unlink(self._handle.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(self._handle.name, FILE_MODE)
                os.replace(self._handle.name, target)
                _fsync_directory(target.parent)   # the rename itself must survive a crash
        except BaseException:
            self.discard()
            raise
        return StoredBlob(self._digest.hexdigest(), self.size)

    def discard(self) -> None:
        self._handle.close()
        if os.path.exists(self._handle.name):
            os.unlink(self._handle.name)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def record_blob(session: Session, blob: StoredBlob) -> None:
    """Insert the blob's row unless it is there already (same content, same row)."""
    row = {"sha256": blob.sha256, "size": blob.size, "created": utcnow()}
    session.execute(upsert_for(session)(table_of(Blob)).values(**row)
                    .on_conflict_do_nothing(index_elements=["sha256"]))
