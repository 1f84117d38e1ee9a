"""My tickets, the ticket view, attachments, replies and templates over HTTP, with the
authorization rules: another user's ticket, article or attachment is 404."""

from __future__ import annotations

import re
from email.message import EmailMessage

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import delete, insert, select

from gateway.app import App
from gateway.outbound import answers
from gateway.store.models import (
    Article,
    Attachment,
    AutoAnswer,
    BouncingAddress,
    GuideAnswer,
    Ticket,
    table_of,
)
from gateway.tickets.actions import change_state
from gateway.tickets.queries import ticket_detail
from gateway.tickets.ticket import NewArticle, State, add_article, find_ticket
from tests.web.conftest import (
    csrf_of,
    deliver,
    log_in,
    mail,
    mails,
    new_browser,
    post_form,
    set_password,
)

_ticket = table_of(Ticket)
_attachment = table_of(Attachment)


def ticket_by_mail(app: App, subject: str, sender: str = "max@acme.example",
                   body: str = "Er druckt nicht.\n", attachment: bytes | None = None) -> str:
    message = mail(subject, sender, body)
    if attachment is not None:
        message.add_attachment(attachment, maintype="application", subtype="octet-stream",
                               filename="Prüfbericht <1>.txt")
    deliver(app, message)
    with app.db.read() as session:
        return str(session.execute(select(_ticket.c.number).where(_ticket.c.title == subject)
                                   ).scalar_one())


def logged_in(app: App, web: FastAPI, username: str) -> TestClient:
    set_password(app, username)
    client = new_browser(web)
    log_in(client, username)
    return client


def test_my_tickets_lists_only_mine_with_filters_search_and_pages(
        app: App, customers: None, web: FastAPI) -> None:
    mine = [ticket_by_mail(app, f"Drucker {i}", body=f"Text Nummer {i}\n") for i in range(3)]
    ticket_by_mail(app, "Fremdes Ticket", sender="jane@globex.example")
    with app.db.write() as session:
        change_state(session, app.answering, find_ticket(session, mine[0]).id or 0, State.CLOSED,
                     actor="test")
    client = logged_in(app, web, "mmuster")
    page = client.get("/tickets")
    assert page.status_code == 200
    assert "Fremdes Ticket" not in page.text
    assert re.findall(r"<strong>(Drucker \d)</strong>", page.text) == [
        "Drucker 2", "Drucker 1", "Drucker 0"]                   # by number, newest first
    assert "<strong>Drucker 2</strong></a> – Text Nummer 2" in page.text
    assert 'title="Erstellt: ' in page.text                       # the age's hover text
    assert "Drucker 0" not in client.get("/tickets?filter=open").text
    closed = client.get("/tickets?filter=closed").text
    assert "Drucker 0" in closed and "Drucker 1" not in closed
    found = client.get("/tickets?q=nummer 1").text
    assert "Drucker 1" in found and "Drucker 2" not in found
    assert "Drucker 2" in client.get(f"/tickets?q={mine[2]}").text
    assert "Fremdes Ticket" not in client.get("/tickets?q=Fremdes").text
    ascending = client.get("/tickets?sort=number-asc").text
    assert re.findall(r"<strong>(Drucker \d)</strong>", ascending)[0] == "Drucker 0"
    assert client.get("/tickets?q=100%25").status_code == 200    # LIKE wildcards are text


def test_pagination(app: App, customers: None, web: FastAPI) -> None:
    for i in range(27):
        ticket_by_mail(app, f"Ticket {i:02d}")
    client = logged_in(app, web, "mmuster")
    first = client.get("/tickets").text
    assert "Seite 1 von 2 (27 Tickets)" in first and 'rel="next"' in first
    second = client.get("/tickets?page=2").text
    assert len(re.findall(r"<strong>", second)) == 2 and 'rel="prev"' in second


