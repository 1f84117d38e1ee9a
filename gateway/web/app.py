"""The web application: the customer portal (server-rendered, no JavaScript needed),
health and metrics.

`/healthz` answers 200 with {"status": "ok"} when the database answers, the other components
of the same `serve` (worker and outbox processes) are alive and no mail waits too long, 503
with the reasons otherwise (so a load balancer takes the instance out; see `health.py`); it
also reports each `[[mailbox]]`: last successful check, backlog, last error. `/metrics` is
the Prometheus text format, computed from the database at scrape time, so every instance
reports the same shared queues. Neither sets a cookie.

The portal's pages live per area: `auth` (login, password lost, password change), `tickets`
(My tickets, ticket view, reply, attachments), `forms` (ticket templates), `language` (the
Deutsch/English switch on every page), `faq` (explorer,
articles, search, votes; public pages work without login), `files` (the token-secured
file exchange, /files/{token}). Every response
carries security headers (a CSP without any script source, `nosniff`, no framing, no
referrer); every page that shows customer data is `no-store`. Authentication, CSRF and
unknown pages are answered as HTML pages in the visitor's language.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import __version__
from gateway.app import App
from gateway.web import auth, faq, files, forms, language, tickets
from gateway.web.health import Liveness, health_report
from gateway.web.i18n import text
from gateway.web.metrics import DatabaseCollector, ProcessCollector
from gateway.web.pages import (
    CsrfRefused,
    LoginRequired,
    PasswordChangeRequired,
    Portal,
    new_browser_id,
)
from gateway.web.redaction import install_token_redaction
from gateway.web.sessions import BROWSER_COOKIE

STATIC_DIR = Path(__file__).parent / "static"
NO_COOKIE_PATHS = frozenset({"/healthz", "/metrics"})
PAGE_CSP = ("default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'")


def create_web_app(app: App, liveness: Liveness | None = None) -> FastAPI:
    """The web app of `app`. `liveness`: the other components of the same `serve` that
    `/healthz` judges (see `web/health.py`); without it only the database and the queues."""
    web = FastAPI(title="ticket-gateway", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url=None)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(DatabaseCollector(app, liveness))
    registry.register(ProcessCollector())      # the counters and histograms of this serve
    portal = Portal(settings=app.settings, db=app.db, blobs=app.blobs,
                    numbering=app.numbering, answering=app.answering)
    stylesheet = (STATIC_DIR / "portal.css").read_bytes()

    @web.middleware("http")
    async def security_headers(request: Request,
                               call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # probes and scrapers get no cookie: /healthz and /metrics are not the portal
        browser = request.cookies.get(BROWSER_COOKIE) or request.url.path in NO_COOKIE_PATHS
        if not browser:
            request.state.browser_id = new_browser_id()
        response = await call_next(request)
        headers = response.headers
        headers.setdefault("Content-Security-Policy", PAGE_CSP)
        headers.setdefault("X-Content-Type-Options", "nosniff")
        headers.setdefault("X-Frame-Options", "DENY")
        headers.setdefault("Referrer-Policy", "no-referrer")
        if response.media_type == "text/html" or headers.get("content-type", "").startswith(
                "text/html"):
            headers.setdefault("Cache-Control", "no-store")
        if not browser:
            portal.set_browser_cookie(response, request.state.browser_id)
        return response

    @web.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return portal.redirect("/login")

    @web.exception_handler(PasswordChangeRequired)
    async def to_change(request: Request, exc: PasswordChangeRequired) -> Response:
        return portal.redirect("/password/change")

    @web.exception_handler(CsrfRefused)
    async def refused(request: Request, exc: CsrfRefused) -> Response:
        visitor = await run_in_threadpool(portal.visitor, request)
        return portal.render(visitor, "error.html", 403,
                             message=text(visitor.language, "forbidden"))

    @web.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        """A query parameter or form value of the wrong type (`/tickets?page=abc`): the
        portal's error page in the visitor's language, naming the parameter; never JSON."""
        visitor = await run_in_threadpool(portal.visitor, request)
        names = sorted({str(error["loc"][-1]) for error in exc.errors() if error.get("loc")})
        return portal.render(visitor, "error.html", 400, message=text(
            visitor.language, "invalid_value", fields=", ".join(names) or "?"))

    @web.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            visitor = await run_in_threadpool(portal.visitor, request)
            return portal.render(visitor, "error.html", 404,
                                 message=text(visitor.language, "not_found"))
        if 400 <= exc.status_code < 500:   # a form the framework refused, a wrong method
            visitor = await run_in_threadpool(portal.visitor, request)
            page = portal.render(visitor, "error.html", exc.status_code,
                                 message=text(visitor.language, "bad_request"))
            page.headers.update(getattr(exc, "headers", None) or {})
            return page
        return PlainTextResponse(str(exc.detail), status_code=exc.status_code,
                                 headers=getattr(exc, "headers", None))

    @web.get("/")
    def root(request: Request) -> Response:
        return portal.redirect("/tickets")

    @web.get("/static/portal.css")
    def css() -> Response:
        return Response(stylesheet, media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600"})

    web.include_router(auth.build_router(portal))
    web.include_router(language.build_router(portal))
    web.include_router(tickets.build_router(portal))
    web.include_router(forms.build_router(portal))
    web.include_router(files.build_router(portal))
    install_token_redaction()     # /files/{token} paths never reach uvicorn's logs whole
    web.include_router(faq.build_router(portal))

    @web.get("/healthz")
    def healthz() -> Response:
        status, report = health_report(app, liveness or {})
        return JSONResponse(report, status)

    @web.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return web
