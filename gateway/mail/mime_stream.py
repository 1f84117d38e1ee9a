"""Decoding a large MIME body piece by piece, straight from the raw mail. Pure: no I/O.

In: the raw mail, the span of one part's body and its Content-Transfer-Encoding. Out: the
decoded content as chunks of about `CHUNK` bytes, so a 25 MiB attachment is stored
without ever being whole in memory a second time (the raw mail is already there).

Decodes as the stdlib does for the encodings it is used for (`parsing` keeps every other
encoding on the stdlib's path): base64 ignores characters outside its alphabet and
completes missing padding (as `email._encoded_words.decode_b`); quoted-printable is
`binascii.a2b_qp` per line (as `quopri`); 7bit, 8bit, binary and none are the bytes as
they are. Tests compare both ways on every attachment of the corpus.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator

CHUNK = 1024 * 1024
STREAMED_ENCODINGS = frozenset({"base64", "quoted-printable", "7bit", "8bit", "binary", ""})
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_NOT_BASE64 = bytes(set(range(256)) - set(_BASE64_ALPHABET))


def decoded_chunks(raw: bytes, start: int, end: int, encoding: str) -> Iterator[bytes]:
    """The decoded body raw[start:end] in `encoding` (one of `STREAMED_ENCODINGS`)."""
    if encoding == "base64":
        yield from _base64(raw, start, end)
    elif encoding == "quoted-printable":
        yield from _quoted_printable(raw, start, end)
    else:
        for offset in range(start, end, CHUNK):
            yield raw[offset:min(offset + CHUNK, end)]


def _base64(raw: bytes, start: int, end: int) -> Iterator[bytes]:
    pending = b""
    for offset in range(start, end, CHUNK):
        text = pending + raw[offset:min(offset + CHUNK, end)].translate(None, _NOT_BASE64)
        usable = len(text) - len(text) % 4
        if usable:
            yield _b64decode(text[:usable])
        pending = text[usable:]
    if pending.strip(b"="):
        yield _b64decode(pending + b"=" * (-len(pending) % 4))


def _b64decode(text: bytes) -> bytes:
    try:
        return binascii.a2b_base64(text)
    except binascii.Error:                # a lone trailing character: nothing to decode
        return b""


def _quoted_printable(raw: bytes, start: int, end: int) -> Iterator[bytes]:
    offset = start
    while offset < end:
        stop = min(offset + CHUNK, end)
        if stop < end:                     # cut after a line break: no "=XX" is split
            newline = raw.rfind(b"\n", offset, stop)
            stop = newline + 1 if newline > offset else stop
        yield binascii.a2b_qp(raw[offset:stop])
        offset = stop