def test_another_users_ticket_and_attachments_are_404(app: App, customers: None,
                                                      web: FastAPI) -> None:
    own = ticket_by_mail(app, "Mein Ticket", attachment=b"mine")
    foreign = ticket_by_mail(app, "Janes Ticket", sender="jane@globex.example",
                             attachment=b"secret of jane")
    with app.db.read() as session:
        ids = dict(session.execute(select(_ticket.c.number, _attachment.c.id)
                                   .join(table_of(Article),
                                         table_of(Article).c.ticket_id == _ticket.c.id)
                                   .join(_attachment, _attachment.c.article_id
                                         == table_of(Article).c.id)).all())
    client = logged_in(app, web, "mmuster")
    assert client.get(f"/tickets/{own}").status_code == 200
    assert client.get(f"/tickets/{foreign}").status_code == 404
    assert client.get("/tickets/2099010110999999").status_code == 404
    assert client.get(f"/tickets/{foreign}/attachments/{ids[foreign]}").status_code == 404
    # her attachment id under my ticket number is not found either
    assert client.get(f"/tickets/{own}/attachments/{ids[foreign]}").status_code == 404
    assert client.get(f"/tickets/{own}/attachments/../../etc").status_code == 404
    csrf = csrf_of(client.get(f"/tickets/{own}").text)
    assert client.post(f"/tickets/{foreign}/reply", data={"csrf": csrf, "text": "x"}
                       ).status_code == 404
    assert new_browser(web).get(f"/tickets/{own}").headers["location"] == "/login"
    # a colleague sees it only when the organisation's tickets are shown (off by default)
    assert logged_in(app, web, "kkollege").get(f"/tickets/{own}").status_code == 404


def test_attachment_download_headers(app: App, customers: None, web: FastAPI) -> None:
    number = ticket_by_mail(app, "Mit Anlage", attachment=b"<script>alert(1)</script>")
    client = logged_in(app, web, "mmuster")
    page = client.get(f"/tickets/{number}").text
    link = re.search(r'href="(/tickets/\d+/attachments/\d+)"', page)
    assert link
    response = client.get(link.group(1))
    assert response.status_code == 200 and response.content == b"<script>alert(1)</script>"
    disposition = response.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="Pr_fbericht _1_.txt"')
    assert "filename*=UTF-8''Pr%C3%BCfbericht%20%3C1%3E.txt" in disposition
    assert response.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in response.headers["content-security-policy"]


def test_a_hostile_html_mail_is_shown_without_active_content(app: App, customers: None,
                                                             web: FastAPI) -> None:
    message = EmailMessage()
    message["From"] = "max@acme.example"
    message["To"] = "incident@support.example.com"
    message["Subject"] = "HTML mit Inhalt"
    message["Message-ID"] = "<hostile@x>"
    message.set_content("plain part")
    message.add_alternative(
        '<p onclick="steal()">Hallo <b>fett</b></p><script>alert(document.cookie)</script>'
        '<img src="x" onerror="alert(1)"><a href="javascript:alert(2)">klick</a>'
        '<iframe src="https://evil.example"></iframe><style>body{display:none}</style>'
        '<form action="https://evil.example"><input name="pw"></form>'
        '<svg onload="alert(3)"></svg>', subtype="html")
    deliver(app, message)
    client = logged_in(app, web, "mmuster")
    with app.db.read() as session:
        number = session.execute(select(_ticket.c.number)).scalar_one()
    response = client.get(f"/tickets/{number}")
    body = response.text.split('<main id="main">', 1)[1]
    assert "<b>fett</b>" in body
    for active in ("<script", "onclick", "onerror", "javascript:", "<iframe", "onload",
                   "evil.example", "<style"):
        assert active not in body.lower(), active
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp


def test_internal_notes_are_never_shown(app: App, customers: None, web: FastAPI) -> None:
    number = ticket_by_mail(app, "Mit Notiz")
    with app.db.write() as session:
        add_article(session, find_ticket(session, number).id or 0, NewArticle(
            direction="in", channel="note", sender="staff", internal=True,
            body="INTERN: Kunde ist schwierig"))
    client = logged_in(app, web, "mmuster")
    assert "INTERN" not in client.get(f"/tickets/{number}").text
    assert "Mit Notiz" not in client.get("/tickets?q=schwierig").text


