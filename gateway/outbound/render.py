"""Rendering outbound mail: an event, a language and its context in, an `OutgoingMail` out.

Templates are Jinja2 files in `mail_templates/` (beside the `gateway` package: the repo root
in a checkout, site-packages in an installed wheel), three per event and language:
`<event>.<lang>.subject.j2` (one line), `<event>.<lang>.txt.j2`, `<event>.<lang>.html.j2`;
partials start with `_`. An admin's `[outbound] templates_dir` is searched first, so a file
of the same name there overrides ours (partials included).

Guarantees:
- Every context key an event needs (`REQUIRED_CONTEXT`) is checked before rendering; a
  missing one raises `RenderError` naming the event and the key. Templates render with
  `StrictUndefined`: a variable the context lacks is an error, never an empty string.
- HTML parts are autoescaped; text parts and subjects are not (they are not HTML).
- The language asked for is used when all three of its files exist, else English, else
  `RenderError`; one mail never mixes languages.
- Headers: see `headers.py` (no CR/LF can reach a header, CRLF output, RFC 3834
  Auto-Submitted, our Message-ID, References). Links are built from `base_url` only.
- Nothing here does I/O but reading template files. `RenderError` is a bug or a
  configuration problem (unknown event, missing key, broken template); `HeaderError` is an
  address we cannot write (say a non-ASCII local part). Either way nothing is produced and
  the caller decides; the mail that caused it is never dropped for it.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import jinja2
from markupsafe import Markup, escape

import gateway
from gateway.outbound import recipe
from gateway.outbound.dkim import DkimSigner
from gateway.outbound.headers import (
    AutoSubmitted,
    MailIdentity,
    MessageHeaders,
    bare_address,
    build_message,
    check_mailbox,
    new_message_id,
    split_address,
    tagged_subject,
    thread_references,
)
from gateway.outbound.mail import EVENTS, OutgoingMail
from gateway.tickets.ticket import PRIORITY_NAMES

__all__ = ["OPTIONAL_CONTEXT", "REQUIRED_CONTEXT", "FaqArticle", "GuideAnswer", "MailIdentity",
           "MailRenderer", "RenderError", "RenderedParts", "default_templates_dir"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

FALLBACK_LANGUAGE = "en"
PARTS = ("subject", "txt", "html")
RECHECK_SECONDS = 2.0   # an edited template is used at most this long after the edit

# What the caller must put in `context`, per event (the one place that defines it).
REQUIRED_CONTEXT: Mapping[str, tuple[str, ...]] = {
    "ack": ("customer_name", "title", "template_name", "priority", "answers", "missing"),
    "follow-up": ("customer_name", "title"),
    "status": ("customer_name", "title", "old_state", "new_state"),
    "staff-answer": ("customer_name", "title", "agent_name", "body"),
    "reject": ("customer_name", "reason", "original_subject"),
    "staff-notify": ("kind", "customer_name", "customer_address", "title", "body", "priority"),
    "delivery-failed": ("recipient", "original_subject", "diagnostic"),
    "command-failed": ("agent_name", "title", "errors"),
    "kept-as-note": ("agent_name", "title", "path", "detail"),
    # password_mode: [web] password_mode, what confirming the link does ("mail" mails one)
    "password-token": ("customer_name", "username", "token", "expires", "password_mode"),
    "new-password": ("customer_name", "username", "password"),
    "file-link": ("customer_name", "token", "expires"),
    "faq-answer": ("customer_name", "question", "articles"),
    # entries: dicts of `outbound/digest.py`; as_of: the moment the overview is for
    "staff-digest": ("staff_name", "entries", "queues", "as_of"),
    "guide-complete": ("customer_name", "title", "answers"),
    # target: first-response | solution; due: when (a datetime)
    "sla-reminder": ("title", "priority", "target", "due"),
    "sla-escalation": ("title", "priority", "target", "due"),
    # close_on: when the ticket will be closed (None: it is not closed by waiting)
    "pending-reminder": ("customer_name", "title", "close_on"),
    "pending-closed": ("customer_name", "title", "days"),
}
# Keys an event may have; absent ones are set to these defaults.
OPTIONAL_CONTEXT: Mapping[str, Mapping[str, Any]] = {
    "ack": {"faq": ()},                     # FaqArticles suggested to the customer
    "reject": {"max_size": None, "template_name": None},
    # too_large: the size of a mail over the limit ([inbound] max_message_size: max_size), its
    # text kept; left_out: its attachments (mail.attachment_scan.ScannedFile: name,
    # content_type, size), which the customer is asked to upload
    "file-link": {"too_large": None, "left_out": (), "max_size": None},
    "faq-answer": {"other_language": False},   # no article in the answer's language matched
    # unverified: why the sender failed DMARC; claimed_ticket: the ticket it was sent to
    "staff-notify": {"template_name": None, "unverified": None, "claimed_ticket": None,
                     "assignee": None,      # the assignee's address, if any
                     "answers": (),         # GuideAnswers the mail gave (new or recorded)
                     "first_response_due": None, "solution_due": None},   # service levels
    "sla-escalation": {"assignee": ""},     # the ticket's owner, when it has one
    "command-failed": {"done": ()},         # nothing is carried out now; for old overrides
    "staff-digest": {"requested": False},   # True: the answer to a `list` mail
}
# Events about one ticket: `ticket_number` is required for them.
TICKET_EVENTS = frozenset({"ack", "follow-up", "status", "staff-answer", "staff-notify",
                           "command-failed", "kept-as-note", "guide-complete",
                           "sla-reminder", "sla-escalation", "pending-reminder",
                           "pending-closed"})
# Answers to a customer's mail (RFC 3834 "auto-replied" when they answer one).
REPLY_EVENTS = frozenset({"ack", "follow-up", "reject", "faq-answer", "guide-complete"})
# Set by the renderer; a caller's context may not contain them.
COMMON_CONTEXT = ("event", "language", "base_url", "ticket_number", "ticket_url",
                  "login_url", "sender_name", "confirm_url", "file_url")

REJECT_REASONS = ("no-subject", "unknown-sender", "template-not-available", "too-large")
SLA_TARGETS = ("first-response", "solution")
NOTIFY_KINDS = ("new", "reply", "files")   # files: uploaded via the file exchange
# the routing rules a staff From may come by (kept-as-note says which; routing/rules.py)
STAFF_PATHS = ("staff-token", "reply-token", "in-reply-to", "references", "subject-tag")
STATE_NAMES = {
    "de": {"new": "neu", "open": "offen", "pending": "wartend", "closed": "geschlossen"},
    "en": {"new": "new", "open": "open", "pending": "pending", "closed": "closed"},
}
_REPLY_PREFIX = re.compile(r"^(\s*(re|aw|antw|wg|fw|fwd)\s*(\[\d+\])?\s*:)+\s*", re.IGNORECASE)
PRIORITY_NAMES_DE = {1: "sehr niedrig", 2: "niedrig", 3: "normal", 4: "hoch", 5: "sehr hoch"}


class RenderError(Exception):
    """A mail cannot be rendered: unknown event, missing context, missing or broken template.
    A bug or a configuration problem; the message says which event, key or file."""


@recipe.register
@dataclass(frozen=True)
class GuideAnswer:
    """One answered question of a conversation guide, as shown in the acknowledgment."""

    label: str
    value: str


@recipe.register
@dataclass(frozen=True)
class FaqArticle:
    """One FAQ hit for `faq-answer` (and `ack`'s suggestions): its title, a short extract and
    the absolute URL."""

    title: str
    extract: str
    url: str
    language: str = ""          # "de"/"en": the article's language, shown when it differs


@dataclass(frozen=True)
class RenderedParts:
    """The rendered subject (tagged, one line), text and HTML of one mail."""

    language: str
    subject: str
    text: str
    html: str


def default_templates_dir() -> Path:
    """`mail_templates/` beside the `gateway` package: in a source checkout (or an editable
    install) the repo root; in a wheel install site-packages, where pyproject ships it."""
    return Path(gateway.__file__).resolve().parent.parent / "mail_templates"


class MailRenderer:
    """Renders the mails of `EVENTS`. Build one at start (`app.py`) and share it; it holds
    the Jinja environment (templates are compiled once, and reloaded when a file changed,
    within `RECHECK_SECONDS`)."""

    def __init__(self, *, base_url: str, override_dir: Path | None = None,
                 templates_dir: Path | None = None, dkim: DkimSigner | None = None,
                 timezone: tzinfo = UTC) -> None:
        self.base_url = base_url.rstrip("/")
        self.dkim = dkim
        self._found: dict[tuple[str, str], tuple[str, list[jinja2.Template]]] = {}
        self._checked = time.monotonic()
        shipped = templates_dir or default_templates_dir()
        if not shipped.is_dir():
            raise RenderError(f"mail templates not found at {shipped}")
        searched = [str(override_dir)] if override_dir else []
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([*searched, str(shipped)]),
            undefined=jinja2.StrictUndefined,
            auto_reload=False,      # `_templates` checks for edits, every RECHECK_SECONDS
            autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",),
                                                default_for_string=False, default=False),
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
        )

        @jinja2.pass_context
        def datetime_filter(context: jinja2.runtime.Context, value: datetime) -> str:
            return _format_datetime(value, timezone, str(context.get("language")))

        self.env.filters.update(state_name=_state_name, priority_label=_priority_label,
                                size=_size, nl2br=_nl2br, datetime=datetime_filter,
                                without_reply_prefix=_without_reply_prefix)

    # -- the whole mail -------------------------------------------------------------------

    def render(self, event: str, language: str, context: Mapping[str, Any], *,
               sender: MailIdentity, to: Sequence[MailIdentity | tuple[str, str]],
               reply_to: MailIdentity | str | None = None, ticket_number: str | None = None,
               in_reply_to: str | None = None, references: Sequence[str] = (),
               auto_submitted: AutoSubmitted | None = None, ticket_id: int | None = None,
               now: datetime | None = None) -> OutgoingMail:
        """One finished mail: `compose` and `finish` in one go (the same bytes the outbox
        writes for the composed mail)."""
        mail = self.compose(event, language, context, sender=sender, to=to, reply_to=reply_to,
                            ticket_number=ticket_number, in_reply_to=in_reply_to,
                            references=references, auto_submitted=auto_submitted,
                            ticket_id=ticket_id, now=now)
        assert mail.recipe is not None
        return replace(mail, raw=self.finish(mail.recipe, mail.message_id), recipe=None)

    def compose(self, event: str, language: str, context: Mapping[str, Any], *,
                sender: MailIdentity, to: Sequence[MailIdentity | tuple[str, str]],
                reply_to: MailIdentity | str | None = None, ticket_number: str | None = None,
                in_reply_to: str | None = None, references: Sequence[str] = (),
                auto_submitted: AutoSubmitted | None = None, ticket_id: int | None = None,
                now: datetime | None = None) -> OutgoingMail:
        """One mail for the outbox, its bytes left for delivery: the outbox renders the text
        and HTML parts (`finish`) outside the transaction that queues it.

        Everything that can fail is decided here, so a mail that cannot be written fails
        where it is caused: the context is checked, the templates looked up, the subject
        rendered, every address written (`HeaderError`), the Message-ID and Date fixed.
        `finish` then writes the same bytes on every attempt, as long as the templates
        and the DKIM key stay the same.

        `language`: the one already decided (the customer's, else the queue's).
        `sender`: the queue's identity; for `staff-answer` the From name becomes
        "AGENT via QUEUE NAME" with the queue's address. `to`: (name, address) pairs.
        `in_reply_to`/`references`: the mail answered and the ticket's thread.
        `auto_submitted`: None = the event's default: "auto-replied" for the answers in
        `REPLY_EVENTS` when `in_reply_to` is given, nothing for `staff-answer` (a person
        wrote it), else "auto-generated"; "no" leaves the header out.
        """
        if not to:
            raise RenderError(f"{event}: a mail needs at least one recipient")
        values = self._context(event, language, context, ticket_number, sender)
        used, templates = self._templates(event, language)
        values["language"] = used
        subject = tagged_subject(_render_one(event, templates[0], values), ticket_number)
        recipients = [r if isinstance(r, MailIdentity) else MailIdentity(*r) for r in to]
        from_ = sender
        if event == "staff-answer":
            agent = str(context["agent_name"]).strip()
            name = f"{agent} via {sender.name}" if agent and sender.name else agent or sender.name
            from_ = MailIdentity(name, sender.address)
        reply = MailIdentity("", reply_to) if isinstance(reply_to, str) else reply_to
        for identity in (from_, *recipients, *([reply] if reply else [])):
            check_mailbox(identity)
        _, domain = split_address(sender.address)
        message_id = new_message_id(domain)
        try:
            text = recipe.encode(recipe.Recipe(
                event=event, language=used, context=context, ticket_number=ticket_number,
                sender_name=sender.name, subject=subject, date=now or datetime.now(UTC),
                sender=(from_.name, from_.address),
                to=tuple((r.name, r.address) for r in recipients),
                reply_to=(reply.name, reply.address) if reply else None,
                in_reply_to=in_reply_to, references=thread_references(references, in_reply_to),
                auto_submitted=auto_submitted or _default_auto_submitted(event, in_reply_to),
                sign_for=domain))
        except TypeError as exc:
            raise RenderError(f"{event}: {exc}") from exc
        return OutgoingMail(event=event, envelope_from=bare_address(sender.address),
                            recipients=tuple(bare_address(r.address) for r in recipients),
                            message_id=message_id, recipe=text, ticket_id=ticket_id)

    def finish(self, recipe_text: str, message_id: str, *,
               texts: dict[str, tuple[str, str]] | None = None) -> bytes:
        """The bytes of a composed mail: its text and HTML parts rendered from the recipe,
        with the headers `compose` fixed (and a DKIM signature when a key is configured).
        Raises `RenderError` when the recipe or a template cannot be rendered (a template
        edited since, say); nothing is produced then. `texts`: a cache the caller keeps for
        a batch of mails, so a notice that says the same to several people (each with a
        mail of their own) is rendered once."""
        try:
            planned = recipe.decode(recipe_text)
        except ValueError as exc:
            raise RenderError(f"{message_id}: the queued recipe cannot be read: {exc}") from exc
        event, sender = planned.event, MailIdentity(*planned.sender)
        rendered = texts.get(planned.texts_key) if texts is not None else None
        if rendered is None:
            values = self._context(event, planned.language, planned.context,
                                   planned.ticket_number, MailIdentity(planned.sender_name, ""))
            _, templates = self._templates(event, planned.language)
            text_part, html_part = templates[1:]
            rendered = (_render_one(event, text_part, values),
                        _render_one(event, html_part, values))
            if texts is not None:
                texts[planned.texts_key] = rendered
        text, html = rendered
        headers = MessageHeaders(
            sender=sender, to=[MailIdentity(*pair) for pair in planned.to],
            subject=planned.subject, message_id=message_id, date=planned.date,
            reply_to=MailIdentity(*planned.reply_to) if planned.reply_to else None,
            in_reply_to=planned.in_reply_to, references=planned.references,
            auto_submitted=planned.auto_submitted)
        raw = build_message(headers, text, html)
        if self.dkim is not None:
            raw = self.dkim.sign(raw, planned.sign_for)
        return raw

    # -- the texts ------------------------------------------------------------------------

    def render_parts(self, event: str, language: str, context: Mapping[str, Any], *,
                     ticket_number: str | None = None,
                     sender: MailIdentity | None = None) -> RenderedParts:
        """Subject, text and HTML without headers (also for previews and `explain`)."""
        values = self._context(event, language, context, ticket_number, sender)
        used, templates = self._templates(event, language)
        values["language"] = used
        subject, text, html = (_render_one(event, template, values) for template in templates)
        return RenderedParts(used, tagged_subject(subject, ticket_number), text, html)

    def _templates(self, event: str, language: str) -> tuple[str, list[jinja2.Template]]:
        """The event's three templates in `language` (else the fallback language). Edited
        files (also included ones: layout, greeting, macros) are reloaded, and the event's
        templates looked up again, at most every `RECHECK_SECONDS`: Jinja's own check
        costs a `stat` per template, include and mail."""
        now = time.monotonic()
        if now - self._checked >= RECHECK_SECONDS:
            self._checked = now
            self._found.clear()
            self._forget_edited()
        found = self._found.get((event, language))
        if found is None:
            found = self._found[(event, language)] = self._look_up(event, language)
        return found

    def _forget_edited(self) -> None:
        """Drop compiled templates whose file changed or went away since they were loaded."""
        cache = self.env.cache
        if cache is None:
            return
        for key, template in list(cache.items()):
            if not template.is_up_to_date:
                del cache[key]

    def _look_up(self, event: str, language: str) -> tuple[str, list[jinja2.Template]]:
        tried = []
        for lang in dict.fromkeys((language, FALLBACK_LANGUAGE)):
            names = [f"{event}.{lang}.{part}.j2" for part in PARTS]
            try:
                templates = [self.env.get_template(name) for name in names]
            except jinja2.TemplateNotFound as exc:
                tried.append(str(exc.name))
                continue
            except jinja2.TemplateSyntaxError as exc:
                raise RenderError(f"{event}: template {exc.name} line {exc.lineno}: "
                                  f"{exc.message}") from exc
            if lang != language:
                log.warning("mail template %s.%s missing (%s); using %s", event, language,
                            ", ".join(tried), lang)
            return lang, templates
        raise RenderError(f"{event}: no templates for language {language!r} "
                          f"or {FALLBACK_LANGUAGE!r} (missing: {', '.join(tried)})")

    def _context(self, event: str, language: str, context: Mapping[str, Any],
                 ticket_number: str | None, sender: MailIdentity | None) -> dict[str, Any]:
        if event not in EVENTS:
            raise RenderError(f"unknown mail event {event!r}; known: {', '.join(EVENTS)}")
        missing = [key for key in REQUIRED_CONTEXT[event] if key not in context]
        if missing:
            raise RenderError(f"{event}: context is missing {', '.join(map(repr, missing))} "
                              f"(needs {', '.join(REQUIRED_CONTEXT[event])})")
        reserved = [key for key in COMMON_CONTEXT if key in context]
        if reserved:
            raise RenderError(f"{event}: context may not set {', '.join(reserved)} "
                              "(the renderer sets them)")
        if event in TICKET_EVENTS and not ticket_number:
            raise RenderError(f"{event}: ticket_number is required")
        if ticket_number is not None and not (ticket_number.isascii()
                                              and ticket_number.isdigit()):
            raise RenderError(f"{event}: ticket number {ticket_number!r} is not a number")
        values = {**OPTIONAL_CONTEXT.get(event, {}), **context}
        _check_values(event, values)
        if "answers" in values:
            values["answers"] = [_as(GuideAnswer, a) for a in values["answers"]]
        for key in ("articles", "faq"):
            if key in values:
                values[key] = [_as(FaqArticle, a) for a in values[key]]
        values.update(
            event=event, language=language, base_url=self.base_url,
            ticket_number=ticket_number,
            ticket_url=f"{self.base_url}/tickets/{ticket_number}" if ticket_number else None,
            login_url=f"{self.base_url}/login",
            sender_name=sender.name if sender else "",
            confirm_url=None, file_url=None)
        if event == "password-token":
            values["confirm_url"] = (f"{self.base_url}/password/confirm?token="
                                     f"{quote(str(values['token']), safe='')}")
        elif event == "file-link":
            values["file_url"] = f"{self.base_url}/files/{quote(str(values['token']), safe='')}"
        return values


def _render_one(event: str, template: jinja2.Template, values: Mapping[str, Any]) -> str:
    try:
        return template.render(values)
    except jinja2.TemplateError as exc:
        raise RenderError(f"{event}: template {template.name}: {exc}") from exc


def _default_auto_submitted(event: str, in_reply_to: str | None) -> AutoSubmitted:
    if event == "staff-answer":
        return "no"
    if event in REPLY_EVENTS and in_reply_to:
        return "auto-replied"
    return "auto-generated"


def _check_values(event: str, values: Mapping[str, Any]) -> None:
    """The few values with a closed set of choices, checked so a typo fails loudly."""
    choices = {"reason": REJECT_REASONS, "kind": NOTIFY_KINDS, "path": STAFF_PATHS,
               "old_state": tuple(STATE_NAMES["en"]), "new_state": tuple(STATE_NAMES["en"]),
               "password_mode": ("mail", "set-on-confirm"),
               "target": SLA_TARGETS}
    for key, allowed in choices.items():
        if key in REQUIRED_CONTEXT[event] and str(values[key]) not in allowed:
            raise RenderError(f"{event}: {key} {values[key]!r} is not one of "
                              f"{', '.join(allowed)}")
    if "priority" in REQUIRED_CONTEXT[event] and values["priority"] not in PRIORITY_NAMES:
        raise RenderError(f"{event}: priority {values['priority']!r} is not 1 to 5")


def _as(kind: type[_T], value: Any) -> _T:
    if isinstance(value, kind):
        return value
    if isinstance(value, Mapping):
        return kind(**value)
    return kind(*value)


# -- filters (localised by the template's `language`) -----------------------------------

def _format_datetime(value: datetime, zone: tzinfo, language: str) -> str:
    """`28.11.2026, 15:30 Uhr (CET)` / `2026-11-28 15:30 (CET)`; naive values are UTC."""
    moment = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(zone)
    name = moment.tzname() or "UTC"
    if language == "de":
        return f"{moment:%d.%m.%Y, %H:%M} Uhr ({name})"
    return f"{moment:%Y-%m-%d %H:%M} ({name})"


@jinja2.pass_context
def _state_name(context: jinja2.runtime.Context, state: str) -> str:
    names = STATE_NAMES.get(context.get("language", "en"), STATE_NAMES["en"])
    return names.get(str(state), str(state))


@jinja2.pass_context
def _priority_label(context: jinja2.runtime.Context, priority: int) -> str:
    if context.get("language") == "de":
        return f"{priority} {PRIORITY_NAMES_DE.get(priority, '?')}"
    return f"{priority} {PRIORITY_NAMES.get(priority, '?')}"


@jinja2.pass_context
def _size(context: jinja2.runtime.Context, size: int) -> str:
    """"12,3 MB" / "12.3 MB"; below a megabyte in KB ("48 KB"), below a kilobyte in bytes,
    so a small attachment is not shown as "0 MB". Units of 1024, as the config reads sizes:
    `max_message_size = "50MB"` is shown as "50 MB", not "52,4 MB"."""
    german = context.get("language") == "de"
    if size < 1024:
        return f"{size} Bytes" if german else f"{size} bytes"
    if size < 1024 * 1024:
        return f"{max(1, round(size / 1024))} KB"
    text = f"{size / 1024 / 1024:.1f}".removesuffix(".0") + " MB"
    return text.replace(".", ",") if german else text


def _without_reply_prefix(subject: str) -> str:
    """"Re: AW: Drucker" -> "Drucker", so an answer's "Re: " is not doubled."""
    return _REPLY_PREFIX.sub("", str(subject))


def _nl2br(text: str) -> Markup:
    """Plain text for HTML: escaped, line breaks kept. Escaping neither adds nor removes
    line breaks, so the whole text is escaped once (a `Markup` join would escape each line
    again: 160 objects per mail body)."""
    escaped = str(escape(str(text)))
    return Markup("<br>\n".join(escaped.splitlines()))  # noqa: S704 (escaped above)
