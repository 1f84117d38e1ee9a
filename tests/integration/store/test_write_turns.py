"""SQLite write turns (gateway/store/priority.py): received mail goes before background
writes, across processes, and a writer that dies never blocks the others."""

from __future__ import annotations

import multiprocessing
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from gateway.errors import TemporaryFailure
from gateway.store.db import Database
from gateway.store.priority import WriteTurns


def _hold_in_child(path: str, held: Any, release: Any) -> None:
    with WriteTurns(Path(path)).turn():
        held.set()
        release.wait(30)


def _child(path: Path) -> tuple[Any, Any, Any]:
    context = multiprocessing.get_context("spawn")
    held, release = context.Event(), context.Event()
    child = context.Process(target=_hold_in_child, args=(str(path), held, release))
    child.start()
    assert held.wait(30), "the child did not take the turn"
    return child, held, release


def test_an_urgent_writer_goes_before_a_background_writer_that_came_later(
        tmp_path: Path) -> None:
    turns = WriteTurns(tmp_path / "gateway.db")
    order: list[str] = []
    child, _, release = _child(tmp_path / "gateway.db")

    def writer(name: str, urgent: bool) -> None:
        with turns.turn(urgent=urgent):
            order.append(name)

    urgent = threading.Thread(target=writer, args=("urgent", True))
    urgent.start()
    while not turns.urgent_waiting():
        time.sleep(0.001)
    background = threading.Thread(target=writer, args=("background", False))
    background.start()
    time.sleep(0.05)                      # the background writer is giving way by now
    release.set()
    for thread in (urgent, background):
        thread.join(10)
    child.join(10)
    assert order == ["urgent", "background"]
    assert not turns.urgent_waiting()


def test_a_turn_held_elsewhere_times_out_cleanly_then_is_taken(tmp_path: Path) -> None:
    turns = WriteTurns(tmp_path / "gateway.db")
    child, _, release = _child(tmp_path / "gateway.db")
    try:
        with (pytest.raises(TemporaryFailure, match="no write turn"),
              turns.turn(urgent=True, timeout=0.2)):
            pass
        assert not turns.urgent_waiting()          # giving up ends the announcement
        release.set()
        with turns.turn(urgent=True, timeout=10):
            pass
    finally:
        release.set()
        child.join(10)


def test_a_killed_holder_does_not_block_the_others(tmp_path: Path) -> None:
    turns = WriteTurns(tmp_path / "gateway.db")
    child, _, _ = _child(tmp_path / "gateway.db")
    child.kill()
    child.join(10)
    with turns.turn(urgent=True, timeout=2):       # the kernel released the dead one's lock
        pass


def test_sqlite_writes_wait_for_the_turn_and_postgresql_takes_none(tmp_path: Path) -> None:
    sqlite = Database(f"sqlite:///{tmp_path / 'gateway.db'}")
    assert sqlite.turns is not None
    done = threading.Event()

    def write() -> None:
        with sqlite.write() as session:
            session.execute(text("SELECT 1"))
        done.set()

    child, _, release = _child(tmp_path / "gateway.db")
    try:
        writer = threading.Thread(target=write)
        writer.start()
        assert not done.wait(0.3)          # the other process has the turn
        release.set()
        assert done.wait(10)
        writer.join(10)
    finally:
        release.set()
        child.join(10)
        sqlite.dispose()
    assert Database("postgresql+psycopg://nobody@127.0.0.1:1/none").turns is None


@pytest.mark.parametrize("patient", [False, True])
def test_a_patient_writer_tries_less_often_and_still_gets_the_turn(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, patient: bool) -> None:
    """Each try for a held turn costs a syscall and a wake-up: the outbox's bookkeeping
    (patient) tries every PATIENT_POLL, other writers every POLL."""
    from gateway.store import priority

    tries = 0
    real_try_lock = priority._try_lock

    def counting(fd: int, kind: int) -> bool:
        nonlocal tries
        tries += 1
        return real_try_lock(fd, kind)

    monkeypatch.setattr(priority, "_try_lock", counting)
    turns = WriteTurns(tmp_path / "gateway.db")
    child, _, release = _child(tmp_path / "gateway.db")
    held_for = 0.1
    timer = threading.Timer(held_for, release.set)
    timer.start()
    started = time.monotonic()
    with turns.turn(patient=patient):
        waited = time.monotonic() - started
    child.join(10)
    assert waited >= held_for * 0.9
    # sleeping can only take longer than asked: at most one try per interval, plus the last
    interval = priority.PATIENT_POLL if patient else priority.POLL
    assert tries <= waited / interval + 2
    if not patient:     # more tries than a patient writer could make in that time
        assert tries > waited / priority.PATIENT_POLL + 2


def test_a_writer_cannot_be_urgent_and_patient(tmp_path: Path) -> None:
    with pytest.raises(ValueError), WriteTurns(tmp_path / "gateway.db").turn(
            urgent=True, patient=True):
        pass
