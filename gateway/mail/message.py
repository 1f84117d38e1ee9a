"""What the parser hands to the rest of the pipeline: `ParsedMessage`, a frozen dataclass.

Produced once per mail by `parsing.parse_message(raw, received=...)`; read by `loops`
(automatic mail, bounces), `routing` and `tickets`. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from email.message import Message

from gateway.mail.mime_stream import decoded_chunks


@dataclass(frozen=True)
class MailAddress:
    name: str          # display name, decoded (RFC 2047), may be ""
    address: str       # local@domain exactly as written (no angle brackets), may be ""

    def formatted(self) -> str:
        return f"{self.name} <{self.address}>" if self.name else self.address


@dataclass(frozen=True)
class RawSpan:
    """Content left in the raw mail: the body raw[start:end] in its transfer encoding. Large
    parts stay there and are decoded piece by piece when stored (`chunks`), so a 25 MiB
    attachment is never in memory twice."""

    raw: bytes = field(repr=False)
    start: int
    end: int
    encoding: str                  # base64 | quoted-printable | "" and 7bit/8bit/binary: as is

    def chunks(self) -> Iterator[bytes]:
        return decoded_chunks(self.raw, self.start, self.end, self.encoding)


@dataclass(frozen=True)
class ParsedAttachment:
    filename: str                  # decoded (RFC 2047 / RFC 2231), never empty (a name is made up)
    content_type: str              # lower-case "type/subtype"
    data: bytes | RawSpan          # decoded content, or where it is (a large part)
    content_id: str | None = None  # without angle brackets, for inline images (cid:)
    inline: bool = False

    def chunks(self) -> Iterator[bytes]:
        """The decoded content, piece by piece (what storing it should use)."""
        return iter((self.data,)) if isinstance(self.data, bytes) else self.data.chunks()

    def content(self) -> bytes:
        """The decoded content as one bytes object (costs its size in memory)."""
        return self.data if isinstance(self.data, bytes) else b"".join(self.data.chunks())


@dataclass(frozen=True)
class ParsedMessage:
    """One mail, understood. Header values are decoded and unfolded; bodies decoded to str."""

    message_id: str                              # "<id@host>"; generated when missing
    message_id_generated: bool
    subject: str                                 # decoded, whitespace-normalised, "" if none
    from_: MailAddress | None
    sender: MailAddress | None                   # Sender: header, if any
    reply_to: tuple[MailAddress, ...]
    to: tuple[MailAddress, ...]
    cc: tuple[MailAddress, ...]
    date: datetime                               # aware; the received time if missing/bogus
    date_from_header: bool                       # False when `date` is the received time
    in_reply_to: tuple[str, ...]                 # Message-IDs "<…>"
    references: tuple[str, ...]                  # Message-IDs "<…>", oldest first
    headers: Mapping[str, str]                   # lower-cased name -> decoded value (first one)
    body_text: str                               # the readable text (HTML converted if needed)
    body_html: str | None                        # sanitized HTML for display, if the mail had HTML
    quote_start: int | None                      # offset in body_text where quoted history starts
    attachments: tuple[ParsedAttachment, ...]
    content_type: str                            # top-level, lower-case
    signed: bool = False                         # S/MIME or PGP signature present
    encrypted: bool = False                      # S/MIME or PGP encrypted (kept as attachment)
    defects: tuple[str, ...] = ()                # what was wrong and repaired/ignored
    remote_images: int = 0                       # removed from body_html (tracking pixels)
    mime: Message | None = field(default=None, compare=False, repr=False)  # the parsed tree

    def header(self, name: str) -> str:
        """The decoded value of a header ("" if absent); `name` is case-insensitive."""
        return self.headers.get(name.lower(), "")


class ParseLimitExceeded(ValueError):
    """The mail breaks a parser limit (nesting depth, parts, headers, addresses). It is kept
    and quarantined with this message as the reason; it never crashes a worker."""
