"""The DATA section of one SMTP/LMTP transaction, read in pieces as it arrives.

In: the bytes after `354`, in chunks of any size. Out: the message (dot-stuffing undone,
RFC 5321 §4.5.2), held in memory while small and spooled into the blob store once it passes
`RAW_IN_ROW_LIMIT`, with its size and whether it broke the size limit.

Why not aiosmtpd's own DATA handling: it keeps every line as a separate object and joins
them at the end, so a 25 MiB attachment cost 135 MiB in the listener (5.4x), and its
per-line loop cost 7 ms of CPU per 275 KiB mail (bench/README.md, inbound). Here the
stream is searched with `bytes.find` a chunk at a time, and memory stays at one chunk plus
what is kept of the message (at most `RAW_IN_ROW_LIMIT`; larger mails go to disk).

Guarantees: the end marker is recognised only as a line holding a single dot after CRLF
(or as the very first line); a dot starting any other line is removed once; the message
keeps the CRLF that ends its last line. A mail over the size limit is read to its end
(RFC 5321 §4.2.5: the reply comes after the data) and nothing of it is kept; a partly
spooled file is removed whenever the mail is not handed on (`discard`). Of a mail kept
only in part (`truncated`), `left_out` names the attachments it had, seen as they passed
(`mail.attachment_scan`).
"""

from __future__ import annotations

from gateway.inbound.intake import RAW_IN_ROW_LIMIT, SpooledRaw
from gateway.mail.attachment_scan import AttachmentScanner, ScannedFile
from gateway.store.blobs import BlobStore, BlobWriter

_DOT_LINE = b"\r\n."          # a line that starts with a dot: stuffed, or the end marker
TRUNCATED_KEEP = 256 * 1024   # what is kept of a mail over the size limit
_END = b".\r\n"


class DataDecoder:
    """Undoes the transparency of a DATA section fed in pieces (pure, no I/O)."""

    def __init__(self) -> None:
        # the stream is read as if a line break came before its first line, so a first
        # line "." ends an empty message and a first line "..x" is unstuffed
        self._carry = b"\r\n"
        self._skip = 2            # ...and that virtual line break is never given out
        self.finished = False

    def feed(self, chunk: bytes) -> bytes:
        """The message bytes that this chunk completes; `finished` once the end came.
        Bytes after the end marker are not part of the message and are not returned."""
        if self.finished:
            return b""
        data = self._carry + chunk
        self._carry = b""
        out: list[bytes] = []
        start = 0
        while True:
            found = data.find(_DOT_LINE, start)
            if found == -1:
                keep = 2 if data.endswith(b"\r\n") else 1 if data.endswith(b"\r") else 0
                out.append(data[start:len(data) - keep])
                self._carry = data[len(data) - keep:]
                break
            dot = found + 2
            if len(data) - dot < 3 and _END.startswith(data[dot:]):
                out.append(data[start:found])      # undecided until more bytes come
                self._carry = data[found:]
                break
            out.append(data[start:dot])
            if data.startswith(_END, dot):
                self.finished = True
                break
            start = dot + 1                        # the stuffing dot is dropped
        content = b"".join(out)
        if self._skip:
            dropped = min(self._skip, len(content))
            content, self._skip = content[dropped:], self._skip - dropped
        return content


class RawSpool:
    """Collects a message: in memory up to `RAW_IN_ROW_LIMIT`, then in a blob file.

    Over `limit` the message is not kept, only its first `TRUNCATED_KEEP` bytes (headers
    and text, usually), and `truncated` says so; over `oversize_limit` (when larger than
    `limit`) nothing is kept and `too_big` says so."""

    def __init__(self, blobs: BlobStore, limit: int | None,
                 oversize_limit: int | None = None) -> None:
        self.blobs = blobs
        self.limit = limit
        self.hard_limit = max(limit, oversize_limit or 0) if limit is not None else None
        self.size = 0
        self.truncated = False
        self.too_big = False
        self._head = b""             # the beginning, once it is no longer in `_memory`
        self._memory = bytearray()
        self._file: BlobWriter | None = None
        self._scanner = AttachmentScanner()

    def left_out(self) -> tuple[ScannedFile, ...]:
        """The attachments of a `truncated` mail (none were kept); () for any other."""
        return self._scanner.files() if self.truncated and not self.too_big else ()

    def write(self, data: bytes) -> None:
        if not data or self.too_big:
            return
        self._scanner.feed(data)
        self.size += len(data)
        if self.hard_limit is not None and self.size > self.hard_limit:
            self.too_big = True                    # keep reading, keep nothing
            self._head = b""
            self.discard()
            return
        if self.truncated:
            return
        if self.limit is not None and self.size > self.limit:
            self.truncated = True                  # keep reading, keep only the head
            if self._file is None:
                self._head = self._beginning(data)
            self.discard()
            return
        if self._file is None and len(self._memory) + len(data) <= RAW_IN_ROW_LIMIT:
            self._memory += data
            return
        if self._file is None:
            self._head = self._beginning(data)     # in case the mail turns out too big
            self._file = self.blobs.writer()
            self._file.write(self._memory)
            self._memory = bytearray()
        self._file.write(data)

    def _beginning(self, data: bytes) -> bytes:
        """The first `TRUNCATED_KEEP` bytes of the message, `data` being the next piece."""
        return bytes((self._memory + data[:TRUNCATED_KEEP])[:TRUNCATED_KEEP])

    def finish(self) -> bytes | SpooledRaw:
        """The message: its bytes (or the first `TRUNCATED_KEEP` of them when `truncated`),
        or where it lies in the blob store (fsynced; blocking, so call it off the event
        loop)."""
        if self.truncated:
            return self._head
        if self._file is None:
            return bytes(self._memory)
        stored = self._file.finish()
        self._file = None
        return SpooledRaw(stored.sha256, stored.size)

    def discard(self) -> None:
        self._memory = bytearray()
        if self._file is not None:
            self._file.discard()
            self._file = None
