"""The one walk over a parsed MIME tree: which parts there are, how deep, in which order.

In: a stdlib `email.message.Message` tree, parsed with the compat32 or the default policy.
Out: `Part`s in document order (depth first, pre-order), each with its lower-case content
type, its depth (0 for the mail itself) and whether it lies inside a returned mail; or, for
one part, its sub-parts (`children`), the mail inside a `message/*` part
(`attached_message`), its content type and transfer encoding.

Who walks with it: the parser checks the stdlib's tree against its `ParseLimits` and finds
its `message/*` parts (`parse`), `mime_body` takes each part's sub-parts from `children`
while it interprets multipart/alternative, related, signed ...; the bounce and loop readers
(`originals`, `classify.bounces`, `classify.loop_mail`) look at every part.

Guarantees: pure; never raises on malformed input (a part whose payload cannot be read has
no sub-parts; a content type that cannot be read is text/plain). Bounded: `walk` yields at
most `max_parts` parts and follows at most `max_depth` levels - by default MAX_PARTS and
MAX_DEPTH, what the readers of automatic mail look at; the parser passes its own limits.
A leaf's payload is never asked for while walking: compat32 decodes it on request (with the
declared charset, which may be bogus), and walking needs no leaf's content.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message

MAX_PARTS = 200            # MIME parts looked at per mail by the readers of automatic mail
MAX_DEPTH = 8              # nesting of multiparts / attached messages they follow

# Parts that carry a returned mail (RFC 3462, RFC 6532, and what MTAs send instead).
ORIGINAL_TYPES = frozenset({"message/rfc822", "message/global", "text/rfc822-headers",
                            "message/rfc822-headers", "message/global-headers", "text/rfc822"})
# RFC 3464 delivery status: the parser stores its field blocks as pseudo-messages.
STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})


@dataclass(frozen=True)
class Part:
    message: Message
    content_type: str          # lower-case type/subtype
    inside_original: bool      # below a returned-message part: not the report's own words
    depth: int                 # 0 for the mail itself

    @property
    def broken_multipart(self) -> bool:
        """A multipart whose boundary was never found: its whole body is one text."""
        return self.content_type.startswith("multipart/") and not self.message.is_multipart()


def walk(mime: Message | None, *, max_parts: int | None = MAX_PARTS,
         max_depth: int | None = MAX_DEPTH, into_status: bool = False) -> Iterator[Part]:
    """Every part, depth first (pre-order), at most `max_parts` of them and none deeper than
    `max_depth` (None: no such bound; for the parser, which must see every part of the
    tree the stdlib built, and raises on its own limits instead of stopping).

    The field blocks of a delivery-status part are not parts of the mail and are left out,
    unless `into_status` (the parser counts them: so does the stdlib's parser)."""
    if mime is None:
        return
    stack: list[tuple[Message, int, bool]] = [(mime, 0, False)]
    seen = 0
    while stack and (max_parts is None or seen < max_parts):
        message, depth, inside = stack.pop()
        seen += 1
        ctype = content_type(message)
        yield Part(message, ctype, inside, depth)
        if (max_depth is not None and depth >= max_depth) or (
                ctype in STATUS_TYPES and not into_status):
            continue
        below = inside or ctype in ORIGINAL_TYPES
        stack.extend((child, depth + 1, below) for child in reversed(children(message)))


def children(message: Message) -> list[Message]:
    """The sub-parts of a multipart or `message/*` part, in order; [] for a leaf."""
    if not message.is_multipart():
        return []
    payload = payload_of(message)
    return [p for p in payload if isinstance(p, Message)] if isinstance(payload, list) else []


def attached_message(part: Message) -> Message | None:
    """The mail inside a `message/*` part, if the parser made one."""
    inner = children(part)
    return inner[0] if inner else None


def payload_of(message: Message) -> object:
    """The undecoded payload: a list of parts, a str, or None when unreadable."""
    try:
        return message.get_payload()
    except Exception:     # a broken part is skipped, never fatal
        return None


def content_type(message: Message) -> str:
    """Lower-case type/subtype (RFC 2045 §5.2 defaults included); text/plain if unreadable."""
    try:
        return message.get_content_type().lower()
    except Exception:
        return "text/plain"


def transfer_encoding(message: Message) -> str:
    """The Content-Transfer-Encoding, lower-case, "" when there is none."""
    return str(message.get("content-transfer-encoding", "")).strip().lower()