def test_a_reply_is_what_a_mail_reply_gives(app: App, customers: None, web: FastAPI) -> None:
    number = ticket_by_mail(app, "Antwort bitte")
    with app.db.write() as session:
        change_state(session, app.answering, find_ticket(session, number).id or 0, State.CLOSED,
                     actor="test")
    before = len(mails(app))
    client = logged_in(app, web, "mmuster")
    csrf = csrf_of(client.get(f"/tickets/{number}").text)
    response = client.post(f"/tickets/{number}/reply", data={"csrf": csrf,
                                                             "text": "Geht wieder nicht."},
                           files=[("attachments", ("log.txt", b"error 42", "text/plain"))])
    assert response.status_code == 303
    with app.db.read() as session:
        detail = ticket_detail(session, number)
    assert detail["state"] == "open"
    last = detail["articles"][-1]
    assert (last["channel"], last["sender"], last["direction"], last["body"]) == (
        "web", "customer", "in", "Geht wieder nicht.")
    assert last["attachments"][0]["filename"] == "log.txt"
    new_mails = [(event, to) for event, to, _ in mails(app)[before:]]
    assert ("status", ("max@acme.example",)) in new_mails          # reopened
    assert ("staff-notify", ("anna.agent@example.com",)) in new_mails
    assert "Geht wieder nicht." in client.get(f"/tickets/{number}?replied=1").text
    empty = client.post(f"/tickets/{number}/reply", data={"csrf": csrf, "text": " "})
    assert empty.status_code == 400
    assert client.post(f"/tickets/{number}/reply", data={"text": "x"}).status_code == 403


def test_templates_are_grouped_and_create_the_ticket_a_mail_would(
        app: App, customers: None, web: FastAPI) -> None:
    client = logged_in(app, web, "mmuster")
    page = client.get("/templates").text
    assert page.index("Änderungsanforderungen") < page.index("Störungsmeldungen")
    assert 'href="/templates/incident"' in page
    form = client.get("/templates/incident").text
    assert '<label for="subject">Betreff <abbr' in form
    assert '<label for="guide_system">Betroffenes System <abbr' in form
    assert '<option value="3" selected>' in form
    csrf = csrf_of(form)
    missing = client.post("/templates/incident", data={"csrf": csrf, "subject": "Drucker",
                                                       "text": "kaputt"})
    assert missing.status_code == 400 and "Betroffenes System" in missing.text
    response = client.post("/templates/incident", data={
        "csrf": csrf, "subject": "Drucker im 2. OG", "guide_system": "HP 4000",
        "text": "Papierstau.", "priority": "4"},
        files=[("attachments", ("foto.png", b"\x89PNG...", "image/png"))])
    assert response.status_code == 303
    number = response.headers["location"].split("/")[2].split("?")[0]
    with app.db.read() as session:
        web_ticket = ticket_detail(session, number)
        answers = session.execute(select(table_of(GuideAnswer).c.key,
                                         table_of(GuideAnswer).c.value)).all()
    assert (web_ticket["template"], web_ticket["queue"], web_ticket["priority"],
            web_ticket["customer"]) == ("incident", "servicedesk", 4, "mmuster")
    assert answers == [("system", "HP 4000")]
    first = web_ticket["articles"][0]
    assert first["body"] == "Betroffenes System: HP 4000\n\nPapierstau."
    assert first["attachments"][0]["filename"] == "foto.png"
    events = [(event, to) for event, to, _ in mails(app)]
    assert events == [("ack", ("max@acme.example",)),
                      ("staff-notify", ("anna.agent@example.com",))]
    # the same by mail gives the same ticket
    ticket_by_mail(app, "Drucker im 3. OG", body="Betroffenes System: HP 4000\n\nPapierstau.\n"
                   "Priorität: 4\n")
    with app.db.read() as session:
        by_mail = ticket_detail(session, session.execute(
            select(_ticket.c.number).where(_ticket.c.title == "Drucker im 3. OG")).scalar_one())
    for key in ("template", "queue", "priority", "customer", "state", "guide_answers"):
        assert by_mail[key] == web_ticket[key], key


