"""The attachments of a mail, read while it streams past: file names and sizes only.

In: the raw bytes of one mail, fed in pieces of any size (`AttachmentScanner.feed`), in the
order they arrive. Out: `AttachmentScanner.files()` - the attachments seen so far, in order:
each file's name (cleaned, `attachment_names.clean_filename`; "" when the part gives none),
MIME type and decoded size: exact for 7bit/8bit/binary, within two bytes for base64 (from
the encoded length), the encoded size for quoted-printable (a little more than decoded).

Why: a mail over `[inbound] max_message_size` keeps only its beginning; the rest is dropped
as it arrives, so the mail telling the sender what to upload instead can name the left-out
files only if someone looked while they passed.

What counts as an attachment: every MIME leaf that is not the mail's own text (a text/plain
or text/html part without a file name or `Content-Disposition: attachment`), as
`mime_body` decides. Boundaries are those of the multipart headers seen (RFC 2046 §5.1.1);
a forwarded message (message/rfc822) is one file, named only when its part names itself.
Only header blocks are parsed; bodies are searched for the next boundary line with
`bytes.find` and counted, never kept.

Guarantees: memory stays bounded (a header block is read up to `MAX_HEADER_BYTES`, at most
`MAX_FILES` files and `MAX_BOUNDARIES` boundaries are kept); never raises for any input -
broken structure gives fewer or rougher entries, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.parser import BytesHeaderParser
from email.policy import compat32

from gateway.mail.attachment_names import clean_filename, raw_filename
from gateway.mail.mime_text import header_text

MAX_FILES = 100
MAX_BOUNDARIES = 50
MAX_HEADER_BYTES = 64 * 1024
_MAX_PENDING = 1024          # a partial line kept between pieces (boundary lines are short)
_BODY_TEXT = ("text/plain", "text/html")


@dataclass(frozen=True)
class ScannedFile:
    """One attachment as it passed: its name ("" when it gives none), type and size."""

    name: str
    content_type: str
    size: int


@dataclass
class _Part:
    name: str
    content_type: str
    encoding: str
    encoded: int = 0          # body bytes
    breaks: int = 0           # of them CR and LF
    tail: bytes = b""         # the last two bytes counted

    def size(self) -> int:
        if self.encoding == "base64":       # 4 characters for 3 bytes, line breaks ignored
            return (self.encoded - self.breaks) * 3 // 4
        # the line break before the boundary line belongs to the boundary (RFC 2046 §5.1.1)
        before_boundary = 2 if self.tail == b"\r\n" else 1 if self.tail.endswith(b"\n") else 0
        return max(0, self.encoded - before_boundary)


class AttachmentScanner:
    """Feed it a mail piece by piece; ask `files()` at any time (see the module docstring)."""

    def __init__(self) -> None:
        self._boundaries: dict[bytes, str] = {}     # boundary -> the multipart's subtype
        self._in_digest = False          # the part being read is in a multipart/digest
        self._in_headers = True          # the mail starts with its header block
        self._header = bytearray()
        self._header_full = False
        self._current: _Part | None = None
        self._found: list[ScannedFile] = []
        self._pending = b""              # the unfinished last line of the previous piece
        self._mid_line = False           # a too-long line is being skipped to its end

    def files(self) -> tuple[ScannedFile, ...]:
        """The attachments seen, the one still arriving included."""
        current = self._current
        extra = [self._finished(current)] if current is not None else []
        return tuple([*self._found, *extra][:MAX_FILES])

    def feed(self, data: bytes) -> None:
        try:
            self._feed(data)
        except Exception:               # never fail the receiving of a mail
            self._current = None
            self._in_headers = False

    def _feed(self, data: bytes) -> None:
        if self._mid_line:             # the rest of a long line, which cannot be a boundary
            end = data.find(b"\n")
            self._take_long_line(data if end < 0 else data[:end + 1])
            if end < 0:
                return
            data, self._mid_line = data[end + 1:], False
        buffer = self._pending + data
        last = buffer.rfind(b"\n")
        complete, self._pending = buffer[:last + 1], buffer[last + 1:]
        position = 0
        while position < len(complete):
            if self._in_headers:
                position = self._read_header_lines(complete, position)
            else:
                position = self._read_body(complete, position)
        if len(self._pending) > _MAX_PENDING:
            self._take_long_line(self._pending)
            self._pending, self._mid_line = b"", True

    def _take_long_line(self, piece: bytes) -> None:
        if self._in_headers:
            self._add_header_line(piece)
        else:
            self._count(piece)

    # header blocks

    def _read_header_lines(self, data: bytes, position: int) -> int:
        while position < len(data):
            end = data.find(b"\n", position) + 1
            line = data[position:end]
            position = end
            if line in (b"\n", b"\r\n"):
                self._start_body()
                return position
            self._add_header_line(line)
        return position

    def _add_header_line(self, line: bytes) -> None:
        if len(self._header) + len(line) > MAX_HEADER_BYTES:
            self._header_full = True
        if not self._header_full:
            self._header += line

    def _start_body(self) -> None:
        headers = BytesHeaderParser(policy=compat32).parsebytes(bytes(self._header))
        self._header, self._header_full, self._in_headers = bytearray(), False, False
        ctype = headers.get_content_type()
        if self._in_digest and "content-type" not in headers:
            ctype = "message/rfc822"            # RFC 2046 §5.1.5: a digest's default
        if ctype.startswith("multipart/"):
            boundary = headers.get_boundary()
            if boundary and len(self._boundaries) < MAX_BOUNDARIES:
                self._boundaries[boundary.encode("utf-8", "surrogateescape")] = \
                    ctype.partition("/")[2]
            return
        named = bool(raw_filename(headers)) or headers.get_content_disposition() == "attachment"
        if ctype in _BODY_TEXT and not named:
            return                                      # the mail's own text
        raw = raw_filename(headers)
        name = clean_filename(header_text(raw)) if raw else ""
        encoding = str(headers.get("content-transfer-encoding", "")).strip().lower()
        self._current = _Part(name, ctype, encoding)

    # bodies

    def _read_body(self, data: bytes, position: int) -> int:
        """Count body bytes up to the next boundary line; handle it; where reading goes on."""
        while True:
            start = position if data.startswith(b"--", position) else \
                data.find(b"\n--", position) + 1
            if start <= 0 and not data.startswith(b"--", position):
                self._count(data[position:])
                return len(data)
            end = data.find(b"\n", start) + 1 or len(data)
            kind = self._boundary_kind(data[start:end])
            if kind is None:
                self._count(data[position:end])
                position = end
                continue
            self._count(data[position:start])
            self._end_part()
            if kind == "open":
                self._in_headers = True
            return end

    def _boundary_kind(self, line: bytes) -> str | None:
        marker = line.rstrip(b" \t\r\n")[2:]
        if marker in self._boundaries:
            self._in_digest = self._boundaries[marker] == "digest"
            return "open"
        if marker.endswith(b"--") and marker[:-2] in self._boundaries:
            return "close"
        return None

    def _count(self, body: bytes) -> None:
        part = self._current
        if part is not None and body:
            part.encoded += len(body)
            part.breaks += body.count(b"\n") + body.count(b"\r")
            part.tail = (part.tail + body[-2:])[-2:]

    def _end_part(self) -> None:
        if self._current is not None and len(self._found) < MAX_FILES:
            self._found.append(self._finished(self._current))
        self._current = None

    @staticmethod
    def _finished(part: _Part) -> ScannedFile:
        return ScannedFile(part.name, part.content_type, part.size())


def scan_attachments(raw: bytes) -> tuple[ScannedFile, ...]:
    """The attachments of a whole mail at once (tests, and mails already in memory)."""
    scanner = AttachmentScanner()
    scanner.feed(raw)
    scanner.feed(b"\n")                 # a last line without its line break
    return scanner.files()
