"""The language switch on every page (Deutsch / English): POST /language.

In: the chosen language, the page to come back to and the page's CSRF token (a plain form
in the header of `base.html`, so it works without JavaScript). Out: 303 back to that page,
now in the chosen language.

Guarantees:
- The choice is a POST with the page's CSRF token, like every form of the portal; a wrong
  token changes nothing (403).
- Every visitor gets the cookie `tgw_lang` (a year, HttpOnly, SameSite=Lax), so the choice
  outlives the session and shows on the login page; a logged-in customer's choice is also
  stored as their language (`customer_user.language`), which their pages and every mail to
  them use from then on, on any browser.
- Logging in with the cookie set adopts it as the user's stored language (`adopt_choice`):
  the language a customer picked on the login page stays after the login.
- The way back is a path of this portal only (`/...`, never `//host` or a scheme), so the
  switch cannot be used as an open redirect.
"""

from __future__ import annotations

from fastapi import APIRouter, Form, Request
from fastapi.responses import Response
from sqlalchemy import update
from sqlmodel import Session

from gateway.store.models import CustomerUser, table_of, utcnow
from gateway.web.i18n import LANGUAGES, text
from gateway.web.pages import Portal
from gateway.web.sessions import PortalUser

_customer = table_of(CustomerUser)
MAX_BACK = 2000


def way_back(next_page: str) -> str:
    """`next_page` when it is a path of this site, else the start page."""
    if (not next_page.startswith("/") or next_page.startswith("//") or "\\" in next_page
            or len(next_page) > MAX_BACK or any(ord(c) < 32 for c in next_page)):
        return "/"
    return next_page


def store_language(session: Session, user_id: int, language: str) -> None:
    session.execute(update(_customer).where(_customer.c.id == user_id)
                    .values(language=language, updated=utcnow()))


def adopt_choice(session: Session, user: PortalUser, chosen: str | None) -> None:
    """At login: a language chosen with the switch before (its cookie) becomes the user's."""
    if chosen in LANGUAGES and chosen != user.language:
        store_language(session, user.id, str(chosen))


def build_router(portal: Portal) -> APIRouter:
    router = APIRouter()

    @router.post("/language")
    def switch_language(request: Request, language: str = Form(""),
                        back: str = Form("/", alias="next"), csrf: str = Form("")) -> Response:
        visitor = portal.visitor(request)
        portal.check_csrf(visitor, csrf)
        if language not in LANGUAGES:
            return portal.render(visitor, "error.html", 400,
                                 message=text(visitor.language, "bad_request"))
        if visitor.user is not None and visitor.user.language != language:
            with portal.db.write() as session:
                store_language(session, visitor.user.id, language)
        response = portal.redirect(way_back(back))
        portal.set_language_cookie(response, language)
        return response

    return router
