"""The blob store in a local directory: DATA_DIR/attachments/ab/cd/<sha256> (the default).

Guarantees (beyond `blobs.BlobStore`'s):
- Staging files live in the same directory as the blobs, so `adopt` is a rename: the
  staging file is fsynced first (`durable_staging`), renamed into place, and the directory
  fsynced, so a blob file is complete or absent also after a power loss.
- Files are mode 0640: instances that share the directory (NFS) share a group.
- Failures are the file system's `OSError`s; a missing blob is `FileNotFoundError`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import BinaryIO

from gateway.store.blobs import BlobStore, check_digest

FILE_MODE = 0o640    # owner and group: instances sharing the directory share a group


class FileBlobStore(BlobStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        self.spool = root           # same file system: adopting is an atomic rename

    def path_for(self, sha256: str) -> Path:
        check_digest(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def open(self, sha256: str) -> BinaryIO:
        return self.path_for(sha256).open("rb")

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
        fsync_directory(target.parent)   # the rename itself must survive a crash

    def remove(self, sha256: str) -> None:
        self.path_for(sha256).unlink(missing_ok=True)

    def stored_before(self, cutoff: datetime) -> Iterator[str]:
        limit = cutoff.timestamp()
        for path in self.root.glob("[0-9a-f][0-9a-f]/[0-9a-f][0-9a-f]/*"):
            name = path.name
            try:
                if self.path_for(name) != path:
                    continue
            except ValueError:
                continue                 # not a blob (a stray file an operator left)
            try:
                if path.stat().st_mtime < limit:
                    yield name
            except FileNotFoundError:
                continue


def fsync_directory(path: Path) -> None:
    """Make a rename or a new file in `path` durable (fsync of the directory itself)."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
