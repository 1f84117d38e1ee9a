"""The blob store's contract: content-addressed attachment storage, whatever holds it.

In: content (bytes, chunks, or a receiver's staging file). Out: its SHA-256 and size, and
later a binary handle that streams it back. Two backends keep this contract: a local
directory (`blob_files.FileBlobStore`, the default) and S3-compatible object storage
(`blob_s3.S3BlobStore`, which lets several hosts share the files); `blob_backends` picks
one from the configuration.

Guarantees, on every backend:
- A blob is either complete under its key (its SHA-256) or absent, also after a crash or a
  failed upload; identical content is stored once.
- Content is written *before* the database row that references it commits; a rollback can
  leave an unreferenced blob behind (harmless: `stored_before` lets the sweep find it),
  never a row without its blob.
- Content is streamed in chunks on the way in and out: memory stays flat whatever the size.
  Everything on the way in first goes to a staging file in a local directory (`spool`),
  hashed while it is written; `adopt` then puts the finished file under its digest.
- A store that cannot be reached or refuses raises `BlobStoreError`, an `OSError`, so the
  callers that turn a full disk into "try again later" (SMTP 4xx, `ingest` exit 75) do the
  same for an object store that is down. A blob that is not there raises
  `FileNotFoundError`.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, BinaryIO

from sqlmodel import Session

from gateway.store.models import Blob, table_of, utcnow
from gateway.store.upsert import upsert_for

CHUNK = 1024 * 1024
STAGING_PREFIX = ".incoming-"
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class StoredBlob:
    sha256: str
    size: int


class BlobStoreError(OSError):
    """The blob store could not be reached or refused the operation (try again later)."""


def check_digest(sha256: str) -> str:
    """`sha256` if it is a lower-case SHA-256 hex digest, else ValueError (never a path)."""
    if len(sha256) != 64 or not set(sha256) <= _HEX:
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return sha256


class BlobStore(ABC):
    """What every backend provides. `spool` is a local directory for staging files."""

    spool: Path
    # fsync a staging file before `adopt`: the local store renames it into place (so it
    # must be durable first); an object store uploads it and the upload is what counts
    durable_staging: bool = True

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

    def staging_file(self) -> IO[bytes]:
        """A new temporary file in `spool` (`.incoming-*`), for a receiver that hashes while
        it writes; the caller adopts it or removes it."""
        self.spool.mkdir(parents=True, exist_ok=True)
        # not a context manager: the caller decides when it is closed and where it goes
        return tempfile.NamedTemporaryFile(dir=self.spool, prefix=STAGING_PREFIX, delete=False)

    def remove_stale_staging(self, cutoff: datetime) -> int:
        """Delete staging files last written before `cutoff` (left by a crash); how many."""
        removed = 0
        for path in self.spool.glob(STAGING_PREFIX + "*"):
            try:
                if path.stat().st_mtime < cutoff.timestamp():
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue                       # finished or discarded meanwhile
        return removed

    @abstractmethod
    def adopt(self, staged: Path, sha256: str) -> None:
        """Store a complete staging file as blob `sha256` (or drop it when that content is
        stored already). The staging file is gone when this returns; on an exception it may
        remain, and the caller removes it."""

    @abstractmethod
    def open(self, sha256: str) -> BinaryIO:
        """The blob's content, streamed: read it in chunks, close it when done."""

    @abstractmethod
    def remove(self, sha256: str) -> None:
        """Delete a blob (its rows must be gone in the same transaction); no error if absent."""

    @abstractmethod
    def stored_before(self, cutoff: datetime) -> Iterator[str]:
        """The digests of the blobs written before `cutoff`, for the sweep of blobs that no
        row references (`cutoff` leaves out what is being stored right now)."""


class BlobWriter:
    """Hashes content into a staging file; `finish` adopts it under its digest."""

    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self._handle = store.staging_file()
        self._digest = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes | bytearray | memoryview) -> None:
        self._digest.update(chunk)
        self.size += len(chunk)
        self._handle.write(chunk)

    def finish(self) -> StoredBlob:
        """Store the content (`BlobStore.adopt`); on any failure the staging file is removed
        and the error raised."""
        try:
            with self._handle:
                self._handle.flush()
                if self.store.durable_staging:
                    os.fsync(self._handle.fileno())
            self.store.adopt(Path(self._handle.name), self._digest.hexdigest())
        except BaseException:
            self.discard()
            raise
        return StoredBlob(self._digest.hexdigest(), self.size)

    def discard(self) -> None:
        self._handle.close()
        if os.path.exists(self._handle.name):
            os.unlink(self._handle.name)


def record_blob(session: Session, blob: StoredBlob) -> None:
    """Insert the blob's row unless it is there already (same content, same row)."""
    row = {"sha256": blob.sha256, "size": blob.size, "created": utcnow()}
    session.execute(upsert_for(session)(table_of(Blob)).values(**row)
                    .on_conflict_do_nothing(index_elements=["sha256"]))
