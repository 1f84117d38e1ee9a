"""The portal's accounts over HTTP: the password-lost flow, login, sessions, CSRF, limits."""

from __future__ import annotations

import threading
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update

from gateway.app import App, build_app, prepare_database
from gateway.config.settings import Settings
from gateway.store.models import CustomerUser, Token, WebSession, table_of, utcnow
from gateway.tickets import tokens
from gateway.web.app import create_web_app
from gateway.web.sessions import SESSION_COOKIE
from tests.conftest import make_settings
from tests.web.conftest import (
    PASSWORD,
    csrf_of,
    log_in,
    mails,
    new_browser,
    password_from,
    post_form,
    set_password,
    text_of,
    token_from,
)

_customer = table_of(CustomerUser)
_session = table_of(WebSession)
_token = table_of(Token)


def request_token(client: TestClient, app: App, username: str) -> str:
    response = post_form(client, "/password/lost", "/password/lost", {"username": username})
    assert response.status_code == 200
    return token_from(mails(app, "password-token")[-1][2])


def test_first_login_through_password_lost(app: App, customers: None,
                                           browser: TestClient) -> None:
    token = request_token(browser, app, "mmuster")
    _event, recipients, _ = mails(app, "password-token")[0]
    assert recipients == ("max@acme.example",)
    # opening the link changes nothing (mail scanners open links)
    page = browser.get(f"/password/confirm?token={token}")
    assert page.status_code == 200 and "mmuster" in page.text
    assert browser.get(f"/password/confirm?token={token}").status_code == 200
    assert not mails(app, "new-password")
    confirmed = browser.post("/password/confirm", data={"token": token,
                                                        "csrf": csrf_of(page.text)})
    assert confirmed.status_code == 200
    new_password_mail = mails(app, "new-password")
    assert [m[1] for m in new_password_mail] == [("max@acme.example",)]
    password = password_from(new_password_mail[0][2])
    assert len(password) >= 16
    login = log_in(browser, "mmuster", password)
    assert login.headers["location"] == "/password/change"
    # until a password of their own is chosen, every page leads to the change form
    assert browser.get("/tickets").headers["location"] == "/password/change"
    change = post_form(browser, "/password/change", "/password/change", {
        "current_password": password, "new_password": PASSWORD, "repeat_password": PASSWORD})
    assert change.status_code == 303
    assert browser.get("/tickets").status_code == 200
    # the mailed password is gone
    other = new_browser(browser.app)   # type: ignore[arg-type]
    assert post_form(other, "/login", "/login", {"username": "mmuster",
                                                 "password": password}).status_code == 401
    log_in(other, "mmuster", PASSWORD)


def test_password_lost_answers_the_same_for_unknown_users(app: App, customers: None,
                                                          browser: TestClient) -> None:
    known = post_form(browser, "/password/lost", "/password/lost", {"username": "mmuster"})
    unknown = post_form(browser, "/password/lost", "/password/lost", {"username": "nobody"})
    wrong_case = post_form(browser, "/password/lost", "/password/lost", {"username": "MMuster"})
    assert known.status_code == unknown.status_code == wrong_case.status_code == 200
    assert known.text == unknown.text == wrong_case.text
    assert len(mails(app, "password-token")) == 1   # usernames are case-sensitive


def test_a_used_or_expired_or_foreign_token_is_refused(app: App, customers: None,
                                                       browser: TestClient) -> None:
    token = request_token(browser, app, "mmuster")
    csrf = csrf_of(browser.get("/login").text)
    assert browser.post("/password/confirm", data={"token": token, "csrf": csrf}
                        ).status_code == 200
    again = browser.post("/password/confirm", data={"token": token, "csrf": csrf})
    assert again.status_code == 400 and "ungültig" in again.text
    assert browser.get(f"/password/confirm?token={token}").status_code == 400

    expired = request_token(browser, app, "jdoe")
    with app.db.write() as session:
        session.execute(update(_token).where(_token.c.token_hash == tokens.hash_token(expired))
                        .values(expires=utcnow() - timedelta(seconds=1)))
    assert browser.get(f"/password/confirm?token={expired}").status_code == 400
    assert browser.post("/password/confirm", data={"token": expired, "csrf": csrf}
                        ).status_code == 400
    assert browser.post("/password/confirm", data={"token": "x" * 43, "csrf": csrf}
                        ).status_code == 400
    with app.db.write() as session:   # a token of another purpose does not reset a password
        user_id = session.execute(select(_customer.c.id)
                                  .where(_customer.c.username == "jdoe")).scalar_one()
        other = tokens.issue(session, user_id, "file-exchange", minutes=30)
    assert browser.post("/password/confirm", data={"token": other.token, "csrf": csrf}
                        ).status_code == 400
    assert len(mails(app, "new-password")) == 1


