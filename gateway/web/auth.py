"""Portal pages of the account: /login, /logout, /password/lost, /password/confirm,
/password/change.

The password-lost flow (KIX "Passwort verloren?", also the first login): username ->
a one-time token link to the stored address -> the link shows a page, confirming is a POST
(mail scanners open links) -> a new random password is mailed (`password_mode = "mail"`) or
chosen on that page (`"set-on-confirm"`) -> after logging in with a mailed password the
user must choose their own.

Guarantees: /password/lost answers the same page, in the same time, for known and unknown
usernames: the lookup, the token and the mail happen after the answer is sent (a background
task). Login checks a dummy hash for unknown usernames. Both are rate-limited per username
and per client address (the real peer, or what a trusted proxy says: see `[web]
trusted_proxies`). A new password-lost link ends every older one of the user. Changing the
password (any way) ends every session and token of the user; the browser that changed it
gets a fresh session.
"""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Form, Request
from fastapi.responses import Response
from sqlalchemy import select, update
from sqlmodel import Session

from gateway.store.models import CustomerUser, table_of, utcnow
from gateway.tickets import tokens
from gateway.web import limits, passwords
from gateway.web.i18n import text
from gateway.web.language import adopt_choice
from gateway.web.mails import send_new_password, send_password_token
from gateway.web.pages import LANGUAGE_COOKIE, Portal, Visitor
from gateway.web.sessions import (
    PortalUser,
    end_all_sessions,
    end_session,
    load_user,
    start_session,
)

_customer = table_of(CustomerUser)


def _user_by_name(session: Session, username: str) -> tuple[PortalUser, str | None] | None:
    """The active user with exactly this username (case-sensitive) and their hash."""
    row = session.execute(select(_customer.c.id, _customer.c.password_hash).where(
        _customer.c.username == username, _customer.c.active.is_(True))).one_or_none()
    if row is None:
        return None
    user = load_user(session, row.id)
    return (user, row.password_hash) if user else None


def set_password(session: Session, user_id: int, password: str, *, must_change: bool) -> None:
    """Store a new password hash; every session and open token of the user ends."""
    now = utcnow()
    session.execute(update(_customer).where(_customer.c.id == user_id).values(
        password_hash=passwords.hash_password(password), must_change_password=must_change,
        password_changed=now, updated=now))
    end_all_sessions(session, user_id)
    tokens.revoke_all(session, user_id, now=now)


def password_problem(visitor: Visitor, portal: Portal, new: str, repeat: str) -> str | None:
    minimum = portal.settings.web.min_password_length
    if len(new) < minimum:
        return text(visitor.language, "password_too_short", n=minimum)
    if new != repeat:
        return text(visitor.language, "password_mismatch")
    return None


