"""Reading what the gateway's Maildir transport delivered, for tests through `serve`."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path


class Maildir:
    def __init__(self, root: Path) -> None:
        self.root = root

    def messages(self) -> list[EmailMessage]:
        """Every delivered mail, oldest first."""
        found = []
        for folder in ("new", "cur"):
            directory = self.root / folder
            if directory.is_dir():
                for path in sorted(directory.iterdir(), key=lambda p: p.stat().st_mtime):
                    found.append(email.message_from_bytes(path.read_bytes(),
                                                          policy=email.policy.default))
        return found  # type: ignore[return-value]

    def wait_for(self, predicate: Callable[[EmailMessage], bool],
                 timeout: float = 30) -> EmailMessage:
        """The first delivered mail that `predicate` accepts; fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.messages():
                if predicate(message):
                    return message
            time.sleep(0.2)
        raise AssertionError(f"no such mail in {self.root}: "
                             f"{[str(m['Subject']) for m in self.messages()]}")
