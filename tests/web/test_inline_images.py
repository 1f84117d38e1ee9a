"""Inline images and remote images of HTML mails in the portal's ticket view (HTTP, both
databases): `cid:` images load through the ticket's attachment download, remote images
(tracking pixels) are removed when the mail is stored and the page says so in the
reader's language."""

from __future__ import annotations

import re
from email.message import EmailMessage

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from gateway.app import App
from gateway.inbound.intake import Envelope, Incoming, accept_many
from gateway.inbound.worker import process_due
from gateway.store.models import Article, Ticket, table_of
from tests.conftest import CORPUS
from tests.web.conftest import deliver, log_in, new_browser, set_password

_ticket = table_of(Ticket)
_article = table_of(Article)
# a real Lotus Notes mail: HTML with three inline GIFs (cid:), and a PDF attachment
NOTES_MAIL = CORPUS / "spamscope-mail-parser" / "mail_test_10"
PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00"
         b"\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")


def as_customer(raw: bytes, sender: str = "max@acme.example") -> bytes:
    """The real mail, its From replaced by a customer's (so the portal shows it to them)."""
    head, separator, body = raw.partition(b"\n\n") if b"\r\n\r\n" not in raw else \
        raw.partition(b"\r\n\r\n")
    head = re.sub(rb"(?im)^From:.*\n(?:[ \t].*\n)*", b"", head + b"\n").rstrip(b"\n")
    return b"From: " + sender.encode() + b"\n" + head + separator + body


def deliver_raw(app: App, raw: bytes, sender: str = "max@acme.example") -> None:
    accept_many(app.db, blobs=app.blobs, items=[Incoming(raw, Envelope(
        source="smtp", mail_from=sender, rcpt_to=("incident@support.example.com",)))])
    [result] = process_due(app.db, app.stages)
    assert result.outcome in ("created", "appended"), result.reason


def logged_in(app: App, web: FastAPI, username: str) -> TestClient:
    set_password(app, username)
    client = new_browser(web)
    log_in(client, username)
    return client


def only_number(app: App) -> str:
    with app.db.read() as session:
        return str(session.execute(select(_ticket.c.number)).scalar_one())


def shown_images(page: str) -> list[str]:
    main = page.split('<main id="main">', 1)[1]
    return re.findall(r'<img[^>]*\ssrc="([^"]*)"', main)


def test_inline_images_of_a_real_mail_load_from_the_ticket(app: App, customers: None,
                                                           web: FastAPI) -> None:
    deliver_raw(app, as_customer(NOTES_MAIL.read_bytes()))
    number = only_number(app)
    client = logged_in(app, web, "mmuster")
    page = client.get(f"/tickets/{number}")
    assert page.status_code == 200
    sources = shown_images(page.text)
    assert len(sources) == 3 and "cid:" not in page.text
    for source in sources:
        assert re.fullmatch(rf"/tickets/{number}/attachments/\d+", source), source
        image = client.get(source)
        assert image.status_code == 200 and image.headers["content-type"] == "image/gif"
        assert image.content.startswith(b"GIF8")
        assert image.headers["x-content-type-options"] == "nosniff"
    assert len(set(sources)) == 3
    assert "remote-images" not in page.text            # none were removed from this one
    # the download keeps its access checks: another customer gets 404, not the image
    assert logged_in(app, web, "jdoe").get(sources[0]).status_code == 404


def tracked_mail(sender: str, message_id: str, cid: str = "logo@acme") -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = "incident@support.example.com"
    message["Subject"] = "Newsletter mit Zählpixel"
    message["Message-ID"] = message_id
    message.set_content("Hallo, siehe HTML.")
    message.add_alternative(
        f'<p>Hallo <img src="cid:{cid}" alt="Logo"></p>'
        '<img src="https://track.example/open.gif?u=42" width="1" height="1">'
        '<img src="http://cdn.example/banner.png" alt="Banner">'
        '<img src="//cdn.example/x.png"><img src="data:image/png;base64,AAAA">',
        subtype="html")
    html_part = message.get_payload()[1]
    html_part.add_related(PIXEL, maintype="image", subtype="gif", cid=f"<{cid}>")
    return message


def test_remote_images_are_removed_and_the_page_says_so_in_both_languages(
        app: App, customers: None, web: FastAPI) -> None:
    deliver(app, tracked_mail("max@acme.example", "<track-de@x>"))
    deliver(app, tracked_mail("jane@globex.example", "<track-en@x>"))
    with app.db.read() as session:
        stored = session.execute(select(_article.c.body_html, _article.c.remote_images)).all()
    for html, removed in stored:
        assert "track.example" not in html and "cdn.example" not in html and removed == 3
        assert 'src="cid:logo@acme"' in html
    with app.db.read() as session:
        german, english = session.execute(select(_ticket.c.number).order_by(_ticket.c.id)
                                          ).scalars().all()
    de = logged_in(app, web, "mmuster").get(f"/tickets/{german}").text
    en = logged_in(app, web, "jdoe").get(f"/tickets/{english}").text
    assert "Externe Bilder wurden aus dieser Nachricht entfernt (Anzahl: 3)" in de
    assert "Remote images were removed from this message (count: 3)" in en
    for page, number in ((de, german), (en, english)):
        [source] = shown_images(page)
        assert re.fullmatch(rf"/tickets/{number}/attachments/\d+", source)
        main = page.split('<main id="main">', 1)[1]
        assert "track.example" not in main and "cdn.example" not in main


def test_a_cid_of_another_article_is_not_resolved(app: App, customers: None,
                                                  web: FastAPI) -> None:
    """Only the article's own attachments are inline images: a later mail on the ticket that
    names an earlier mail's Content-ID shows no image."""
    first = tracked_mail("max@acme.example", "<first@x>", cid="mine@acme")
    deliver(app, first)
    number = only_number(app)
    later = EmailMessage()
    later["From"] = "max@acme.example"
    later["To"] = "incident@support.example.com"
    later["Subject"] = f"Re: [Ticket#{number}] Newsletter"
    later["Message-ID"] = "<later@x>"
    later["In-Reply-To"] = "<first@x>"
    later.set_content("siehe HTML")
    later.add_alternative('<p>Nochmal: <img src="cid:mine@acme" alt="x"></p>', subtype="html")
    deliver(app, later)
    page = logged_in(app, web, "mmuster").get(f"/tickets/{number}").text
    assert len(shown_images(page)) == 1                 # the first article's own image only
    assert "Nochmal:" in page and "cid:" not in page