def build_router(portal: Portal) -> APIRouter:
    router = APIRouter()
    web = portal.settings.web
    set_on_confirm = web.password_mode == "set-on-confirm"  # noqa: S105 (a mode, not a password)

    @router.get("/login")
    def login_form(request: Request) -> Response:
        visitor = portal.visitor(request)
        if visitor.user is not None:
            return portal.redirect("/tickets")
        return portal.render(visitor, "login.html", error=None, username="")

    @router.post("/login")
    def login(request: Request, username: str = Form(""), password: str = Form(""),
              csrf: str = Form("")) -> Response:
        visitor = portal.visitor(request)
        portal.check_csrf(visitor, csrf)
        keys = limits.attempt_keys(username, visitor.address)
        with portal.db.write() as session:
            if not limits.allowed(session, "login", keys, portal.limit):
                return portal.render(visitor, "login.html", 429, error="rate_limited",
                                     username=username)
            found = _user_by_name(session, username)
            ok = passwords.verify(found[1] if found else None, password)
            if not ok or found is None:
                limits.record(session, "login", keys, portal.limit)
                failed = True
            else:
                failed = False
                user = found[0]
                limits.forget(session, "login", keys[0])
                value = start_session(session, user.id, replaces=request.cookies.get(
                    "tgw_session"))
                adopt_choice(session, user, request.cookies.get(LANGUAGE_COOKIE))
                if found[1] and passwords.needs_rehash(found[1]):
                    session.execute(update(_customer).where(_customer.c.id == user.id)
                                    .values(password_hash=passwords.hash_password(password)))
        if failed:
            return portal.render(visitor, "login.html", 401, error="login_failed",
                                 username=username)
        response = portal.redirect("/password/change" if user.must_change_password
                                   else "/tickets")
        portal.set_session_cookie(response, value)
        return response

    @router.get("/logout")
    def logout_form(request: Request) -> Response:
        visitor = portal.visitor(request)
        if visitor.user is None:
            return portal.redirect("/login")
        return portal.render(visitor, "logout.html")

    @router.post("/logout")
    def logout(request: Request, csrf: str = Form("")) -> Response:
        visitor = portal.visitor(request)
        portal.check_csrf(visitor, csrf)
        if visitor.session_value:
            with portal.db.write() as session:
                end_session(session, visitor.session_value)
        response = portal.redirect("/login")
        portal.clear_session_cookie(response)
        return response

    @router.get("/password/lost")
    def lost_form(request: Request) -> Response:
        return portal.render(portal.visitor(request), "password_lost.html", sent=False,
                             error=None)

    def mail_token(username: str) -> None:
        """After the answer: the same answer whether or not the username exists."""
        with portal.db.write() as session:
            found = _user_by_name(session, username)
            if found is None:
                return
            issued = tokens.issue(session, found[0].id, tokens.PASSWORD_LOST,
                                  minutes=web.token_minutes)
            send_password_token(session, portal.answering, found[0], issued.token, issued.expires)

    @router.post("/password/lost")
    def lost(request: Request, background: BackgroundTasks, username: str = Form(""),
             csrf: str = Form("")) -> Response:
        visitor = portal.visitor(request)
        portal.check_csrf(visitor, csrf)
        keys = limits.attempt_keys(username, visitor.address)
        with portal.db.write() as session:
            if not limits.allowed(session, "password-lost", keys, portal.limit):
                return portal.render(visitor, "password_lost.html", 429, sent=False,
                                     error="rate_limited")
            limits.record(session, "password-lost", keys, portal.limit)
        if username:
            background.add_task(mail_token, username)
        return portal.render(visitor, "password_lost.html", sent=True, error=None,
                             minutes=web.token_minutes)

    @router.get("/password/confirm")
    def confirm_form(request: Request, token: str = "") -> Response:
        visitor = portal.visitor(request)
        with portal.db.read() as session:
            user_id = tokens.peek(session, token, tokens.PASSWORD_LOST) if token else None
            user = load_user(session, user_id) if user_id else None
        if user is None:
            return portal.render(visitor, "password_confirm.html", 400, valid=False,
                                 token="", username="", error=None, done=None)
        response = portal.render(visitor, "password_confirm.html", valid=True, token=token,
                                 username=user.username, error=None, done=None,
                                 set_here=set_on_confirm)
        response.headers["Referrer-Policy"] = "no-referrer"
        return response

    @router.post("/password/confirm")
    def confirm(request: Request, token: str = Form(""), csrf: str = Form(""),
                new_password: str = Form(""), repeat_password: str = Form("")) -> Response:
        visitor = portal.visitor(request)
        portal.check_csrf(visitor, csrf)
        set_here = set_on_confirm
        invalid = portal.render(visitor, "password_confirm.html", 400, valid=False, token="",
                                username="", error=None, done=None)
        if set_here:
            problem = password_problem(visitor, portal, new_password, repeat_password)
            if problem:
                with portal.db.read() as session:
                    user_id = tokens.peek(session, token, tokens.PASSWORD_LOST)
                    user = load_user(session, user_id) if user_id else None
                if user is None:
                    return invalid
                return portal.render(visitor, "password_confirm.html", 400, valid=True,
                                     token=token, username=user.username, error=problem,
                                     done=None, set_here=True)
        with portal.db.write() as session:
            user_id = tokens.consume(session, token, tokens.PASSWORD_LOST)
            user = load_user(session, user_id) if user_id else None
            if user is None:
                return invalid
            if set_here:
                set_password(session, user.id, new_password, must_change=False)
                done = "password_set"
            else:
                password = passwords.generate_password()
                set_password(session, user.id, password, must_change=True)
                send_new_password(session, portal.answering, user, password)
                done = "password_mailed"
        return portal.render(visitor, "password_confirm.html", valid=True, token="",
                             username=user.username, error=None, done=done)

    @router.get("/password/change")
    def change_form(request: Request) -> Response:
        visitor = portal.require_user(request, allow_must_change=True)
        return portal.render(visitor, "password_change.html", error=None)

    @router.post("/password/change")
    def change(request: Request, csrf: str = Form(""), current_password: str = Form(""),
               new_password: str = Form(""), repeat_password: str = Form("")) -> Response:
        visitor = portal.require_user(request, allow_must_change=True)
        portal.check_csrf(visitor, csrf)
        assert visitor.user is not None
        problem = password_problem(visitor, portal, new_password, repeat_password)
        if problem is None and new_password == current_password:
            problem = text(visitor.language, "password_same")
        with portal.db.write() as session:
            found = _user_by_name(session, visitor.user.username)
            keys = limits.attempt_keys(visitor.user.username, visitor.address)
            if problem is None and not limits.allowed(session, "login", keys, portal.limit):
                problem = text(visitor.language, "rate_limited")
            if problem is None and not passwords.verify(found[1] if found else None,
                                                        current_password):
                limits.record(session, "login", keys, portal.limit)
                problem = text(visitor.language, "current_wrong")
            if problem is None:
                set_password(session, visitor.user.id, new_password, must_change=False)
                value = start_session(session, visitor.user.id)
        if problem is not None:
            return portal.render(visitor, "password_change.html", 400, error=problem)
        response = portal.redirect("/tickets?changed=1")
        portal.set_session_cookie(response, value)
        return response

    return router
