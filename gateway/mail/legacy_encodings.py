"""Files and signatures hidden inside bodies by pre-MIME and proprietary conventions.

In: decoded body text or attachment bytes. Out: the files found (as `ParsedAttachment`)
and the text without them. Covers uuencoded blocks ("begin 644 name" ... "end"), the
`x-uuencode` transfer encoding, Outlook's TNEF `winmail.dat`, and inline PGP armor
(RFC 4880 §7 clear-signed text, §6.2 armored messages).

Guarantee: nothing here raises for any input; what cannot be decoded is left as it was
(a block stays in the text, a TNEF file stays one attachment).
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass

from tnefparse import TNEF  # type: ignore[import-untyped]

from gateway.mail.attachment_names import clean_filename
from gateway.mail.message import ParsedAttachment

_UU_BEGIN = re.compile(r"^begin [0-7]{3,4} ([^\n]+)\n", re.MULTILINE)
_UU_END = re.compile(r"^end[ \t]*$\n?", re.MULTILINE)
_UU_FAMILY = frozenset({"x-uuencode", "uuencode", "x-uue", "uue"})

_EXTENSION_TYPES = {
    "txt": "text/plain", "htm": "text/html", "html": "text/html", "pdf": "application/pdf",
    "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg", "gif": "image/gif",
    "bmp": "image/bmp", "tif": "image/tiff", "tiff": "image/tiff", "zip": "application/zip",
    "doc": "application/msword", "xls": "application/vnd.ms-excel",
    "ppt": "application/vnd.ms-powerpoint", "rtf": "application/rtf", "csv": "text/csv",
    "docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "eml": "message/rfc822", "ics": "text/calendar", "xml": "application/xml",
}


def content_type_for_name(filename: str) -> str:
    """A content type from a file name's extension (a fixed table: no system files read)."""
    extension = filename.rpartition(".")[2].lower() if "." in filename else ""
    return _EXTENSION_TYPES.get(extension, "application/octet-stream")


def is_uuencode_transfer_encoding(cte: str) -> bool:
    return cte.strip().lower() in _UU_FAMILY


def decode_uu_lines(data: bytes) -> bytes:
    """Decode uuencoded lines, with or without the "begin"/"end" frame (some Mac mailers
    send `Content-Transfer-Encoding: x-uuencode` with the bare lines only)."""
    out = bytearray()
    for line in data.splitlines():
        if line.startswith(b"begin ") or not line.strip():
            continue
        if line.strip() in (b"end", b"`"):
            if line.strip() == b"end":
                break
            continue
        out += _decode_uu_line(line)
    return bytes(out)


def _decode_uu_line(line: bytes) -> bytes:
    try:
        return binascii.a2b_uu(line)
    except binascii.Error:
        # Encoders that strip trailing spaces or add garbage: cut the line to the length its
        # first character announces (the workaround the stdlib `uu` module used).
        size = ((line[0] - 32) & 63) * 4 + 5
        try:
            return binascii.a2b_uu(line[: size // 3])
        except binascii.Error:
            return b""


def extract_uuencoded(text: str) -> tuple[str, list[ParsedAttachment]]:
    """Cut "begin 644 name" ... "end" blocks out of a text body; each becomes an attachment.
    Linear in the text: a "begin" without an "end" stops the search."""
    if "begin " not in text:
        return text, []
    attachments: list[ParsedAttachment] = []
    kept: list[str] = []
    pos = 0
    while (begin := _UU_BEGIN.search(text, pos)) is not None:
        end = _UU_END.search(text, begin.end())
        if end is None:
            break
        name = clean_filename(begin.group(1), "uuencoded.bin")
        data = decode_uu_lines(text[begin.end():end.start()].encode("latin-1", "replace"))
        attachments.append(ParsedAttachment(name, content_type_for_name(name), data))
        kept.append(text[pos:begin.start()])
        pos = end.end()
    kept.append(text[pos:])
    return "".join(kept), attachments


def is_tnef(content_type: str, filename: str) -> bool:
    return content_type in ("application/ms-tnef", "application/vnd.ms-tnef") or \
        filename.lower() == "winmail.dat"


def unpack_tnef(data: bytes) -> list[ParsedAttachment] | None:
    """The files inside a TNEF blob; None when it cannot be read or holds no files."""
    try:
        tnef = TNEF(data, do_checksum=False)
        files = [(_tnef_name(item), bytes(item.data)) for item in tnef.attachments if item.data]
    except Exception:  # a third-party binary parser on hostile input may raise anything
        return None
    if not files:
        return None
    return [ParsedAttachment(name, content_type_for_name(name), payload)
            for name, payload in files]


def _tnef_name(item: object) -> str:
    name = item.long_filename()  # type: ignore[attr-defined]
    if isinstance(name, bytes):
        name = name.decode("utf-8", "replace")
    return clean_filename(str(name), "attachment.bin")   # like any other attachment name


@dataclass(frozen=True)
class ArmorResult:
    text: str
    signed: bool = False
    encrypted: bool = False


_SIGNED_START = "-----BEGIN PGP SIGNED MESSAGE-----"
_SIGNATURE_START = "-----BEGIN PGP SIGNATURE-----"
_SIGNATURE_END = "-----END PGP SIGNATURE-----"
_ARMOR_HEADERS = re.compile(r"(?:[A-Za-z-]+:[^\n]*\n)*\n?")


def strip_pgp_armor(text: str) -> ArmorResult:
    """Inline PGP: clear-signed text is shown without its armor and signature, dash-escaping
    undone (RFC 4880 §7.1); an armored encrypted message is left as it is, flagged."""
    if "-----BEGIN PGP" not in text:
        return ArmorResult(text)
    encrypted = "-----BEGIN PGP MESSAGE-----" in text
    kept: list[str] = []
    pos, signed = 0, False
    while (start := text.find(_SIGNED_START, pos)) != -1:
        signature = text.find(_SIGNATURE_START, start)
        end = text.find(_SIGNATURE_END, signature) if signature != -1 else -1
        if end == -1:
            break
        headers = _ARMOR_HEADERS.match(text, start + len(_SIGNED_START) + 1)
        body_start = headers.end() if headers else start + len(_SIGNED_START)
        body = re.sub(r"^- ", "", text[body_start:signature], flags=re.MULTILINE)
        kept.extend((text[pos:start], body))
        pos = end + len(_SIGNATURE_END)
        pos += 1 if text.startswith("\n", pos) else 0
        signed = True
    kept.append(text[pos:])
    return ArmorResult("".join(kept), signed=signed, encrypted=encrypted)
