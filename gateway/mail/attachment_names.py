"""Names for attachments and the ids that tie inline parts to HTML, and the one cleaning
of every file name that enters the gateway.

In: one MIME part (compat32 `Message`), or any file name (`clean_filename`: a mail part's,
a portal form's, a file-exchange upload's, a stored one about to be shown or downloaded).
Out: a file name that is never empty, has no path components, no control, format or bidi
characters and is at most 200 characters (RFC 2183 filename, RFC 2231 and RFC 2047
encodings decoded); or a Content-ID without angle brackets (RFC 2392).
Nothing here raises for any part or name.
"""

from __future__ import annotations

from email.message import Message

from gateway.mail.mime_text import collapse_whitespace, header_text

FORWARDED_TYPES = frozenset({"message/rfc822", "message/global"})
_EXTENSIONS = {
    "text/plain": ".txt", "text/html": ".html", "text/calendar": ".ics", "image/png": ".png",
    "image/jpeg": ".jpg", "image/gif": ".gif", "application/pdf": ".pdf",
    "message/rfc822": ".eml", "message/global": ".eml", "application/pgp-signature": ".asc",
    "application/pkcs7-signature": ".p7s", "application/x-pkcs7-signature": ".p7s",
    "application/pkcs7-mime": ".p7m", "application/x-pkcs7-mime": ".p7m",
    "application/pgp-encrypted": ".txt", "application/ms-tnef": ".dat",
}
_MAX_NAME = 200


def content_id(value: object) -> str | None:
    """A Content-ID header value without its angle brackets (RFC 2392), or None."""
    if not value:
        return None
    cid = str(value).strip()
    if cid.startswith("<") and ">" in cid:
        cid = cid[1:cid.index(">")]
    cid = cid.strip()
    return cid or None


def raw_filename(part: Message) -> str | None:
    """The filename (RFC 2183) or Content-Type name parameter as the stdlib decodes it."""
    try:
        name = part.get_filename()
    except (ValueError, LookupError, TypeError, UnicodeError):
        return None
    return str(name) if name else None


def attachment_filename(part: Message, ctype: str, number: int, hint: str | None) -> str:
    """RFC 2183 filename, else Content-Type name, else the description, else made up."""
    name = _given_name(part, hint)
    if name:
        return name
    extension = _EXTENSIONS.get(ctype, ".bin")
    description = clean_filename(header_text(str(part.get("content-description", "")), hint))
    if description:
        return description + extension
    return f"attachment-{number}{extension}"


def message_filename(part: Message, inner: Message | None, ctype: str) -> str:
    """A forwarded mail is named after its subject (as mail clients do), else its
    Content-Description ("Undelivered Message"), else "Forwarded message"."""
    name = _given_name(part, None)
    if name:
        return name
    extension = _EXTENSIONS.get(ctype, ".txt")
    candidates = [inner.get("subject") if inner is not None and ctype in FORWARDED_TYPES
                  else None, part.get("content-description")]
    for candidate in candidates:
        if candidate:
            name = clean_filename(collapse_whitespace(header_text(str(candidate))))
            if name:
                return name + extension
    return ("Forwarded message" if ctype in FORWARDED_TYPES else "attachment") + extension


def _given_name(part: Message, hint: str | None) -> str:
    """The name the part gives itself (filename or Content-Type name), decoded and made
    safe; "" when it gives none."""
    raw = raw_filename(part)
    return clean_filename(header_text(raw, hint)) if raw else ""


def clean_filename(name: str, fallback: str = "") -> str:
    """The one cleaning of a file name from outside (mail, portal forms, file exchange):
    the last path component (`/` or `\\`), whitespace of any kind as one space, without
    characters that are not printable (Unicode categories C* and Z* but the space: control
    characters, NUL, and the bidi and zero-width format characters, so U+202E cannot show
    `x\u202egpj.exe` as `xexe.jpg`), not hidden (no leading dots), at most 200 characters
    with a short extension kept; `fallback` when nothing is left."""
    name = name.replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(" " if ch.isspace() else ch for ch in name if ch.isprintable()
                   or ch.isspace())
    name = " ".join(name.split()).lstrip(".").strip()
    if len(name) > _MAX_NAME:
        _stem, dot, extension = name.rpartition(".")
        keep = extension if dot and len(extension) <= 10 else ""
        name = name[: _MAX_NAME - len(keep) - 1].rstrip() + ("." + keep if keep else "")
    return name or fallback
