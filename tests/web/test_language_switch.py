"""The Deutsch/English switch on every page over HTTP (issue #17 item 6): the cookie for
every visitor, the stored language of a logged-in customer, the mails that follow it, CSRF
and the way back.

The app is the real one on SQLite and PostgreSQL; mails are read back from the outbox.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from gateway.app import App
from gateway.store.models import CustomerUser, table_of
from tests.web.conftest import csrf_of, log_in, mails, new_browser, post_form, set_password

_customer = table_of(CustomerUser)
GERMAN = {"Accept-Language": "de-DE,de;q=0.9"}


def stored_language(app: App, username: str) -> str:
    with app.db.read() as session:
        return str(session.execute(select(_customer.c.language)
                                   .where(_customer.c.username == username)).scalar_one())


def page_language(html: str) -> str:
    match = re.search(r'<html lang="(\w+)">', html)
    assert match, html[:200]
    return match.group(1)


def switch(client: TestClient, page: str, language: str) -> object:
    return post_form(client, page, "/language", {"language": language, "next": page})


def test_every_page_carries_the_switch_as_a_plain_form(app: App, customers: None,
                                                       web: FastAPI) -> None:
    client = new_browser(web)
    for page in ("/login", "/password/lost", "/faq", "/nowhere"):
        html = client.get(page, headers=GERMAN).text
        form = re.search(r'<form class="language" method="post" action="/language".*?</form>',
                         html, re.S)
        assert form, page
        assert 'name="csrf"' in form.group(0)
        assert f'name="next" value="{page}"' in form.group(0)
        assert '<button type="submit" name="language" value="de" lang="de" ' \
               'aria-pressed="true">Deutsch</button>' in form.group(0)
        assert 'value="en" lang="en">English</button>' in form.group(0)


def test_a_visitor_keeps_the_choice_in_a_cookie(app: App, web: FastAPI) -> None:
    client = new_browser(web)
    assert page_language(client.get("/login", headers=GERMAN).text) == "de"
    response = switch(client, "/faq?lang=all", "en")
    assert response.status_code == 303                                  # type: ignore[attr-defined]
    assert response.headers["location"] == "/faq?lang=all"              # type: ignore[attr-defined]
    cookie = response.headers["set-cookie"]                             # type: ignore[attr-defined]
    assert cookie.startswith("tgw_lang=en;") and "HttpOnly" in cookie and "Max-Age=31536000" \
        in cookie and "SameSite=lax" in cookie
    english = client.get("/login", headers=GERMAN).text                # the browser says German
    assert page_language(english) == "en" and ">Log in</button>" in english
    back = switch(client, "/login", "de")
    assert back.headers["set-cookie"].startswith("tgw_lang=de;")        # type: ignore[attr-defined]
    assert page_language(client.get("/login", headers=GERMAN).text) == "de"


def test_the_switch_needs_the_pages_csrf_token(app: App, customers: None, web: FastAPI) -> None:
    set_password(app, "mmuster")
    client = new_browser(web)
    log_in(client, "mmuster")
    client.get("/tickets")
    refused = client.post("/language", data={"language": "en", "next": "/tickets"})
    wrong = client.post("/language", data={"language": "en", "next": "/tickets",
                                           "csrf": "0" * 64})
    assert refused.status_code == wrong.status_code == 403
    assert "set-cookie" not in refused.headers and "tgw_lang" not in str(wrong.headers)
    assert stored_language(app, "mmuster") == "de"
    assert page_language(client.get("/tickets").text) == "de"


def test_the_way_back_stays_on_this_site(app: App, web: FastAPI) -> None:
    client = new_browser(web)
    csrf = csrf_of(client.get("/login").text)
    for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "faq",
                 "/x\r\nSet-Cookie: a=b"):
        response = client.post("/language", data={"language": "en", "next": evil,
                                                   "csrf": csrf})
        assert response.status_code == 303 and response.headers["location"] == "/", evil
    unknown = client.post("/language", data={"language": "fr", "next": "/faq", "csrf": csrf})
    assert unknown.status_code == 400 and "tgw_lang" not in str(unknown.headers)


def test_a_customers_choice_is_stored_and_used_for_pages_and_mails(app: App, customers: None,
                                                                   web: FastAPI) -> None:
    set_password(app, "mmuster")
    client = new_browser(web)
    log_in(client, "mmuster")
    assert page_language(client.get("/tickets", headers=GERMAN).text) == "de"
    switch(client, "/tickets", "en")
    assert stored_language(app, "mmuster") == "en"
    assert page_language(client.get("/tickets", headers=GERMAN).text) == "en"

    # another browser, German, without the cookie: the stored language wins
    other = new_browser(web)
    log_in(other, "mmuster")
    page = other.get("/templates", headers=GERMAN).text
    assert page_language(page) == "en" and "Incident reports" in page

    # a ticket from a template: its acknowledgment is English
    response = post_form(other, "/templates/incident", "/templates/incident",
                         {"subject": "Printer on 2nd floor", "guide_system": "HP 4000",
                          "text": "Paper jam.", "priority": "3"})
    assert response.status_code == 303
    ack = [m for _, to, m in mails(app, "ack") if "max@acme.example" in to]
    assert len(ack) == 1
    assert str(ack[0]["Subject"]).startswith("We have received your request")

    # the password-lost mail is English as well
    anonymous = new_browser(web)
    post_form(anonymous, "/password/lost", "/password/lost", {"username": "mmuster"})
    token_mails = [m for _, to, m in mails(app, "password-token") if "max@acme.example" in to]
    assert len(token_mails) == 1
    assert str(token_mails[0]["Subject"]) == "Your link to a new password"


def test_a_choice_made_before_login_becomes_the_customers(app: App, customers: None,
                                                          web: FastAPI) -> None:
    set_password(app, "mmuster")
    client = new_browser(web)
    switch(client, "/login", "en")
    log_in(client, "mmuster")
    assert stored_language(app, "mmuster") == "en"
    assert page_language(client.get("/tickets", headers=GERMAN).text) == "en"
    # a login without a choice leaves the stored language alone
    plain = new_browser(web)
    set_password(app, "jdoe")
    log_in(plain, "jdoe")
    assert stored_language(app, "jdoe") == "en"
    assert page_language(plain.get("/tickets", headers=GERMAN).text) == "en"


def test_after_a_form_the_switch_comes_back_to_the_forms_page(app: App, customers: None,
                                                             web: FastAPI) -> None:
    set_password(app, "mmuster")
    client = new_browser(web)
    log_in(client, "mmuster")
    client.get("/tickets")
    number = "2026120610000001"
    refused = post_form(client, "/tickets", f"/tickets/{number}/reply", {"text": ""})
    assert refused.status_code == 404                 # no such ticket: the page after a form
    assert f'name="next" value="/tickets/{number}"' in refused.text
    lost = post_form(client, "/password/lost", "/password/lost", {"username": "x"})
    assert 'name="next" value="/password/lost"' in lost.text
    confirm = post_form(new_browser(web), "/login", "/password/confirm", {"token": "x"})
    assert 'name="next" value="/login"' in confirm.text
