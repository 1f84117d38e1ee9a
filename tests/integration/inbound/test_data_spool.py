"""RawSpool against a real blob store: what is kept of a mail, by size."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from gateway.inbound.data_reader import TRUNCATED_KEEP, RawSpool
from gateway.inbound.intake import RAW_IN_ROW_LIMIT, SpooledRaw
from gateway.store.blob_files import FileBlobStore

MAIL = random.Random(1).randbytes(3 * 1024 * 1024)


def spool(tmp_path: Path, limit: int, oversize_limit: int, piece: int) -> RawSpool:
    collected = RawSpool(FileBlobStore(tmp_path / "blobs"), limit, oversize_limit)
    for start in range(0, len(MAIL), piece):
        collected.write(MAIL[start:start + piece])
    return collected


def leftovers(tmp_path: Path) -> list[str]:
    root = tmp_path / "blobs"
    return [p.name for p in root.iterdir() if p.name.startswith(".incoming-")] \
        if root.exists() else []


@pytest.mark.parametrize("piece", [1000, 64 * 1024, 4 * 1024 * 1024])
@pytest.mark.parametrize("limit", [512 * 1024, 2 * 1024 * 1024])   # before or after spilling
def test_over_the_limit_only_the_beginning_is_kept(tmp_path: Path, piece: int,
                                                    limit: int) -> None:
    collected = spool(tmp_path, limit, 10 * 1024 * 1024, piece)
    assert collected.truncated and not collected.too_big
    assert collected.size == len(MAIL)
    assert collected.finish() == MAIL[:TRUNCATED_KEEP]
    assert leftovers(tmp_path) == []


def test_under_the_limit_a_large_mail_is_spooled_whole(tmp_path: Path) -> None:
    collected = spool(tmp_path, 5 * 1024 * 1024, 0, 64 * 1024)
    stored = collected.finish()
    assert isinstance(stored, SpooledRaw) and stored.size == len(MAIL) > RAW_IN_ROW_LIMIT
    assert FileBlobStore(tmp_path / "blobs").path_for(stored.sha256).read_bytes() == MAIL
    assert leftovers(tmp_path) == []


def test_over_the_hard_limit_nothing_is_kept(tmp_path: Path) -> None:
    collected = spool(tmp_path, 512 * 1024, 2 * 1024 * 1024, 64 * 1024)
    assert collected.too_big
    assert leftovers(tmp_path) == []
