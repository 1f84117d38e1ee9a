"""Content-addressed attachment storage on disk: DATA_DIR/attachments/ab/cd/<sha256>.

Guarantees:
- `put` writes to a temporary file in the same directory, fsyncs it, renames it into place
  and fsyncs the directory, so a blob file is either complete or absent, also after a power
  loss; identical content is stored once. Files are mode 0640.
- The file is written *before* the database row that references it commits; a rollback can
  leave an unreferenced file behind (harmless; a sweep can remove it), never a row without
  its file.
- Content is streamed and hashed in chunks: memory stays flat whatever the size.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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
        self.root.mkdir(parents=True, exist_ok=True)
        digest, size = hashlib.sha256(), 0
        # not a context manager: the file must outlive the `with` to be renamed into place
        handle = tempfile.NamedTemporaryFile(  # noqa: SIM115
            dir=self.root, prefix=".incoming-", delete=False)
        try:
            with handle:
                for chunk in chunks:
                    digest.update(chunk)
                    size += len(chunk)
                    handle.write(chunk)
                handle.flush()
                os.fsync(handle.fileno())
            target = self.path_for(digest.hexdigest())
            if target.exists():
                os.unlink(handle.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.chmod(handle.name, FILE_MODE)
                os.replace(handle.name, target)
                _fsync_directory(target.parent)   # the rename itself must survive a crash
        except BaseException:
            if os.path.exists(handle.name):
                os.unlink(handle.name)
            raise
        return StoredBlob(digest.hexdigest(), size)

    def open(self, sha256: str) -> BinaryIO:
        return self.path_for(sha256).open("rb")


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