def test_the_portal_says_an_acknowledgment_is_on_its_way_only_when_one_is(
        app: App, customers: None, web: FastAPI) -> None:
    client = logged_in(app, web, "mmuster")
    csrf = csrf_of(client.get("/templates/incident").text)

    def create(subject: str) -> str:
        response = client.post("/templates/incident", data={
            "csrf": csrf, "subject": subject, "guide_system": "HP 4000", "text": "kaputt"})
        assert response.status_code == 303
        page = client.get(response.headers["location"])
        assert page.status_code == 200 and "wurde erstellt" in page.text
        return page.text

    assert "Eine Bestätigung ist per E-Mail unterwegs" in create("Erstes")
    with app.db.write() as session:          # the hourly limit of automatic mails is used up
        for _ in range(app.settings.outbound.max_auto_replies_per_hour):
            answers.claim_auto_answer(session, app.answering, "max@acme.example", "ack")
    assert "unterwegs" not in create("Zweites")
    with app.db.write() as session:
        session.execute(delete(table_of(AutoAnswer)))
        session.execute(insert(table_of(BouncingAddress)).values(
            address_key="max@acme.example", status="5.1.1", permanent=True, count=2,
            reason="test"))                  # the address is dead: the outbox holds it back
    assert "unterwegs" not in create("Drittes")
    assert [e for e, _, _ in mails(app)].count("ack") == 2


def test_the_ticket_view_shows_the_guide_answers_with_their_labels(
        app: App, customers: None, web: FastAPI) -> None:
    number = ticket_by_mail(app, "Drucker", body="Betroffenes System: HP <4250>\n\nKaputt.\n")
    client = logged_in(app, web, "mmuster")
    page = client.get(f"/tickets/{number}").text
    assert "<h2 class=\"small\">Gesprächsleitfaden</h2>" in page
    assert "<dt>Betroffenes System</dt><dd>HP &lt;4250&gt;</dd>" in page
    post_form(client, f"/tickets/{number}", "/language", {"language": "en",
                                                         "next": f"/tickets/{number}"})
    english = client.get(f"/tickets/{number}").text
    assert "Conversation guide" in english and "<dt>Affected system</dt>" in english
    without = ticket_by_mail(app, "Ohne Angaben", body="Kaputt.\n")
    assert "Gesprächsleitfaden" not in client.get(f"/tickets/{without}").text


def test_a_template_of_another_organisation_is_404(app: App, customers: None,
                                                   web: FastAPI) -> None:
    from gateway.config.loading import settings_from_mapping  # noqa: F401  (documents the source)
    restricted = app.settings.template[1].model_copy(update={"organisations": ["globex"]})
    object.__setattr__(app.settings, "template", [app.settings.template[0], restricted])
    client = logged_in(app, web, "mmuster")
    assert 'href="/templates/change"' not in client.get("/templates").text
    assert client.get("/templates/change").status_code == 404
    csrf = csrf_of(client.get("/templates").text)
    assert client.post("/templates/change", data={"csrf": csrf, "subject": "x"}
                       ).status_code == 404


