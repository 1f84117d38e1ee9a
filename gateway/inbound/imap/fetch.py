"""Fetching messages from the selected IMAP folder in bounded batches.

In: a connected client with the folder selected, and the UIDs wanted. Out: `Batch`es of at
most N messages and about M bytes (RFC822.SIZE is asked first, so one huge mail does not
share a batch, and memory stays bounded), each saying which UIDs came back with content,
which were expunged meanwhile (gone), and which are there but came back without content.

Guarantees: only `BODY.PEEK[]` is fetched, which never sets `\\Seen` (RFC 3501 §6.4.5). A
server error for a batch is retried message by message, so one message the server cannot
deliver does not hold back the others; it is reported as unfetchable and tried again at the
next check. Connection errors propagate.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from gateway.inbound.imap.state import Fetched

SIZE_CHUNK = 1000        # UIDs per RFC822.SIZE fetch (the command line stays short)


@dataclass(frozen=True)
class Batch:
    uids: list[int]                  # asked for, ascending
    fetched: list[Fetched]
    gone: list[int]                  # expunged by someone else before we fetched it
    unfetchable: list[int]           # still there, but the server sent no content

    @property
    def stored_uids(self) -> list[int]:
        return [item.uid for item in self.fetched]


def uid_set(uids: Sequence[int]) -> str:
    """`[1, 2, 3, 7]` -> "1:3,7" (RFC 3501 §9 sequence-set): short commands for long lists."""
    ordered = sorted(set(uids))
    parts: list[str] = []
    start = prev = ordered[0]
    for uid in ordered[1:]:
        if uid == prev + 1:
            prev = uid
            continue
        parts.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = uid
    parts.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(parts)


def plan_batches(client: IMAPClient, uids: Sequence[int], *, max_messages: int,
                 max_bytes: int) -> Iterator[list[int]]:
    """Group UIDs (in order) into batches by count and total size."""
    sizes: dict[int, int] = {}
    for start in range(0, len(uids), SIZE_CHUNK):
        response = client.fetch(list(uids[start:start + SIZE_CHUNK]), ["RFC822.SIZE"])
        sizes.update((uid, int(data.get(b"RFC822.SIZE", 0))) for uid, data in response.items())
    batch: list[int] = []
    total = 0
    for uid in uids:
        size = sizes.get(uid, 0)
        if batch and (len(batch) >= max_messages or total + size > max_bytes):
            yield batch
            batch, total = [], 0
        batch.append(uid)
        total += size
    if batch:
        yield batch


def fetch_batches(client: IMAPClient, uids: Sequence[int], *, max_messages: int,
                  max_bytes: int) -> Iterator[Batch]:
    for uids_of_batch in plan_batches(client, uids, max_messages=max_messages,
                                      max_bytes=max_bytes):
        yield fetch_batch(client, uids_of_batch)


def fetch_batch(client: IMAPClient, uids: list[int]) -> Batch:
    try:
        response = client.fetch(uids, ["BODY.PEEK[]"])
    except IMAPClientAbortError:
        raise
    except IMAPClientError:
        response = {}
        for uid in uids if len(uids) > 1 else []:   # find the one the server chokes on
            try:
                response.update(client.fetch([uid], ["BODY.PEEK[]"]))
            except IMAPClientAbortError:
                raise
            except IMAPClientError:
                continue
    fetched: list[Fetched] = []
    missing: list[int] = []
    for uid in uids:
        raw = response.get(uid, {}).get(b"BODY[]")
        if isinstance(raw, bytes):
            fetched.append(Fetched(uid, raw))
        else:
            missing.append(uid)
    present = set(client.search(["UID", uid_set(missing)])) if missing else set()
    return Batch(uids=uids, fetched=fetched,
                 gone=[uid for uid in missing if uid not in present],
                 unfetchable=[uid for uid in missing if uid in present])
