"""Portal pages of the FAQ: /faq (explorer by category, search box), /faq/{slug} (an
article), POST /faq/{slug}/vote ("was this helpful?").

Guarantees:
- Public pages work without login. Anonymous visitors see, list and find only `public`
  articles; a customers-only article asks them to log in (303 to /login); logged-in
  customers see both. Unknown slugs and categories answer 404.
- The explorer lists and searches the visitor's language by default (`lang=de|en|all`); the
  filter shown as current is always the one applied to the list and the search results (see
  `faq/search.py`: word forms, typos, the matching passage). A search with no hits in the
  chosen language says how many there are in the others and links to them; the language
  links keep the search.
- Article HTML is cleaned by nh3 again when shown (`faq.markdown.clean_html`), under the
  portal's CSP, which allows no script.
- A vote is a POST with the page's CSRF token (anchored to the session, or before login to
  the browser cookie), counted once per browser and article (the SHA-256 of the browser
  cookie is kept, not the cookie), then 303 back to the article (no JavaScript needed).
"""

from __future__ import annotations

import hashlib
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool

from gateway.faq.markdown import clean_html
from gateway.faq.queries import ArticleView, article_by_key, category_page
from gateway.faq.search import CUSTOMERS, PUBLIC, search
from gateway.faq.store import record_vote
from gateway.web.i18n import text
from gateway.web.pages import LoginRequired, Portal, Visitor

LANGUAGE_FILTERS = ("de", "en", "all")
MAX_QUERY = 200


def visibilities(visitor: Visitor) -> tuple[str, ...]:
    return CUSTOMERS if visitor.user is not None else PUBLIC


def _visible_article(session: Session, key: str, visitor: Visitor) -> ArticleView | None:
    """The article, None when there is none; `LoginRequired` when the visitor may not see
    it yet (customers-only articles for visitors who are not logged in)."""
    view = article_by_key(session, key[:200])
    if view is not None and view.visibility not in visibilities(visitor):
        raise LoginRequired
    return view


def build_router(portal: Portal) -> APIRouter:
    router = APIRouter()

    def not_found(visitor: Visitor) -> Response:
        return portal.render(visitor, "error.html", 404,
                             message=text(visitor.language, "not_found"))

    @router.get("/faq")
    def explorer(request: Request, q: str = "", category: str = "", lang: str = "") -> Response:
        visitor = portal.visitor(request)
        language = lang if lang in LANGUAGE_FILTERS else visitor.language
        query = " ".join(q.split())[:MAX_QUERY]
        seen = visibilities(visitor)
        with portal.db.read() as session:
            page = category_page(session, category or None, visibilities=seen,
                                 language=None if language == "all" else language)
            filtered = None if language == "all" else language
            result = search(session, query, visibilities=seen, language=filtered) \
                if query else None
            elsewhere = 0        # hits in other languages, offered when this one has none
            if result is not None and not result.hits and filtered is not None:
                elsewhere = len(search(session, query, visibilities=seen).hits)
        if page is None:
            return not_found(visitor)

        def link(**changes: str) -> str:
            params = {"category": category, "lang": language, **changes}
            return "/faq?" + urlencode({k: v for k, v in params.items() if v})

        also = ", ".join(w for _, words in (result.corrections if result else ()) for w in words)
        return portal.render(visitor, "faq.html", level=page, q=query, result=result, also=also,
                             language=language, languages=LANGUAGE_FILTERS, link=link,
                             elsewhere=elsewhere)

    @router.get("/faq/{key}")
    def article(request: Request, key: str) -> Response:
        visitor = portal.visitor(request)
        with portal.db.read() as session:
            view = _visible_article(session, key, visitor)
        if view is None:
            return not_found(visitor)
        return portal.render(visitor, "faq_article.html", article=view,
                             body=Markup(clean_html(view.body_html)),  # noqa: S704 (cleaned)
                             voted=request.query_params.get("voted") == "1")

    @router.post("/faq/{key}/vote")
    async def vote(request: Request, key: str) -> Response:
        visitor = await run_in_threadpool(portal.visitor, request)
        form = await request.form(max_files=0, max_fields=5)
        portal.check_csrf(visitor, form.get("csrf"))
        helpful = form.get("helpful")
        if helpful not in ("yes", "no"):
            return portal.render(visitor, "error.html", 400,
                                 message=text(visitor.language, "bad_request"))
        voter = hashlib.sha256(f"faq-vote:{visitor.browser_id}".encode()).hexdigest()

        def work() -> Response:
            with portal.db.write() as session:
                view = _visible_article(session, key, visitor)
                if view is None:
                    return not_found(visitor)
                record_vote(session, view.id, voter, helpful == "yes")
            return portal.redirect(f"/faq/{quote(view.key)}?voted=1")

        return await run_in_threadpool(work)

    return router
