"""What every portal page shares: the `Portal` (the parts pages use, secret key, policies,
page templates), the `Visitor` of one request (user, language, CSRF token), rendering and
redirects.

Guarantees:
- Page templates are Jinja2 with autoescaping on; `t(key)` gives the visitor's language,
  `tn(key, n)` its plural form for `n`, `human_size(bytes)` and the `localtime` filter the
  language's digits and date format (`formats`); the `filename` filter shows a stored file
  name as `clean_filename` leaves it (rows from before names were cleaned everywhere may
  hold bidi characters).
- Every page carries the language switch (`language.py`): it needs the page's CSRF token
  and `here`, the address to come back to.
- `visitor()` reads the session cookie and the database once per request; `require_user()`
  raises `LoginRequired` (-> 303 to /login) and, while a mailed password must be replaced,
  `PasswordChangeRequired` (-> 303 to /password/change).
- `check_csrf()` raises `CsrfRefused` (-> 403) for a missing or wrong token.
- The secret key comes from the environment variable named by `[web] secret_key_env`; with
  none a random key per start (sessions survive, CSRF tokens of open forms do not).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.config.settings import Settings
from gateway.errors import ConfigError
from gateway.mail.attachment_names import clean_filename
from gateway.outbound.answers import Answering
from gateway.store.blobs import BlobStore
from gateway.store.db import Database
from gateway.tickets.numbers import Numbering
from gateway.web import i18n
from gateway.web.formats import format_size, format_time
from gateway.web.limits import Limit
from gateway.web.sessions import (
    BROWSER_COOKIE,
    SESSION_COOKIE,
    PortalUser,
    SessionPolicy,
    csrf_token,
    csrf_valid,
    resume_session,
)

TEMPLATES_DIR = Path(__file__).parent / "templates"
LANGUAGE_COOKIE = "tgw_lang"       # the language chosen with the switch, for visitors
LANGUAGE_COOKIE_DAYS = 365


class LoginRequired(Exception):
    pass


class PasswordChangeRequired(Exception):
    pass


class CsrfRefused(Exception):
    pass


@dataclass(frozen=True)
class Visitor:
    user: PortalUser | None
    session_value: str | None      # the session cookie, when it named a live session
    browser_id: str                # the per-browser random cookie (anchors CSRF before login)
    language: str
    address: str                   # for rate limits: the connecting peer, or the client a
                                   # proxy of `[web] trusted_proxies` names (uvicorn)
    here: str = "/"                # this page's path (and query, for a GET): where the
                                   # language switch comes back to

    @property
    def csrf_anchor(self) -> str:
        return f"s:{self.session_value}" if self.session_value else f"b:{self.browser_id}"


class Portal:
    """What every page uses: the settings, the database, the blob store, the ticket numbering
    and what answers need, handed in by the web app factory; and the portal's own session and
    rate-limit policies and page templates."""

    def __init__(self, *, settings: Settings, db: Database, blobs: BlobStore,
                 numbering: Numbering, answering: Answering) -> None:
        self.settings, self.db, self.blobs = settings, db, blobs
        self.numbering, self.answering = numbering, answering
        web = settings.web
        self.secret = _secret_key(web.secret_key_env)
        self.secure_cookies = web.base_url.lower().startswith("https://")
        self.policy = SessionPolicy(idle=timedelta(minutes=web.session_idle_minutes),
                                    maximum=timedelta(hours=web.session_max_hours))
        self.limit = Limit(window=timedelta(minutes=web.rate_limit_minutes),
                           per_user=web.rate_limit_per_user,
                           per_address=web.rate_limit_per_address)
        self.timezone = ZoneInfo(settings.tickets.timezone)
        self.env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                                      autoescape=True, undefined=jinja2.StrictUndefined,
                                      trim_blocks=True, lstrip_blocks=True)
        self.env.filters["localtime"] = jinja2.pass_context(
            lambda context, value: self.localtime(value, context["lang"]))
        self.env.filters["filename"] = lambda name: clean_filename(str(name), "attachment")

    def localtime(self, value: datetime | None, language: str) -> str:
        return "" if value is None else format_time(value, language, self.timezone)

    # -- the visitor -------------------------------------------------------------------------

    def visitor(self, request: Request) -> Visitor:
        cached = getattr(request.state, "visitor", None)
        if isinstance(cached, Visitor):
            return cached
        value = request.cookies.get(SESSION_COOKIE)
        user = None
        if value:
            with self.db.write() as session:
                user = resume_session(session, value, self.policy)
        browser = str(request.cookies.get(BROWSER_COOKIE)
                      or getattr(request.state, "browser_id", ""))
        language = i18n.choose_language(user.language if user else None,
                                        request.headers.get("accept-language"),
                                        request.cookies.get(LANGUAGE_COOKIE))
        visitor = Visitor(user, value if user else None, browser, language,
                          request.client.host if request.client else "", _page_of(request))
        request.state.visitor = visitor
        return visitor

    def require_user(self, request: Request, *, allow_must_change: bool = False) -> Visitor:
        visitor = self.visitor(request)
        if visitor.user is None:
            raise LoginRequired
        if visitor.user.must_change_password and not allow_must_change:
            raise PasswordChangeRequired
        return visitor

    def check_csrf(self, visitor: Visitor, sent: object) -> None:
        if not csrf_valid(self.secret, visitor.csrf_anchor, sent if isinstance(sent, str)
                          else None):
            raise CsrfRefused

    # -- responses ---------------------------------------------------------------------------

    def render(self, visitor: Visitor, page: str, status: int = 200,
               **context: Any) -> HTMLResponse:
        """`page` in the visitor's language; `here` in `context` replaces the way back of
        the language switch (default: the requested page)."""
        language = visitor.language

        def t(key: str, **values: object) -> str:
            return i18n.text(language, key, **values)

        def tn(key: str, n: int, **values: object) -> str:
            return i18n.text_n(language, key, n, **values)

        context.setdefault("here", visitor.here)
        html = self.env.get_template(page).render(
            t=t, tn=tn, lang=language, user=visitor.user,
            human_size=lambda size: format_size(size, language),
            csrf=csrf_token(self.secret, visitor.csrf_anchor), now=datetime.now(UTC),
            **context)
        return HTMLResponse(html, status_code=status)

    def redirect(self, url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    def set_session_cookie(self, response: Response, value: str) -> None:
        response.set_cookie(SESSION_COOKIE, value, httponly=True, samesite="lax",
                            secure=self.secure_cookies, path="/",
                            max_age=int(self.policy.maximum.total_seconds()))

    def clear_session_cookie(self, response: Response) -> None:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="lax",
                               secure=self.secure_cookies)

    def set_language_cookie(self, response: Response, language: str) -> None:
        response.set_cookie(LANGUAGE_COOKIE, language, httponly=True, samesite="lax",
                            secure=self.secure_cookies, path="/",
                            max_age=LANGUAGE_COOKIE_DAYS * 86400)

    def set_browser_cookie(self, response: Response, value: str) -> None:
        response.set_cookie(BROWSER_COOKIE, value, httponly=True, samesite="lax",
                            secure=self.secure_cookies, path="/")


_ACTIONS = ("/reply", "/files", "/vote")    # POST-only paths: their page is the parent


def _page_of(request: Request) -> str:
    """Where the language switch comes back to: a GET page as it was asked for; after a
    form, the page the form belongs to (`/tickets/1/reply` -> `/tickets/1`), and after
    confirming a password link (its token is spent or not in the URL) the login."""
    path = request.url.path
    if request.method == "GET":
        return f"{path}?{request.url.query}" if request.url.query else path
    if path == "/password/confirm":
        return "/login"
    for action in _ACTIONS:
        if path.endswith(action) and path.count("/") >= 3:
            return path.removesuffix(action)
    return path


def _secret_key(env_name: str) -> bytes:
    if not env_name:
        return secrets.token_bytes(32)
    value = os.environ.get(env_name, "")
    if len(value) < 16:
        raise ConfigError([f"web.secret_key_env: the environment variable {env_name} must "
                           "hold a secret key of at least 16 characters"])
    return value.encode("utf-8")


def new_browser_id() -> str:
    return secrets.token_urlsafe(24)
