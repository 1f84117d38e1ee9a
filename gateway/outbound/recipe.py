"""A queued mail's recipe: what rendering it needs, as JSON, so the outbox renders it at
delivery instead of the transaction that caused it (the worker's apply transaction).

In: the values `MailRenderer.compose` decided at queue time (event, language, context,
headers with the Message-ID, Date and Subject fixed). Out: a JSON text stored in
`outbound_mail.recipe`, and back.

Guarantees:
- `decode(encode(r)) == r` for every recipe whose context holds only: str, int, float,
  bool, None, lists and tuples (back as lists), dicts with string keys, `datetime`, `date`,
  and the context dataclasses in `_DATACLASSES`. Anything else raises `TypeError` at
  queue time, naming the key: a value the recipe cannot carry is a bug caught where it
  is made, never a mail that renders differently at delivery.
- A datetime keeps its UTC offset (a zone becomes its fixed offset at that moment, which
  shows the same local time); a naive one stays naive.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from gateway.mail.attachment_scan import ScannedFile
from gateway.outbound.headers import AutoSubmitted

VERSION = 1
# dataclasses a context may hold, by the tag they are stored under
_DATACLASSES: dict[str, type] = {"ScannedFile": ScannedFile}


def register(kind: type) -> type:
    """Class decorator: the context dataclass `kind` may be stored in a recipe."""
    _DATACLASSES[kind.__name__] = kind
    return kind


@dataclass(frozen=True)
class Recipe:
    """Everything `MailRenderer.finish` needs to write the mail's bytes. The addresses are
    (name, address) pairs already checked to be writable; `references` is the finished
    References list; `sender` the From as written (for `staff-answer` "AGENT via QUEUE")."""

    event: str
    language: str               # the templates' language (the fallback, when asked-for lacked)
    context: Mapping[str, Any]  # the caller's context, not yet completed by the renderer
    ticket_number: str | None
    sender_name: str            # the queue's name, for the templates' `sender_name`
    subject: str                # rendered and tagged at queue time
    date: datetime
    sender: tuple[str, str]
    to: tuple[tuple[str, str], ...]
    reply_to: tuple[str, str] | None
    in_reply_to: str | None
    references: tuple[str, ...]
    auto_submitted: AutoSubmitted
    sign_for: str               # the domain whose DKIM key signs it (if one is configured)
    # equal for recipes whose text and HTML are the same (a notice to several staff
    # members); set by `decode`, not stored
    texts_key: str = dataclasses.field(default="", compare=False)


def encode(recipe: Recipe) -> str:
    """The recipe as JSON text. Raises `TypeError` for a context value it cannot carry."""
    return json.dumps({
        "v": VERSION, "event": recipe.event, "language": recipe.language,
        "context": _encode(recipe.context, "context"), "ticket_number": recipe.ticket_number,
        "sender_name": recipe.sender_name, "subject": recipe.subject,
        "date": recipe.date.isoformat(), "sender": list(recipe.sender),
        "to": [list(pair) for pair in recipe.to],
        "reply_to": list(recipe.reply_to) if recipe.reply_to else None,
        "in_reply_to": recipe.in_reply_to, "references": list(recipe.references),
        "auto_submitted": recipe.auto_submitted, "sign_for": recipe.sign_for,
    }, ensure_ascii=False, separators=(",", ":"))


def decode(text: str) -> Recipe:
    """The recipe `encode` wrote. Raises `ValueError` for another version or a text that is
    not a whole recipe (damaged, cut short, of another shape)."""
    try:
        return _decode_recipe(json.loads(text))
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"not a recipe ({type(exc).__name__}: {exc})") from exc


def _decode_recipe(data: Any) -> Recipe:
    if data.get("v") != VERSION:
        raise ValueError(f"recipe version {data.get('v')!r}, this release reads {VERSION}")
    sender_name, sender_address = data["sender"]
    return Recipe(
        event=data["event"], language=data["language"], context=_decode(data["context"]),
        ticket_number=data["ticket_number"], sender_name=data["sender_name"],
        subject=data["subject"], date=datetime.fromisoformat(data["date"]),
        sender=(sender_name, sender_address),
        to=tuple((name, address) for name, address in data["to"]),
        reply_to=(data["reply_to"][0], data["reply_to"][1]) if data["reply_to"] else None,
        in_reply_to=data["in_reply_to"], references=tuple(data["references"]),
        auto_submitted=data["auto_submitted"], sign_for=data["sign_for"],
        texts_key=json.dumps([data["event"], data["language"], data["ticket_number"],
                              data["sender_name"], data["context"]], sort_keys=True))


def _encode(value: Any, where: str) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_encode(item, where) for item in value]
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise TypeError(f"{where}: a dict with keys that are not strings")
        items = {key: _encode(item, f"{where}.{key}") for key, item in value.items()}
        # a plain dict that looks like a tagged value is wrapped, so it comes back as a dict
        return {"$dict": items} if len(items) == 1 and next(iter(items)).startswith("$") \
            else items
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    kind = type(value)
    if dataclasses.is_dataclass(value) and _DATACLASSES.get(kind.__name__) is kind:
        return {f"${kind.__name__}": {field.name: _encode(getattr(value, field.name),
                                                          f"{where}.{field.name}")
                                      for field in dataclasses.fields(value)}}
    raise TypeError(f"{where}: a {kind.__name__} cannot be stored in a queued mail's recipe")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        [(key, inner)] = value.items()
        if key == "$dict":
            return {k: _decode(v) for k, v in inner.items()}
        if key == "$datetime":
            return datetime.fromisoformat(inner)
        if key == "$date":
            return date.fromisoformat(inner)
        if key.startswith("$"):
            kind = _DATACLASSES.get(key[1:])
            if kind is None:
                raise ValueError(f"recipe: unknown value type {key[1:]!r}")
            return kind(**{k: _decode(v) for k, v in inner.items()})
    return {k: _decode(v) for k, v in value.items()}