def test_a_new_password_lost_link_ends_every_older_one(app: App, customers: None,
                                                      web: FastAPI) -> None:
    """Issue #14 item 10: a link that leaked (a forwarded mail, a shared inbox) is dead as
    soon as the user asks for another one; other users' links and other purposes stay."""
    first = request_token(new_browser(web), app, "mmuster")
    second = request_token(new_browser(web), app, "mmuster")
    other_user = request_token(new_browser(web), app, "jdoe")
    with app.db.write() as session:
        user_id = session.execute(select(_customer.c.id)
                                  .where(_customer.c.username == "mmuster")).scalar_one()
        other_purpose = tokens.issue(session, user_id, "file-exchange", minutes=30)
    third = request_token(new_browser(web), app, "mmuster")
    assert "Früher angeforderte Links" in text_of(
        mails(app, "password-token")[-1][2])
    client = new_browser(web)
    for older in (first, second):
        assert client.get(f"/password/confirm?token={older}").status_code == 400
        refused = client.post("/password/confirm", data={
            "token": older, "csrf": csrf_of(client.get("/login").text)})
        assert refused.status_code == 400 and "ungültig" in refused.text
    assert not mails(app, "new-password")
    with app.db.read() as session:
        assert tokens.peek(session, other_purpose.token, "file-exchange") == user_id
    assert client.get(f"/password/confirm?token={other_user}").status_code == 200
    page = client.get(f"/password/confirm?token={third}")
    assert page.status_code == 200
    assert client.post("/password/confirm", data={"token": third, "csrf": csrf_of(page.text)}
                       ).status_code == 200
    assert [m[1] for m in mails(app, "new-password")] == [("max@acme.example",)]


def test_of_two_parallel_link_requests_only_one_link_stays(app: App, customers: None) -> None:
    """The second request waits for the first one's transaction (the user's row is locked),
    then ends its token: never two open links. Without the lock the second would not wait,
    and both links would stay open."""
    with app.db.read() as session:
        user_id = session.execute(select(_customer.c.id)
                                  .where(_customer.c.username == "mmuster")).scalar_one()
    issued: list[str] = []
    second_done = threading.Event()

    def second_request() -> None:
        with app.db.write() as session:
            issued.append(tokens.issue(session, user_id, tokens.PASSWORD_LOST,
                                       minutes=30).token)
        second_done.set()

    with app.db.write() as session:
        first = tokens.issue(session, user_id, tokens.PASSWORD_LOST, minutes=30).token
        thread = threading.Thread(target=second_request)
        thread.start()
        # give the second request every chance to run past us; it must not get far
        assert not second_done.wait(1.0)
    thread.join(30)
    assert second_done.is_set()
    with app.db.read() as session:
        assert tokens.peek(session, first, tokens.PASSWORD_LOST) is None
        assert tokens.peek(session, issued[0], tokens.PASSWORD_LOST) == user_id
        open_tokens = session.execute(select(func.count()).select_from(_token).where(
            _token.c.customer_user_id == user_id, _token.c.used.is_(None))).scalar_one()
    assert open_tokens == 1


def test_tokens_are_stored_hashed_and_long(app: App, customers: None,
                                           browser: TestClient) -> None:
    token = request_token(browser, app, "mmuster")
    assert len(token) >= 43            # 256 bits, url-safe base64
    with app.db.read() as session:
        row = session.execute(select(_token)).one()
    assert row.token_hash == tokens.hash_token(token) and token not in row.token_hash
    assert timedelta(minutes=29) < row.expires - row.created <= timedelta(minutes=30)


def test_two_parallel_confirmations_exactly_one_wins(app: App, customers: None) -> None:
    with app.db.write() as session:
        user_id = session.execute(select(_customer.c.id)
                                  .where(_customer.c.username == "mmuster")).scalar_one()
        issued = tokens.issue(session, user_id, tokens.PASSWORD_LOST, minutes=30)
    barrier = threading.Barrier(2)
    results: list[int | None] = []

    def confirm() -> None:
        barrier.wait()
        with app.db.write() as session:
            results.append(tokens.consume(session, issued.token, tokens.PASSWORD_LOST))

    threads = [threading.Thread(target=confirm) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results, key=lambda r: r is None) == [user_id, None]


