"""From a parsed MIME tree to what a ticket shows: body text, sanitized HTML, attachments.

In: the `email.message.Message` tree (compat32) and the exact raw bytes of its `message/*`
bodies. Out: `MailBody` - body text (text/plain preferred), sanitized HTML if the mail had
HTML, attachments (inline images with their Content-ID; forwarded mails as `.eml`; TNEF
unpacked; uuencoded blocks cut out of the text), the signed/encrypted flags and the repairs
made.

Rules (RFC 2046 §5.1): multipart/alternative -> text/plain for the text, text/html for the
HTML; multipart/related -> the root is the body, the rest inline resources (RFC 2387);
multipart/signed and multipart/encrypted (RFC 1847) -> content shown, signature or encrypted
data kept as attachments; multipart/report (RFC 6522) -> only the human-readable part is
body text, the returned message is not appended.

Sub-parts, content types and transfer encodings are read with `mime_walk` (the walk the
parser and the classifiers share); this module only decides what each part means. The tree
is the one `parse` has checked against its `ParseLimits`, so this recursion is bounded by
the same depth and part count.

Guarantee: no exception for any tree; each part is decoded once; text that cannot be decoded
in its charset is decoded in a fallback and the fallback is recorded in `defects`.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.generator import BytesGenerator
from email.message import Message
from io import BytesIO

from gateway.mail.attachment_names import (
    FORWARDED_TYPES,
    attachment_filename,
    content_id,
    message_filename,
    raw_filename,
)
from gateway.mail.legacy_encodings import (
    decode_uu_lines,
    extract_uuencoded,
    is_tnef,
    is_uuencode_transfer_encoding,
    strip_pgp_armor,
    unpack_tnef,
)
from gateway.mail.message import ParsedAttachment, RawSpan
from gateway.mail.mime_html import (
    html_meta_charset,
    html_to_text,
    html_too_deep,
    sanitize_html,
    strip_tags,
)
from gateway.mail.mime_text import decode_bytes, header_text, normalize_newlines, to_bytes
from gateway.mail.mime_walk import children, content_type, transfer_encoding

_SIGNATURE_TYPES = frozenset({"application/pkcs7-signature", "application/x-pkcs7-signature",
                              "application/pgp-signature"})
_SMIME_TYPES = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})


@dataclass
class _Segment:
    """One piece of body in document order: its plain text, its HTML, or both."""

    plain: str | None = None
    html: str | None = None


@dataclass
class MailBody:
    text: str = ""
    html: str | None = None
    remote_images: int = 0      # removed from `html` (see mime_html.sanitize_html)
    forwarded_text: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    signed: bool = False
    encrypted: bool = False
    defects: list[str] = field(default_factory=list)


@dataclass
class _Body:
    raw_bodies: Mapping[int, bytes | RawSpan]   # id(message/* part) -> its exact raw body
    hint_charset: str | None
    streamed: Mapping[int, RawSpan] = field(default_factory=dict)  # id(part) -> large body
    segments: list[_Segment] = field(default_factory=list)
    forwarded: list[str] = field(default_factory=list)
    attachments: list[ParsedAttachment] = field(default_factory=list)
    signed: bool = False
    encrypted: bool = False
    defects: list[str] = field(default_factory=list)

    def child(self) -> _Body:
        return _Body(self.raw_bodies, self.hint_charset, self.streamed, defects=self.defects)


def extract_body(root: Message, raw_bodies: Mapping[int, bytes | RawSpan],
                 streamed: Mapping[int, RawSpan] | None = None) -> MailBody:
    """Body text, HTML and attachments of the mail `root` (see the module docstring).
    `streamed`: parts whose (large) body the parser left in the raw mail; as attachments
    they are decoded only when stored."""
    body = _Body(raw_bodies, root.get_content_charset(), streamed or {})
    _visit(root, body, in_report=False)
    html, remote_images = _segments_html(body.segments)
    return MailBody(
        text=_segments_text(body.segments), html=html, remote_images=remote_images,
        forwarded_text="\n\n".join(body.forwarded), attachments=body.attachments,
        signed=body.signed, encrypted=body.encrypted, defects=body.defects)


def _segments_text(segments: list[_Segment]) -> str:
    pieces = [s.plain if s.plain is not None else html_to_text(s.html or "", mark_quotes=True)
              for s in segments]
    return "\n\n".join(p.strip("\n") for p in pieces if p.strip())


def _segments_html(segments: list[_Segment]) -> tuple[str | None, int]:
    """The HTML to show (None without an HTML part) and how many remote images it lost."""
    if not any(s.html is not None for s in segments):
        return None, 0
    pieces, remote = [], 0
    for segment in segments:
        if segment.html is None:
            pieces.append(_plain_as_html(segment.plain or ""))
            continue
        sanitized = sanitize_html(segment.html)
        pieces.append(sanitized.html)
        remote += sanitized.remote_images
    return "\n".join(p for p in pieces if p.strip()), remote


def _plain_as_html(text: str) -> str:
    return f'<div style="white-space: pre-wrap">{html.escape(text)}</div>' if text else ""


# ---------------------------------------------------------------- reading the tree


def _visit(part: Message, body: _Body, *, in_report: bool) -> None:
    ctype = content_type(part)
    if ctype.startswith("message/"):
        _visit_message(part, ctype, body, in_report=in_report)
    elif part.is_multipart():
        _visit_multipart(part, ctype, body, in_report=in_report)
    else:
        _visit_leaf(part, ctype, body)


def _visit_multipart(part: Message, ctype: str, body: _Body, *, in_report: bool) -> None:
    parts = children(part)
    if ctype == "multipart/alternative":
        _visit_alternative(parts, body, in_report=in_report)
    elif ctype == "multipart/related":
        _visit_related(part, parts, body, in_report=in_report)
    elif ctype == "multipart/signed" and parts:
        body.signed = True
        _visit(parts[0], body, in_report=in_report)
        for extra in parts[1:]:
            _add_attachment(extra, body)
    elif ctype == "multipart/encrypted":
        body.encrypted = True
        for child in parts:
            _add_attachment(child, body)
    else:
        report = in_report or ctype == "multipart/report"
        for child in parts:
            _visit(child, body, in_report=report)


def _visit_alternative(parts: list[Message], body: _Body, *, in_report: bool) -> None:
    """RFC 2046 §5.1.4: the same content in several forms; we want one plain, one HTML."""
    subs: list[_Body] = []
    plain: _Body | None = None
    rich: _Body | None = None
    for child in parts:
        sub = body.child()
        _visit(child, sub, in_report=in_report)
        subs.append(sub)
        if plain is None and any(s.plain is not None for s in sub.segments):
            plain = sub
        if any(s.html is not None for s in sub.segments):
            rich = sub                        # the last one is the richest (§5.1.4)
    if plain is not None or rich is not None:
        text = _segments_text(plain.segments) if plain is not None else None
        markup = "\n".join(s.html for s in rich.segments if s.html is not None) \
            if rich is not None else None
        body.segments.append(_Segment(plain=text, html=markup))
    for sub in subs:
        # Other renderings of the same text are dropped; parts that are not text (a
        # text/calendar invitation, say) are kept.
        if sub is plain or sub is rich or not sub.segments:
            body.attachments.extend(sub.attachments)
            body.forwarded.extend(sub.forwarded)
            body.signed |= sub.signed
            body.encrypted |= sub.encrypted


def _visit_related(part: Message, parts: list[Message], body: _Body, *,
                   in_report: bool) -> None:
    """RFC 2387: the root (the `start` parameter, else the first part) is the body; the other
    parts are resources it refers to by Content-ID."""
    if not parts:
        return
    start = content_id(part.get_param("start")) if part.get_param("start") else None
    root = next((c for c in parts if start and content_id(c.get("content-id")) == start),
                parts[0])
    _visit(root, body, in_report=in_report)
    for child in parts:
        if child is not root:
            inline = child.get_content_disposition() != "attachment"
            _add_attachment(child, body, inline=inline)


def _visit_message(part: Message, ctype: str, body: _Body, *, in_report: bool) -> None:
    """message/*: kept byte for byte as an attachment; a forwarded mail's text is appended."""
    inner = children(part)
    name = message_filename(part, inner[0] if inner else None, ctype)
    data = body.raw_bodies.get(id(part))
    if data is None:
        data = _regenerate(part)
    body.attachments.append(ParsedAttachment(
        name, ctype, data, content_id(part.get("content-id")),
        part.get_content_disposition() == "inline"))
    if ctype in FORWARDED_TYPES and inner and not in_report:
        body.forwarded.append(_forwarded_section(inner[0], body))


def _forwarded_section(inner: Message, body: _Body) -> str:
    sub = body.child()
    _visit(inner, sub, in_report=False)
    header_lines = []
    for name in ("From", "Date", "Subject", "To", "Cc"):
        value = inner.get(name)
        if value:
            header_lines.append(f"{name}: {header_text(str(value), body.hint_charset)}")
    text = "\n\n".join(t for t in (_segments_text(sub.segments), *sub.forwarded) if t)
    head = "\n".join(["---------- Forwarded message ----------", *header_lines])
    return f"{head}\n\n{text}" if text else head


def _regenerate(part: Message) -> bytes:
    """The body of a message/* part re-serialised (used only when the raw span is unknown)."""
    out = BytesIO()
    generator = BytesGenerator(out, mangle_from_=False, maxheaderlen=0)
    for child in children(part):
        generator.flatten(child, linesep="\n")
    return out.getvalue()


def _visit_leaf(part: Message, ctype: str, body: _Body) -> None:
    if ctype in _SIGNATURE_TYPES:
        body.signed = True
        _add_attachment(part, body)
    elif ctype in _SMIME_TYPES:
        # RFC 8551 §3.2.2: smime-type says what is inside; signed-data is readable, but only
        # after decoding the CMS structure, so it is kept as an attachment either way.
        smime_type = str(part.get_param("smime-type") or "").lower()
        if smime_type in ("signed-data", "certs-only"):
            body.signed = True
        else:
            body.encrypted = True
        _add_attachment(part, body)
    elif ctype == "application/pgp-encrypted":
        body.encrypted = True
        _add_attachment(part, body)
    elif _is_body_text(part, ctype):
        _add_body_text(part, ctype, body)
    else:
        _add_attachment(part, body)


def _is_body_text(part: Message, ctype: str) -> bool:
    if part.get_content_disposition() == "attachment" or raw_filename(part):
        return False
    # A multipart whose boundary never appears was left as text by the parser.
    return ctype in ("text/plain", "text/html") or ctype.startswith("multipart/")


def _add_body_text(part: Message, ctype: str, body: _Body) -> None:
    data = _payload_bytes(part, body)
    charset = part.get_content_charset()
    if ctype == "text/html" and charset is None:
        charset = html_meta_charset(data)
    text, defect = decode_bytes(data, charset)
    if defect:
        body.defects.append(f"{defect} ({ctype})")
    text = normalize_newlines(text)
    if ctype == "text/html":
        if html_too_deep(text):
            body.defects.append("html: nested too deeply to sanitize; kept as text only")
            body.segments.append(_Segment(plain=strip_tags(text)))
        else:
            body.segments.append(_Segment(html=text))
        return
    text, uu_files = extract_uuencoded(text)
    body.attachments.extend(uu_files)
    armor = strip_pgp_armor(text)
    body.signed |= armor.signed
    body.encrypted |= armor.encrypted
    body.segments.append(_Segment(plain=armor.text))


def _payload_bytes(part: Message, body: _Body) -> bytes:
    streamed = body.streamed.get(id(part))
    if streamed is not None:                # a large text body: read as text, so whole
        return b"".join(streamed.chunks())
    if is_uuencode_transfer_encoding(transfer_encoding(part)):
        try:
            raw = part.get_payload(decode=False)
        except (ValueError, LookupError):     # compat32 decodes with the declared charset
            raw = None
        if isinstance(raw, str):
            return decode_uu_lines(to_bytes(raw))
    data = part.get_payload(decode=True)
    return data if isinstance(data, bytes) else b""


def _add_attachment(part: Message, body: _Body, *, inline: bool | None = None) -> None:
    ctype = content_type(part)
    if ctype.startswith("message/"):
        _visit_message(part, ctype, body, in_report=True)
        return
    if part.is_multipart():
        # A multipart where a single part was expected (e.g. inside multipart/signed):
        # keep what it carries instead of dropping it.
        for child in children(part):
            _add_attachment(child, body, inline=inline)
        return
    data: bytes | RawSpan = body.streamed.get(id(part)) or _payload_bytes(part, body)
    name = attachment_filename(part, ctype, len(body.attachments) + 1, body.hint_charset)
    if is_tnef(ctype, name):
        if isinstance(data, RawSpan):   # a large winmail.dat: it must be whole to unpack
            data = b"".join(data.chunks())
        unpacked = unpack_tnef(data)
        if unpacked is not None:
            body.attachments.extend(unpacked)
            return
        body.defects.append("tnef: winmail.dat could not be unpacked; kept as it is")
    cid = content_id(part.get("content-id"))
    if inline is None:
        disposition = part.get_content_disposition()
        inline = disposition == "inline" or (disposition is None and cid is not None
                                             and ctype.startswith("image/"))
    body.attachments.append(ParsedAttachment(name, ctype, data, cid, inline))


__all__ = ["MailBody", "extract_body"]