def test_a_bad_query_parameter_gets_the_portals_error_page(app: App, customers: None,
                                                           web: FastAPI) -> None:
    """Issue #17 item 7: `/tickets?page=abc` answered FastAPI's raw JSON 422; now the
    portal's own page, in the user's language (before login: the browser's)."""
    for username, says in (("mmuster", "Ungültige Angabe: page."),
                           ("jdoe", "Invalid value: page.")):
        response = logged_in(app, web, username).get("/tickets?page=abc")
        assert response.status_code == 400
        assert response.headers["content-type"].startswith("text/html")
        assert says in response.text and '"detail"' not in response.text
    anonymous = new_browser(web).get("/tickets?page=1.5",
                                     headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert anonymous.status_code == 400 and "Invalid value: page." in anonymous.text


def test_a_priority_out_of_range_is_refused_not_changed(app: App, customers: None,
                                                        web: FastAPI) -> None:
    """Issue #17 item 7: the template form's `priority=9` silently became 3; now the form
    comes back saying so, with what was typed, and nothing is stored or sent."""
    for username, says in (("mmuster", "Die Priorität muss zwischen 1 (sehr niedrig) und 5"),
                           ("jdoe", "The priority must be between 1 (very low) and 5")):
        client = logged_in(app, web, username)
        csrf = csrf_of(client.get("/templates/incident").text)
        for priority in ("9", "0", "drei"):
            response = client.post("/templates/incident", data={
                "csrf": csrf, "subject": "Drucker", "guide_system": "HP 4000",
                "text": "Papierstau.", "priority": priority})
            assert response.status_code == 400, priority
            assert says in response.text and 'value="Drucker"' in response.text
    with app.db.read() as session:
        assert session.execute(select(_ticket.c.id)).first() is None
    assert mails(app) == []


def test_a_form_or_method_the_framework_refuses_gets_the_error_page(
        app: App, customers: None, web: FastAPI) -> None:
    """Issue #17 item 7: too many form fields, a wrong method or a bad vote value answered
    plain English text (or just "Error"); now the portal's page says what is wrong."""
    for language, says in (("de", "Die Anfrage ist ungültig."),
                           ("en", "The request is invalid.")):
        client = new_browser(web)
        headers = {"Accept-Language": language}
        crowded = client.post("/faq/some-article/vote", headers=headers,
                              data={f"f{i}": "x" for i in range(6)})
        assert crowded.status_code == 400 and says in crowded.text
        wrong_method = client.put("/tickets", headers=headers)
        assert wrong_method.status_code == 405 and says in wrong_method.text
        assert wrong_method.headers["allow"] == "GET"
        csrf = csrf_of(client.get("/login", headers=headers).text)
        vote = client.post("/faq/some-article/vote", headers=headers,
                           data={"csrf": csrf, "helpful": "maybe"})
        assert vote.status_code == 400 and says in vote.text


def test_the_ticket_view_names_its_participants(app: App, customers: None, web: FastAPI) -> None:
    """Issue #16 item 2: the Cc of the opening mail is a participant, and the customer sees
    who else takes part ("Beteiligte" / "Participants")."""
    message = mail("Drucker mit Chefin", body="Berta liest mit.\n")
    message["Cc"] = "Berta Boss <berta.boss@acme.example>"
    deliver(app, message)
    with app.db.read() as session:
        number = str(session.execute(select(_ticket.c.number).where(
            _ticket.c.title == "Drucker mit Chefin")).scalar_one())
    client = logged_in(app, web, "mmuster")
    page = client.get(f"/tickets/{number}").text
    assert re.search(r"<dt>Beteiligte</dt><dd class=\"participants\">Berta Boss "
                     r"&lt;berta.boss@acme.example&gt;</dd>", page), page
    post_form(client, f"/tickets/{number}", "/language",
              {"language": "en", "next": f"/tickets/{number}"})
    assert "<dt>Participants</dt>" in client.get(f"/tickets/{number}").text
    plain = ticket_by_mail(app, "Drucker ohne Cc")
    assert "Beteiligte" not in client.get(f"/tickets/{plain}").text


def test_a_portal_reply_ends_the_wait_for_the_customer(app: App, customers: None,
                                                       web: FastAPI) -> None:
    """Issue #16 item 5: a pending ticket is open again when its customer answers in the
    portal, as by mail, without a status mail (they know they wrote)."""
    number = ticket_by_mail(app, "Warte auf Kunde")
    with app.db.write() as session:
        change_state(session, app.answering, find_ticket(session, number).id or 0,
                     State.PENDING, actor="test")
    before = len(mails(app))
    client = logged_in(app, web, "mmuster")
    csrf = csrf_of(client.get(f"/tickets/{number}").text)
    assert client.post(f"/tickets/{number}/reply",
                       data={"csrf": csrf, "text": "Hier die Angaben."}).status_code == 303
    with app.db.read() as session:
        detail = ticket_detail(session, number)
    assert detail["state"] == "open"
    assert [h["actor"] for h in detail["history"] if h["field"] == "state"][-1] == "web:mmuster"
    assert "status" not in [event for event, _, _ in mails(app)[before:]]
