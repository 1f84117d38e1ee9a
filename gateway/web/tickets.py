"""Portal pages of tickets: /tickets (My tickets), /tickets/{number} (history and reply
form), POST /tickets/{number}/reply, /tickets/{number}/attachments/{id}.

Guarantees: a ticket, article or attachment the user may not see answers 404, exactly like
one that does not exist (see `queries`). Downloads are always `Content-Disposition:
attachment` with an ASCII fallback name and the RFC 8187 `filename*`, both of the name as
`clean_filename` leaves it (a name stored before names were cleaned everywhere cannot
carry a bidi override into the saved file), `nosniff`, and a CSP
`sandbox` — a stored HTML file can never run in the portal's origin. HTML bodies are shown
only after `nh3` sanitizing (again: they were sanitized at parse time), under the portal's
CSP that allows no script at all; their inline images (`cid:`) load through that same
download, other images are removed, and the page says how many remote ones were.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote, unquote, urlencode

import nh3
from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from markupsafe import Markup
from starlette.concurrency import run_in_threadpool

from gateway.config.settings import TemplateSettings
from gateway.mail.attachment_names import clean_filename
from gateway.web import queries, ticket_search
from gateway.web.actions import ReplyRefused, guide_labels, reply
from gateway.web.formats import format_size
from gateway.web.i18n import text, text_n
from gateway.web.pages import Portal, Visitor
from gateway.web.uploads import TooLarge, chosen, store_uploads

ATTACHMENT_CSP = "sandbox; default-src 'none'"
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._ -]+")


def ascii_filename(name: str) -> str:
    """A name any client accepts in the quoted `filename=` parameter."""
    cleaned = _UNSAFE_NAME.sub("_", name).strip(" .") or "attachment"
    return cleaned[:150]


def content_disposition(name: str) -> str:
    name = clean_filename(name, "attachment")
    return (f'attachment; filename="{ascii_filename(name)}"; '
            f"filename*=UTF-8''{quote(name, safe='')}")


@dataclass(frozen=True)
class ShownHtml:
    html: Markup | None
    remote_images: int                 # removed when stored, and now (older articles)


def article_html(article: queries.ArticleView, number: str) -> ShownHtml:
    """An article's HTML body as the page shows it, cleaned by nh3 again. Inline images
    (`cid:`) point at this ticket's download of the same article's attachment with that
    Content-ID (the download checks access again); every other image is removed and a
    remote one counted (an article stored before they were removed at parse time may still
    have some)."""
    if not article.body_html:
        return ShownHtml(None, article.remote_images)
    inline = {a.content_id: a.id for a in article.attachments if a.content_id}
    remote = 0

    def images(tag: str, attribute: str, value: str) -> str | None:
        nonlocal remote
        if tag != "img" or attribute != "src":
            return value
        source = value.strip()
        if source.lower().startswith("cid:") and unquote(source[4:]) in inline:
            return f"/tickets/{quote(number)}/attachments/{inline[unquote(source[4:])]}"
        remote += source.lower().startswith(("http:", "https:", "//"))
        return None

    cleaned = nh3.clean(article.body_html, url_schemes={"http", "https", "mailto", "cid"},
                        link_rel="noopener noreferrer nofollow", attribute_filter=images)
    return ShownHtml(Markup(cleaned), article.remote_images + remote)  # noqa: S704 (cleaned)


def age(language: str, created: datetime, now: datetime | None = None) -> str:
    seconds = max(0, int(((now or datetime.now(UTC)) - created).total_seconds()))
    if seconds < 3600:
        return text(language, "age_minutes", n=seconds // 60)
    if seconds < 86400 * 2:
        return text(language, "age_hours", n=seconds // 3600)
    return text_n(language, "age_days", seconds // 86400)


def guide_shown(templates: Sequence[TemplateSettings], template: str | None,
                answers: Sequence[tuple[str, str]], language: str) -> list[tuple[str, str]]:
    """The ticket's guide answers as (label in `language`, answer), in guide order; answers
    to questions no longer configured keep their key as the label, at the end."""
    configured = next((t for t in templates if t.id == template), None)
    questions = [q.key for q in configured.guide] if configured else []
    labels = guide_labels(configured, language) if configured else {}
    given = dict(answers)
    ordered = [k for k in questions if k in given] + [k for k in given if k not in questions]
    return [(labels.get(k, k), given[k]) for k in ordered]


def build_router(portal: Portal) -> APIRouter:
    router = APIRouter()
    web = portal.settings.web
    org = web.organisation_tickets

    @router.get("/tickets")
    def my_tickets(request: Request, filter: str = "all", q: str = "",
                   sort: str = queries.DEFAULT_SORT, page: int = 1) -> Response:
        visitor = portal.require_user(request)
        assert visitor.user is not None
        state = filter if filter in queries.FILTERS else "all"
        sort = sort if sort in queries.SORTS else queries.DEFAULT_SORT
        with portal.db.read() as session:
            result = queries.list_tickets(session, visitor.user, organisation=org,
                                          state=state, q=q[:200], sort=sort, page=page,
                                          page_size=web.page_size)

        def link(**changes: object) -> str:
            params = {"filter": state, "q": q, "sort": sort, "page": result.page, **changes}
            return "/tickets?" + urlencode({k: v for k, v in params.items() if v not in ("",)})

        return portal.render(visitor, "tickets.html", result=result, filter=state, q=q,
                             short=ticket_search.is_short(q[:200].strip()), sort=sort,
                             sorts=list(queries.SORTS), filters=queries.FILTERS,
                             link=link, age=lambda c: age(visitor.language, c),
                             changed=request.query_params.get("changed") == "1")

    def show(visitor: Visitor, number: str, status: int = 200, error: str | None = None,
             notice: str | None = None) -> Response:
        assert visitor.user is not None
        with portal.db.read() as session:
            view = queries.ticket_view(session, visitor.user, number, organisation=org)
            template = queries.template_key(session, view.template_id) if view else None
        if view is None:
            return not_found(visitor)
        return portal.render(visitor, "ticket.html", status, ticket=view, error=error,
                             notice=notice, article_html=article_html,
                             guide=guide_shown(portal.settings.template, template,
                                               view.guide_answers, visitor.language),
                             reopen=portal.settings.tickets.reopen_on_reply)

    def not_found(visitor: Visitor) -> Response:
        return portal.render(visitor, "error.html", 404, message=text(visitor.language,
                                                                      "not_found"))

    @router.get("/tickets/{number}")
    def ticket_page(request: Request, number: str) -> Response:
        visitor = portal.require_user(request)
        notice = "replied" if request.query_params.get("replied") == "1" else None
        if request.query_params.get("created") == "1":
            notice = "created"
        elif request.query_params.get("created") == "quiet":
            notice = "created_quiet"
        return show(visitor, number, notice=notice)

    @router.post("/tickets/{number}/reply")
    async def reply_to_ticket(request: Request, number: str) -> Response:
        visitor = await run_in_threadpool(portal.require_user, request)
        assert visitor.user is not None
        user = visitor.user
        if int(request.headers.get("content-length") or 0) > web.max_upload_size + 2**20:
            return await run_in_threadpool(
                show, visitor, number, 413, text(
                    visitor.language, "too_large",
                    size=format_size(web.max_upload_size, visitor.language)))
        form = await request.form(max_files=50, max_fields=50)
        portal.check_csrf(visitor, form.get("csrf"))
        body = str(form.get("text") or "").strip()
        files = chosen(form.getlist("attachments"))

        def work() -> Response:
            with portal.db.read() as session:
                found = queries.find_visible_ticket(session, user, number, organisation=org)
            if found is None:
                return not_found(visitor)
            if not body and not files:
                return show(visitor, number, 400, text(visitor.language, "reply_empty"))
            try:
                stored = store_uploads(portal.blobs, files, web.max_upload_size)
            except TooLarge:
                return show(visitor, number, 413, text(
                    visitor.language, "too_large",
                    size=format_size(web.max_upload_size, visitor.language)))
            try:
                with portal.db.write() as session:
                    reply(session, portal.answering, user, found.id, number, found.title,
                          found.state, body, stored)
            except ReplyRefused:
                return show(visitor, number, 409, text(visitor.language, "reply_closed"))
            return portal.redirect(f"/tickets/{quote(number)}?replied=1")

        try:
            return await run_in_threadpool(work)
        finally:
            await form.close()

    @router.get("/tickets/{number}/attachments/{attachment_id}")
    def download(request: Request, number: str, attachment_id: str) -> Response:
        visitor = portal.require_user(request)
        assert visitor.user is not None
        if not attachment_id.isdigit() or len(attachment_id) > 18:
            return not_found(visitor)
        with portal.db.read() as session:
            found = queries.find_attachment(session, visitor.user, number, int(attachment_id),
                                            organisation=org)
        if found is None:
            return not_found(visitor)
        handle = portal.blobs.open(found.sha256)

        def chunks() -> object:
            with handle:
                while chunk := handle.read(256 * 1024):
                    yield chunk

        return StreamingResponse(chunks(), media_type=found.content_type, headers={  # type: ignore[arg-type]
            "Content-Disposition": content_disposition(found.filename),
            "Content-Length": str(found.size),
            "Content-Security-Policy": ATTACHMENT_CSP,
            "Cache-Control": "private, no-store"})

    return router
