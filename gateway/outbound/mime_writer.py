"""Writing one outbound message as bytes: header lines, RFC 2047 words, quoted-printable.

In: header values that are already one clean line each (`headers.py` checks and cleans
them), and the text and HTML bodies. Out: the wire form of a multipart/alternative message.

Why not the stdlib generator: every answer the gateway sends goes through here, and the
`email` package's generator (policy objects, `Header` folding of every value, a boundary
search by regular expression) cost about as much as the rest of a new ticket together
(bench/README.md, inbound). What is written here is the small, fixed shape we send:

Guarantees:
- CRLF line ends only; every line at most 78 characters where the value has a place to
  break (RFC 5322 §2.1.1, §2.2.3), never more than 998; all of it 7-bit ASCII.
- Folding only inserts CRLF before an existing space, so unfolding (RFC 5322 §2.2.3)
  gives back exactly the value written.
- Text that is not ASCII is written as RFC 2047 encoded words of at most 75 characters
  (via `email.header.Header`, only for such values); bodies as UTF-8 quoted-printable
  (`binascii.b2a_qp`, RFC 2045 §6.7), whose lines are at most 76 characters.
- The MIME boundary comes from the Message-ID (the same mail gets the same bytes) and is
  checked not to occur in the encoded bodies.
"""

from __future__ import annotations

import binascii
import hashlib
import itertools
from collections.abc import Sequence
from email.header import Header
from email.utils import formataddr

LINE = 78             # RFC 5322 §2.1.1: SHOULD be no more than 78 characters
CRLF = "\r\n"


def fold(name: str, value: str) -> str:
    """`Name: value` as one or more lines, broken before spaces so no line passes `LINE`
    where that is possible; ends with CRLF."""
    line = f"{name}: {value}"
    if len(line) <= LINE:
        return line + CRLF
    words = [word for word in value.split(" ") if word]
    lines: list[str] = []
    current = f"{name}: {words[0]}" if words else f"{name}:"
    for word in words[1:]:
        if len(current) + 1 + len(word) > LINE:
            lines.append(current)
            current = " " + word
        else:
            current += " " + word
    lines.append(current)
    return CRLF.join(lines) + CRLF


def encoded_text(name: str, value: str) -> str:
    """An unstructured value (RFC 5322 §3.2.5: the subject): as it is when ASCII, else RFC
    2047 encoded words, already folded; the header line ends with CRLF."""
    if value.isascii():
        return fold(name, value)
    encoded = Header(value, "utf-8", header_name=name).encode(linesep=CRLF)
    return f"{name}: {encoded}{CRLF}"


def mailbox(display_name: str, address: str) -> str:
    """`name <addr>` for From/To/Reply-To: the name quoted when it needs to be (RFC 5322
    §3.2.4), or one RFC 2047 encoded word when it is not ASCII. One word, even when long
    (names are cut at 120 characters before): decoders join the split words of a phrase
    inconsistently (CPython's own parser puts a space between them)."""
    return formataddr((display_name, address), charset="utf-8")


def quoted_printable(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF line ends; a lone CR or LF becomes CRLF. Soft line
    breaks are CRLF too: `b2a_qp` takes the line end of its input's first line for them,
    and writes a bare LF for a text without any, so such a text is encoded after a CRLF
    that is then taken off again."""
    if "\r" in text:            # rendered templates have none: one pass instead of three
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    normalised = text.replace("\n", "\r\n")
    if "\n" in normalised:
        return binascii.b2a_qp(normalised.encode("utf-8"), quotetabs=False, istext=True,
                               header=False)
    return binascii.b2a_qp(f"\r\n{normalised}".encode(), quotetabs=False, istext=True,
                           header=False)[2:]


def multipart_alternative(header_lines: Sequence[str], text: str, html: str, *,
                          seed: str) -> bytes:
    """The whole message: our header lines (each ending in CRLF), then the MIME headers,
    then the text/plain and text/html parts. The same arguments give the same bytes: the
    boundary is derived from `seed` (the Message-ID), so a mail rendered again for a retry
    is the mail sent before."""
    bodies = [quoted_printable(text), quoted_printable(html)]
    boundary = _boundary(bodies, seed)
    part_head = ("Content-Type: text/{kind}; charset=\"utf-8\"\r\n"
                 "Content-Transfer-Encoding: quoted-printable\r\n\r\n")
    head = "".join(header_lines) + (
        "MIME-Version: 1.0\r\n"
        f"Content-Type: multipart/alternative;\r\n boundary=\"{boundary}\"\r\n\r\n")
    delimiter = f"--{boundary}\r\n".encode("ascii")
    return b"".join((
        head.encode("ascii"),
        delimiter, part_head.format(kind="plain").encode("ascii"), bodies[0], b"\r\n",
        delimiter, part_head.format(kind="html").encode("ascii"), bodies[1], b"\r\n",
        f"--{boundary}--\r\n".encode("ascii"),
    ))


def _boundary(bodies: Sequence[bytes], seed: str) -> str:
    """RFC 2046 §5.1.1: a boundary that occurs in no body, derived from `seed` (128 bits of
    its SHA-256, then of the seed and a counter in the practically impossible case of a
    clash). It need not be secret (it is in the message); the Message-ID it comes from
    is unique per mail, so the boundary is too."""
    for attempt in itertools.count():
        digest = hashlib.sha256(f"{seed}\0{attempt}".encode("utf-8", "surrogateescape"))
        boundary = f"=_tgw_{digest.hexdigest()[:32]}"
        if not any(boundary.encode("ascii") in body for body in bodies):
            return boundary
    raise AssertionError("unreachable")
