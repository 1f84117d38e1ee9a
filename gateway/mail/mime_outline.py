"""A cheap look at a raw mail's MIME structure before the standard library parses it.

In: the raw bytes of one mail and a `ParseLimits`. Out: `MimeOutline` - how many entities,
how deep, and the exact byte spans of every `message/*` body (so a forwarded or returned
message can be kept byte for byte as an `.eml` attachment). Also `repair_header_block`, which
mends two header-block breakages real mail has (junk before the first header, continuation
lines without indentation) before anything else reads the mail.

Why a pre-scan: `email.feedparser` recurses once per nesting level (message/* and multipart)
and checks every line against every enclosing boundary, so a hostile mail nested a thousand
levels deep costs recursion depth and quadratic time before any limit of ours could look at
the tree. This module walks the same structure iteratively, mirroring the feedparser's rules
(`headerRE`, boundary lines per RFC 2046 §5.1.1, `message/*` bodies being messages,
delivery-status bodies being blank-line separated blocks, the outermost matching boundary
ending every part inside it), and stops at the first broken limit. Tests check that it sees
exactly the tree the feedparser builds (part count, depth, message/* parts) on the whole
corpus and on random structures.

Guarantee on failure: `ParseLimitExceeded` with a reason such as "nesting depth 21 > 20";
nothing else is raised for any input.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message

from gateway.mail.message import ParseLimitExceeded


@dataclass(frozen=True)
class ParseLimits:
    """Limits against parser abuse; the defaults are far above what real mail needs."""

    max_depth: int = 20                       # nesting of multiparts and message/* parts
    max_parts: int = 500                      # MIME entities, the top-level message included
    max_headers_per_part: int = 1000          # header fields in one header block
    max_header_block_bytes: int = 256 * 1024  # bytes of one header block
    max_addresses_per_header: int = 1000      # addresses in one To/Cc/... field
    # not a limit against abuse: parts whose body is larger stay in the raw mail and are
    # decoded piece by piece when stored (mime_stream), instead of by the stdlib in memory
    streamed_body_bytes: int = 1024 * 1024
    # the same for an attachment's body (a leaf that is neither text/* nor message/*: no
    # classifier reads it) from this size on: the stdlib's parser reads a body line by line
    # (a 200 KiB base64 PDF: ~2,700 lines, 3.4 ms of the parse's 4 ms), a stream decodes it
    # in a few calls
    streamed_attachment_bytes: int = 64 * 1024


@dataclass(frozen=True)
class MessageSpan:
    """The body of one `message/*` entity: raw[start:end], in document (pre-order) order."""

    content_type: str
    start: int
    end: int


@dataclass(frozen=True)
class LeafSpan:
    """The body of one entity that is neither multipart nor message/*: raw[start:end], in
    document (pre-order) order, with its Content-Transfer-Encoding (lower case, "" if none)."""

    content_type: str
    encoding: str
    start: int
    end: int


@dataclass
class MimeOutline:
    parts: int = 0
    depth: int = 0
    message_spans: list[MessageSpan] = field(default_factory=list)
    leaf_spans: list[LeafSpan] = field(default_factory=list)


# The feedparser's header-line test (email/feedparser.py `headerRE`), on bytes.
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")
_STRICT_HEADER = re.compile(rb"[\x21-\x39\x3b-\x7e]+:")
_EOL = re.compile(rb"\r\n|\r|\n")
# Names that prove we are still inside a header block (used by `repair_header_block`).
_WELL_KNOWN = frozenset({
    b"from", b"to", b"cc", b"subject", b"date", b"message-id", b"reply-to", b"sender",
    b"in-reply-to", b"references", b"mime-version", b"content-type",
    b"content-transfer-encoding", b"received", b"return-path",
})


def _line_at(raw: bytes, pos: int) -> tuple[bytes, int, int]:
    """The line starting at `pos`: (content without EOL, end of content, start of next)."""
    eol = _EOL.search(raw, pos)
    if eol is None:
        return raw[pos:], len(raw), len(raw)
    return raw[pos:eol.start()], eol.start(), eol.end()


# ---------------------------------------------------------------- header block repair


def repair_header_block(raw: bytes, limits: ParseLimits) -> tuple[bytes, list[str]]:
    """Mend the top header block where the stdlib would lose the headers; else `raw` as is.

    1. Junk before the headers ("---- Original email message ----"): up to 5 leading lines
       are dropped when a header line follows them, with at least three within six lines.
    2. Continuation lines without leading whitespace (RFC 5322 §2.2.3 requires WSP): a
       non-header line is indented when a well-known header still follows it in the block.
    """
    defects: list[str] = []
    lines = _top_header_lines(raw, limits)
    if not lines or all(_HEADER_LINE.match(text) for text, _ in lines):
        return raw, defects
    skip = _junk_line_count(lines)
    if skip:
        defects.append(f"header: dropped {skip} non-header line(s) before the header block")
    block = lines[skip:]
    last_known = max((i for i, (text, _) in enumerate(block) if _is_well_known(text)),
                     default=-1)
    out = bytearray()
    mended = 0
    for i, (text, eol) in enumerate(block):
        if i and i <= last_known and not _HEADER_LINE.match(text):
            out += b" "
            mended += 1
        out += text + eol
    if mended:
        defects.append(f"header: {mended} continuation line(s) without indentation")
    if not defects:
        return raw, defects
    consumed = sum(len(text) + len(eol) for text, eol in lines)
    return bytes(out) + raw[consumed:], defects


def _top_header_lines(raw: bytes, limits: ParseLimits) -> list[tuple[bytes, bytes]]:
    """(text, eol) of the lines before the first empty line, within the size limit."""
    lines: list[tuple[bytes, bytes]] = []
    pos = 0
    while pos < len(raw) and pos < limits.max_header_block_bytes:
        text, end, nxt = _line_at(raw, pos)
        if not text:
            break
        lines.append((text, raw[end:nxt]))
        pos = nxt
    return lines


def _junk_line_count(lines: list[tuple[bytes, bytes]]) -> int:
    if _HEADER_LINE.match(lines[0][0]):
        return 0
    for skip in range(1, min(6, len(lines))):
        following = [text for text, _ in lines[skip:skip + 6]]
        if _STRICT_HEADER.match(following[0]) and \
                sum(1 for text in following if _STRICT_HEADER.match(text)) >= 3:
            return skip
    return 0


def _is_well_known(line: bytes) -> bool:
    name, colon, _ = line.partition(b":")
    return bool(colon) and name.strip().lower() in _WELL_KNOWN


# ---------------------------------------------------------------- structure pre-scan


@dataclass
class _Frame:
    """Something that ends every entity inside it when its line comes: a multipart's
    delimiter, or - inside message/delivery-status - an empty line (`delimiter` None)."""

    delimiter: bytes | None   # b"--" + boundary; None: an empty line (RFC 3464 §2.1 blocks)
    part_depth: int
    digest: bool = False      # RFC 2046 §5.1.5: parts default to message/rfc822


@dataclass
class _OpenMessage:
    content_type: str
    start: int
    frames: int               # len(stack) when it was opened


@dataclass
class _Scan:
    """The state of one pre-scan: the open frames (outermost first) and message/* bodies."""

    raw: bytes
    limits: ParseLimits
    outline: MimeOutline = field(default_factory=MimeOutline)
    stack: list[_Frame] = field(default_factory=list)
    open_messages: list[_OpenMessage] = field(default_factory=list)
    open_leaf: tuple[str, str, int] | None = None   # content type, encoding, body start

    def close_leaf(self, end: int) -> None:
        if self.open_leaf is not None:
            ctype, encoding, start = self.open_leaf
            self.outline.leaf_spans.append(LeafSpan(ctype, encoding, start, max(start, end)))
            self.open_leaf = None

    def count_entity(self, depth: int) -> None:
        self.outline.parts += 1
        self.outline.depth = max(self.outline.depth, depth)
        if depth > self.limits.max_depth:
            raise ParseLimitExceeded(f"nesting depth {depth} > {self.limits.max_depth}")
        if self.outline.parts > self.limits.max_parts:
            raise ParseLimitExceeded(
                f"MIME parts {self.outline.parts} > {self.limits.max_parts}")

    def close_messages(self, min_frames: int, end: int) -> None:
        """Close the message/* entities opened inside the part that just ended."""
        while self.open_messages and self.open_messages[-1].frames >= min_frames:
            message = self.open_messages.pop()
            self.outline.message_spans.append(
                MessageSpan(message.content_type, message.start, max(message.start, end)))


def outline_mime(raw: bytes, limits: ParseLimits) -> MimeOutline:
    """Walk the raw mail's MIME structure iteratively; `ParseLimitExceeded` on abuse."""
    scan = _Scan(raw, limits)
    pos, depth, default_type = 0, 1, "text/plain"
    while True:
        ctype, boundary, encoding, pos = _scan_entity_header(scan, pos, default_type)
        scan.count_entity(depth)
        if ctype.startswith("message/"):
            # RFC 2046 §5.2: the body of a message/* entity is itself a message; the
            # feedparser reads a delivery-status body as blank-line separated blocks, each
            # a message of its own (RFC 3464 §2.1).
            scan.open_messages.append(_OpenMessage(ctype, pos, len(scan.stack)))
            if ctype == "message/delivery-status":
                scan.stack.append(_Frame(None, depth + 1))
            depth, default_type = depth + 1, "text/plain"
            continue
        if boundary is not None:
            scan.stack.append(_Frame(b"--" + boundary, depth + 1, ctype == "multipart/digest"))
        else:
            scan.open_leaf = (ctype, encoding, pos)
        found = _next_entity(scan, pos)
        if found is None:
            break
        pos, depth, default_type = found
    scan.outline.message_spans.sort(key=lambda span: span.start)
    return scan.outline


def _next_entity(scan: _Scan, pos: int) -> tuple[int, int, str] | None:
    """Find where the next entity starts: (offset, depth, default content type)."""
    stack = scan.stack
    while True:
        found = _next_delimiter(scan, pos)
        if found is None:
            scan.close_leaf(len(scan.raw))
            scan.close_messages(0, len(scan.raw))
            return None
        level, kind, line_start, pos = found
        scan.close_leaf(_strip_eol_before(scan.raw, line_start))
        scan.close_messages(level + 1, _strip_eol_before(scan.raw, line_start))
        del stack[level + 1:]
        frame = stack[level]
        if kind == "close":
            stack.pop()             # what follows is epilogue, part of the enclosing part
            continue
        if kind == "blank" and _status_body_ends(scan, pos, level):
            stack.pop()
            continue
        return pos, frame.part_depth, "message/rfc822" if frame.digest else "text/plain"


def _status_body_ends(scan: _Scan, pos: int, level: int) -> bool:
    """After a delivery-status block: the body ends at the end of data or at a delimiter of
    an enclosing multipart; any other line starts one more block."""
    if pos >= len(scan.raw):
        return True
    text, _, _ = _line_at(scan.raw, pos)
    return _match_delimiter(text, scan.stack[:level]) is not None


def _strip_eol_before(raw: bytes, line_start: int) -> int:
    """RFC 2046 §5.1.1: the line break before a delimiter belongs to the delimiter."""
    if raw.endswith(b"\r\n", 0, line_start):
        return line_start - 2
    if line_start and raw[line_start - 1] in b"\r\n":
        return line_start - 1
    return line_start


def _scan_entity_header(scan: _Scan, pos: int, default_type: str
                        ) -> tuple[str, bytes | None, str, int]:
    """Read one header block like the feedparser: (content type, boundary, transfer
    encoding, body start)."""
    raw, limits, stack = scan.raw, scan.limits, scan.stack
    count, start = 0, pos
    ctype_start = ctype_end = -1           # the first Content-Type value, folds included
    in_ctype = False
    encoding: bytes | None = None          # the first Content-Transfer-Encoding (one line)
    while pos < len(raw):
        text, end, nxt = _line_at(raw, pos)
        if not text:
            if not any(frame.delimiter is None for frame in stack):
                pos = nxt                           # the separator line, consumed
            break                                   # (or, in a status block, its end)
        if not _HEADER_LINE.match(text) or _match_delimiter(text, stack) is not None:
            break                                   # body (or next part) starts here
        if text[0] in b" \t":
            if in_ctype:
                ctype_end = end
        else:
            count += 1
            if count > limits.max_headers_per_part:
                raise ParseLimitExceeded(
                    f"header fields {count} > {limits.max_headers_per_part} in one part")
            name, _, rest = text.partition(b":")
            lower = name.lower()
            in_ctype = ctype_start < 0 and lower == b"content-type"
            if in_ctype:
                ctype_start, ctype_end = pos + len(name) + 1, end
            elif encoding is None and lower == b"content-transfer-encoding":
                encoding = rest.strip().lower()
        pos = nxt
        if pos - start > limits.max_header_block_bytes:
            raise ParseLimitExceeded(
                f"header block {pos - start} bytes > {limits.max_header_block_bytes}")
    value = raw[ctype_start:ctype_end] if ctype_start >= 0 else None
    ctype, boundary = _content_type_of(value, default_type)
    return ctype, boundary, (encoding or b"").decode("ascii", "replace"), pos


def _content_type_of(value: bytes | None, default_type: str) -> tuple[str, bytes | None]:
    """Content type and boundary exactly as `email.message.Message` (compat32) sees them."""
    probe = Message()
    probe.set_default_type(default_type)
    if value is not None:
        probe["Content-Type"] = value.decode("ascii", "surrogateescape").strip()
    ctype = probe.get_content_type()
    if not ctype.startswith("multipart/"):
        return ctype, None
    boundary = probe.get_boundary()
    if boundary is None:
        return ctype, None
    try:
        return ctype, boundary.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        # Decoded through a charset into real non-ASCII text (RFC 2231): no line of the
        # mail, which the parser reads as ASCII plus escapes, can ever match it.
        return ctype, None


def _match_delimiter(line: bytes, stack: list[_Frame]) -> tuple[int, str] | None:
    """(frame index, "part" | "close" | "blank") when `line` ends entities of an open frame.

    The outermost match wins, as in the feedparser: an enclosing multipart's boundary is an
    end-of-file for everything inside it.
    """
    if line and not line.startswith(b"--"):
        return None
    for level, frame in enumerate(stack):
        if frame.delimiter is None:
            if not line:
                return level, "blank"
        elif line.startswith(frame.delimiter):
            rest = line[len(frame.delimiter):]
            is_close = rest.startswith(b"--")
            if is_close:
                rest = rest[2:]
            if not rest.strip(b" \t"):
                return level, "close" if is_close else "part"
    return None


def _candidate_lines(scan: _Scan, pos: int) -> Iterator[int]:
    """Start offsets of the lines at or after `pos` that could end an entity. Lines that
    begin with "--" are found with bytes.find, far faster than a regex or a line loop
    (base64 never contains "-"); inside a delivery-status body every line is a candidate."""
    raw = scan.raw
    if any(frame.delimiter is None for frame in scan.stack):
        while pos < len(raw):
            yield pos
            pos = _line_at(raw, pos)[2]
        return
    index = raw.find(b"--", pos)
    while index != -1:
        if index == pos or raw[index - 1] in b"\r\n":
            yield index
        # Whether it started the line or not, the next candidate is on a later line (this
        # also keeps a megabyte of "-----" on one line from costing a million finds).
        eol = _EOL.search(raw, index)
        if eol is None:
            return
        index = raw.find(b"--", eol.start())


def _next_delimiter(scan: _Scan, pos: int) -> tuple[int, str, int, int] | None:
    """The next line at or after `pos` that ends entities: (level, kind, start, next line)."""
    if not scan.stack:
        return None
    for line_start in _candidate_lines(scan, pos):
        text, _, nxt = _line_at(scan.raw, line_start)
        match = _match_delimiter(text, scan.stack)
        if match is not None:
            return match[0], match[1], line_start, nxt
    return None