def test_a_post_without_csrf_token_is_refused(app: App, customers: None,
                                              browser: TestClient) -> None:
    set_password(app, "mmuster")
    browser.get("/login")
    for url, data in (("/login", {"username": "mmuster", "password": PASSWORD}),
                      ("/password/lost", {"username": "mmuster"}),
                      ("/password/confirm", {"token": "x"})):
        assert browser.post(url, data=data).status_code == 403
        assert browser.post(url, data={**data, "csrf": "0" * 64}).status_code == 403
    assert not mails(app)
    log_in(browser, "mmuster")
    assert browser.post("/logout", data={}).status_code == 403
    assert browser.post("/password/change", data={
        "current_password": PASSWORD, "new_password": "x" * 20,
        "repeat_password": "x" * 20}).status_code == 403
    # a token from another browser is not this browser's token
    other = new_browser(browser.app)   # type: ignore[arg-type]
    foreign = csrf_of(other.get("/password/lost").text)
    assert browser.post("/logout", data={"csrf": foreign}).status_code == 403


def test_session_cookie_flags_and_a_new_id_at_login(app: App, customers: None,
                                                    browser: TestClient) -> None:
    set_password(app, "mmuster")
    browser.cookies.set(SESSION_COOKIE, "planted-by-an-attacker", domain="127.0.0.1")
    response = log_in(browser, "mmuster")
    cookie = next(c for c in response.headers.get_list("set-cookie")
                  if c.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie
    assert "planted-by-an-attacker" not in cookie
    first = browser.cookies.get(SESSION_COOKIE, domain="127.0.0.1")
    log_in(new_browser(browser.app), "mmuster")   # type: ignore[arg-type]
    again = browser.post("/login", data={"username": "mmuster", "password": PASSWORD,
                                         "csrf": csrf_of(browser.get("/tickets").text)})
    assert again.status_code == 303 and again.cookies.get(SESSION_COOKIE) != first
    with app.db.read() as session:   # the replaced session is gone, the other browser's kept
        assert len(session.execute(select(_session)).all()) == 2


def test_secure_cookies_when_the_base_url_is_https(database_url: str, tmp_path: Path) -> None:
    settings = make_settings(database_url, tmp_path, web={
        "listen": "", "base_url": "https://portal.example.com"})
    https_app = build_app(settings)
    prepare_database(https_app, migrate=False)
    try:
        client = TestClient(create_web_app(https_app), base_url="https://portal.example.com")
        response = client.get("/login")
        assert all("Secure" in c for c in response.headers.get_list("set-cookie"))
    finally:
        https_app.close()


def test_sessions_end_when_idle_too_long_or_too_old(app: App, customers: None,
                                                    browser: TestClient) -> None:
    set_password(app, "mmuster")
    log_in(browser, "mmuster")
    assert browser.get("/tickets").status_code == 200
    with app.db.write() as session:
        session.execute(update(_session).values(last_seen=utcnow() - timedelta(minutes=61)))
    assert browser.get("/tickets").headers["location"] == "/login"
    log_in(browser, "mmuster")
    with app.db.write() as session:
        session.execute(update(_session).values(created=utcnow() - timedelta(hours=13)))
    assert browser.get("/tickets").headers["location"] == "/login"
    with app.db.read() as session:
        assert session.execute(select(_session)).all() == []


def test_a_password_change_ends_every_session_and_token(app: App, customers: None,
                                                        web: FastAPI) -> None:
    set_password(app, "mmuster")
    laptop, phone = new_browser(web), new_browser(web)
    log_in(laptop, "mmuster")
    log_in(phone, "mmuster")
    open_token = request_token(new_browser(web), app, "mmuster")
    change = post_form(laptop, "/password/change", "/password/change", {
        "current_password": PASSWORD, "new_password": "another good one",
        "repeat_password": "another good one"})
    assert change.status_code == 303
    assert laptop.get("/tickets").status_code == 200          # this browser: a fresh session
    assert phone.get("/tickets").headers["location"] == "/login"
    assert new_browser(web).get(f"/password/confirm?token={open_token}").status_code == 400


def test_login_and_password_lost_are_rate_limited(app: App, customers: None,
                                                  web: FastAPI) -> None:
    set_password(app, "mmuster")
    attacker = new_browser(web)
    for _ in range(5):
        assert post_form(attacker, "/login", "/login", {
            "username": "mmuster", "password": "guess"}).status_code == 401
    blocked = post_form(attacker, "/login", "/login", {"username": "mmuster",
                                                       "password": PASSWORD})
    assert blocked.status_code == 429                # even the right password, for a while
    for _ in range(5):
        post_form(attacker, "/password/lost", "/password/lost", {"username": "nobody"})
    assert post_form(attacker, "/password/lost", "/password/lost",
                     {"username": "nobody"}).status_code == 429


def test_language_from_the_browser_then_the_user(app: App, customers: None,
                                                 browser: TestClient) -> None:
    assert "Anmelden" in browser.get("/login").text
    english = browser.get("/login", headers={"Accept-Language": "en-GB,en;q=0.9,de;q=0.5"})
    assert "Log in" in english.text and 'lang="en"' in english.text
    set_password(app, "jdoe")
    log_in(browser, "jdoe")
    assert "My tickets" in browser.get("/tickets", headers={"Accept-Language": "de"}).text


def test_set_on_confirm_mode_sets_the_password_on_the_page(
        database_url: str, tmp_path: Path, customers_settings: Settings) -> None:
    direct = build_app(customers_settings)
    prepare_database(direct, migrate=False)
    try:
        from gateway.tickets.customers import NewCustomer, add_customer
        with direct.db.write() as session:
            add_customer(session, NewCustomer("mmuster", "max@acme.example", "Max", "acme"))
        client = TestClient(create_web_app(direct), follow_redirects=False)
        token = request_token(client, direct, "mmuster")
        page = client.get(f"/password/confirm?token={token}")
        assert 'name="new_password"' in page.text
        short = client.post("/password/confirm", data={
            "token": token, "csrf": csrf_of(page.text), "new_password": "short",
            "repeat_password": "short"})
        assert short.status_code == 400
        done = client.post("/password/confirm", data={
            "token": token, "csrf": csrf_of(page.text), "new_password": PASSWORD,
            "repeat_password": PASSWORD})
        assert done.status_code == 200 and not mails(direct, "new-password")
        assert log_in(client, "mmuster").headers["location"] == "/tickets"
    finally:
        direct.close()


_LINK_TEXT = {  # what the link does, per [web] password_mode and language
    ("mail", "de"): ("Ihr Link zu einem neuen Passwort",
                     "danach senden wir Ihnen ein neues Passwort in einer zweiten E-Mail",
                     "Anfrage bestätigen"),
    ("mail", "en"): ("Your link to a new password",
                     "we then send you a new password in a second email",
                     "Confirm the request"),
    ("set-on-confirm", "de"): ("Ihr Link zum Festlegen eines neuen Passworts",
                               "Über diesen Link legen Sie es fest:",
                               "Neues Passwort festlegen"),
    ("set-on-confirm", "en"): ("Your link to set a new password", "Use this link to set it:",
                               "Set a new password"),
}


@pytest.mark.parametrize("mode", ["mail", "set-on-confirm"])
def test_the_password_lost_mail_says_what_the_link_does(database_url: str, tmp_path: Path,
                                                        mode: str) -> None:
    """Issue #17 item 10: in the default mode the link leads to a mailed password, not to a
    form; the mail says which, in German and in English."""
    direct = build_app(make_settings(database_url, tmp_path / "data",
                                     web={"listen": "", "password_mode": mode}))
    prepare_database(direct, migrate=False)
    try:
        from gateway.tickets.customers import NewCustomer, add_customer
        with direct.db.write() as session:
            add_customer(session, NewCustomer("mmuster", "max@acme.example", "Max", "acme", "de"))
            add_customer(session, NewCustomer("jdoe", "jane@globex.example", "Jane", "globex",
                                              "en"))
        client = TestClient(create_web_app(direct), follow_redirects=False)
        for username, language in (("mmuster", "de"), ("jdoe", "en")):
            request_token(client, direct, username)
            message = mails(direct, "password-token")[-1][2]
            subject, says, button = _LINK_TEXT[mode, language]
            html = message.get_body(preferencelist=("html",))
            assert html is not None
            html_text = " ".join(str(html.get_content()).split())  # type: ignore[attr-defined]
            assert str(message["Subject"]) == subject
            assert says in " ".join(text_of(message).split()) and says in html_text
            assert f"{button}</a>" in html_text
            for (other, _), (_, other_says, _) in _LINK_TEXT.items():
                if other != mode:
                    assert other_says not in " ".join(text_of(message).split())
    finally:
        direct.close()
