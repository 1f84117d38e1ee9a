"""The Maildir transport on real files: a batch shares one directory fsync, its files are
named after their delivery keys, and a batch sent again replaces its own files."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.outbound.maildir import MaildirTransport, stable_name
from gateway.outbound.transport import Envelope


def envelope(n: int, text: str = "Hello") -> Envelope:
    raw = (f"From: support@support.example.com\r\nMessage-ID: <m.{n}@example.com>\r\n"
           f"Subject: mail {n}\r\n\r\n{text} {n}.\r\n").encode()
    return Envelope(f"ticketgw.{n}.abc{n}", "support@support.example.com",
                    ("max@acme.example",), raw)


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every fsync the transport makes, by what it synced ('file' or 'dir'); the real
    `os.fsync` still runs."""
    calls: list[str] = []
    real: Callable[[int], None] = os.fsync

    def counting(fd: int) -> None:
        calls.append("dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "file")
        real(fd)

    monkeypatch.setattr(os, "fsync", counting)
    return calls


def test_a_batch_is_written_with_stable_names_and_one_directory_fsync(
        tmp_path: Path, fsyncs: list[str]) -> None:
    transport = MaildirTransport(tmp_path / "box")
    batch = [envelope(n) for n in range(5)]
    results = transport.send_batch(batch)
    assert [r.outcome for r in results] == ["sent"] * 5
    assert fsyncs == ["file"] * 5 + ["dir"]            # 2 per mail before: 10
    new = tmp_path / "box" / "new"
    assert sorted(p.name for p in new.iterdir()) == sorted(e.key for e in batch)
    assert all((new / e.key).read_bytes() == e.raw for e in batch)
    assert [str(new / e.key) in r.text for e, r in zip(batch, results, strict=True)] == [True] * 5
    assert list((tmp_path / "box" / "tmp").iterdir()) == []


def test_a_batch_sent_again_replaces_its_own_files(tmp_path: Path) -> None:
    transport = MaildirTransport(tmp_path / "box")
    transport.send_batch([envelope(1), envelope(2)])
    again = transport.send_batch([envelope(1, "Again"), envelope(2, "Again"), envelope(3)])
    assert [r.outcome for r in again] == ["sent"] * 3
    new = tmp_path / "box" / "new"
    assert sorted(p.name for p in new.iterdir()) == ["ticketgw.1.abc1", "ticketgw.2.abc2",
                                                      "ticketgw.3.abc3"]
    assert (new / "ticketgw.1.abc1").read_bytes().endswith(b"Again 1.\r\n")


def test_a_file_a_reader_already_took_comes_back_in_new(tmp_path: Path) -> None:
    """What the docs say: only a file moved to cur/ before the resend is delivered twice."""
    transport = MaildirTransport(tmp_path / "box")
    transport.send_batch([envelope(1)])
    box = tmp_path / "box"
    os.rename(box / "new" / "ticketgw.1.abc1", box / "cur" / "ticketgw.1.abc1:2,S")
    transport.send_batch([envelope(1)])
    assert [p.name for p in (box / "new").iterdir()] == ["ticketgw.1.abc1"]
    assert [p.name for p in (box / "cur").iterdir()] == ["ticketgw.1.abc1:2,S"]


def test_a_mail_the_disk_refuses_does_not_hold_back_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transport = MaildirTransport(tmp_path / "box")
    real_replace = os.replace

    def refuse_the_second(source: Any, target: Any) -> None:
        if str(target).endswith("ticketgw.2.abc2"):
            raise OSError(28, "No space left on device")
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", refuse_the_second)
    results = transport.send_batch([envelope(1), envelope(2), envelope(3)])
    assert [r.outcome for r in results] == ["sent", "temporary", "sent"]
    assert "No space left on device" in results[1].text
    assert list((tmp_path / "box" / "tmp").iterdir()) == []     # the half-done file is gone
    assert sorted(p.name for p in (tmp_path / "box" / "new").iterdir()) == [
        "ticketgw.1.abc1", "ticketgw.3.abc3"]


def test_a_mail_the_disk_refuses_while_writing_does_not_hold_back_the_others(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first pass (every file written before any is fsynced): a write that fails
    leaves no file behind, and the rest of the batch is still fsynced and delivered."""
    transport = MaildirTransport(tmp_path / "box")
    real_write = os.write

    def full_at_the_second(fd: int, data: Any) -> int:
        if b"mail 2" in bytes(data):
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full_at_the_second)
    results = transport.send_batch([envelope(1), envelope(2), envelope(3)])
    assert [r.outcome for r in results] == ["sent", "temporary", "sent"]
    assert "No space left on device" in results[1].text
    assert list((tmp_path / "box" / "tmp").iterdir()) == []
    new = tmp_path / "box" / "new"
    assert sorted(p.name for p in new.iterdir()) == ["ticketgw.1.abc1", "ticketgw.3.abc3"]
    assert (new / "ticketgw.3.abc3").read_bytes() == envelope(3).raw


def test_a_failed_directory_fsync_reports_the_whole_batch_temporary(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    transport = MaildirTransport(tmp_path / "box")
    real: Callable[[int], None] = os.fsync

    def directory_fails(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(5, "Input/output error")
        real(fd)

    monkeypatch.setattr(os, "fsync", directory_fails)
    results = transport.send_batch([envelope(1), envelope(2)])
    assert [r.outcome for r in results] == ["temporary", "temporary"]
    assert all("Input/output error" in r.text for r in results)


def test_send_of_one_mail_keeps_a_unique_name(tmp_path: Path, fsyncs: list[str]) -> None:
    transport = MaildirTransport(tmp_path / "box")
    first = transport.send("a@example.com", ("b@example.com",), b"Subject: x\r\n\r\nx\r\n")
    second = transport.send("a@example.com", ("b@example.com",), b"Subject: x\r\n\r\nx\r\n")
    assert (first.outcome, second.outcome) == ("sent", "sent")
    assert len(list((tmp_path / "box" / "new").iterdir())) == 2
    assert fsyncs == ["file", "dir", "file", "dir"]


def test_stable_names_are_valid_maildir_names() -> None:
    assert stable_name("ticketgw.7.0a1b") == "ticketgw.7.0a1b"
    assert stable_name(".a/b:c\\d") == "\\056a\\057b\\072c\\134d"
    assert "/" not in stable_name("x/y") and ":" not in stable_name("x:2,S")
