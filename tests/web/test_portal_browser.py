"""The customer portal in a real browser: Debian's Chromium driven by Playwright for Python,
against a real `ticketgw serve` process whose outbound mail goes to a Maildir.

The whole journey of issue #5: password lost -> token mail read from the Maildir -> confirm
-> password mail -> login -> choose a new password -> a ticket from the incident template
with an attachment -> it shows under Open -> search finds it -> reply -> staff closes it
(CLI) -> it shows under Closed, and its status mail was sent.

Chromium must be at /usr/bin/chromium (`apt-get install chromium`); when it is not, this
test FAILS, it never skips. Screenshots of every page go to the test's directory, and to
$TGW_SCREENSHOTS_DIR when set (that is how docs/screenshots/ is made).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.maildir import Maildir
from tests.serve_helpers import free_port, serving
from tests.web.browser import german_page

PASSWORD = "Mein neues Passwort 42"

CONFIG = """\
[database]
url = "{database_url}"

[storage]
data_dir = "data"

[inbound]
smtp = ""
domains = ["support.example.com"]

[outbound]
transport = "maildir:outbox"
from = "Service Desk <support@support.example.com>"

[web]
listen = "127.0.0.1:{port}"
base_url = "http://127.0.0.1:{port}"

[[queue]]
id = "servicedesk"
from = "Service Desk <support@support.example.com>"
staff = ["anna.agent@example.com"]

[[staff]]
email = "anna.agent@example.com"
name = "Anna Agent"

[[template]]
id = "incident"
group = "incident"
name = {{ de = "Allgemeine Störungsmeldung", en = "General incident report" }}
addresses = ["incident@support.example.com"]
queue = "servicedesk"
priority = 3

[[template.guide]]
key = "system"
label = {{ de = "Betroffenes System", en = "Affected system" }}
required = true

[[template.guide]]
key = "since"
label = {{ de = "Seit wann", en = "Since when" }}

[[template]]
id = "change"
group = "change"
name = {{ de = "Änderungsanforderung", en = "Change request" }}
addresses = ["change@support.example.com"]
queue = "servicedesk"

[[template]]
id = "order"
group = "service-request"
name = {{ de = "Bestellung", en = "Order" }}
addresses = ["order@support.example.com"]
queue = "servicedesk"
"""


def text_of(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())  # type: ignore[attr-defined]


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    config = tmp_path / "ticketgw.toml"
    config.write_text(CONFIG.format(database_url=database_url, port=port), encoding="utf-8")
    added = subprocess.run(
        [*_ticketgw(), "--config", str(config), "customer", "add", "mmuster",
         "max.mustermann@acme.example", "--name", "Max Mustermann", "--org", "acme"],
        cwd=tmp_path, capture_output=True, text=True, env=_env())
    assert added.returncode == 0, added.stderr
    base = f"http://127.0.0.1:{port}"
    with serving(["--config", str(config), "serve"], tmp_path, f"{base}/healthz"):
        yield base, config


def _ticketgw() -> list[str]:
    import sys
    return [sys.executable, "-m", "gateway"]


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TICKETGW_")}


def test_the_customer_journey_in_chromium(server: tuple[str, Path], tmp_path: Path) -> None:
    from playwright.sync_api import expect

    base, config = server
    outbox = Maildir(tmp_path / "outbox")

    with german_page(tmp_path, "portal") as (page, shot):

        # password lost (also the first login)
        page.goto(f"{base}/login")
        shot("login")
        page.get_by_role("link", name="Passwort verloren?").click()
        page.get_by_label("Benutzername").fill("mmuster")
        shot("password-lost")
        page.get_by_role("button", name="Neues Passwort anfordern").click()
        expect(page.get_by_role("status")).to_contain_text("Bestätigungslink")
        token_mail = outbox.wait_for(lambda m: "/password/confirm?token=" in text_of(m))
        assert token_mail["To"] == "Max Mustermann <max.mustermann@acme.example>"
        link = re.search(r"http://\S+/password/confirm\?token=\S+", text_of(token_mail))
        assert link
        page.goto(link.group(0))
        shot("confirm")
        page.get_by_role("button", name="Bestätigen").click()
        expect(page.get_by_role("status")).to_contain_text("neues Passwort wurde")
        password_mail = outbox.wait_for(lambda m: "    " in text_of(m)
                                        and "/login" in text_of(m)
                                        and "/password/confirm" not in text_of(m))
        mailed = re.search(r"^\s{4}(\S+)\s*$", text_of(password_mail), re.M)
        assert mailed

        # log in, then choose an own password
        page.goto(f"{base}/login")
        page.get_by_label("Benutzername").fill("mmuster")
        page.get_by_label("Passwort", exact=True).fill(mailed.group(1))
        page.get_by_role("button", name="Anmelden").click()
        expect(page).to_have_url(f"{base}/password/change")
        shot("change-password")
        page.get_by_label("Aktuelles Passwort").fill(mailed.group(1))
        page.get_by_label("Neues Passwort", exact=True).fill(PASSWORD)
        page.get_by_label("Neues Passwort wiederholen").fill(PASSWORD)
        page.get_by_role("button", name="Speichern").click()
        expect(page).to_have_url(re.compile(r"/tickets"))

        # a ticket from the incident template, with an attachment
        page.get_by_role("link", name="Ticketvorlagen").click()
        expect(page.get_by_role("heading", name="Störungsmeldungen")).to_be_visible()
        shot("templates")
        page.get_by_role("link", name="Allgemeine Störungsmeldung").click()
        page.get_by_label("Betreff").fill("Drucker im 2. OG druckt nicht")
        page.get_by_label("Betroffenes System").fill("HP LaserJet 4000")
        page.get_by_label("Seit wann").fill("heute früh")
        page.get_by_label("Text").fill("Papierstau-Meldung, obwohl kein Papier klemmt.")
        attachment = tmp_path / "fehlerprotokoll.txt"
        attachment.write_text("E42 paper jam\n", encoding="utf-8")
        page.get_by_label("Anlagen").set_input_files(str(attachment))
        page.get_by_label("Priorität").select_option("4")
        shot("template-form")
        page.get_by_role("button", name="Ticket erstellen").click()
        expect(page.get_by_role("status")).to_contain_text("wurde erstellt")
        number = re.search(r"/tickets/(\d+)", page.url)
        assert number
        number_text = number.group(1)
        expect(page.get_by_role("link", name="fehlerprotokoll.txt")).to_be_visible()
        shot("ticket")
        ack = outbox.wait_for(lambda m: f"Ticket#{number_text}" in str(m["Subject"])
                              and "max.mustermann" in str(m["To"]))
        assert ack["Auto-Submitted"]

        # it shows under Open, and the search finds it
        page.get_by_role("link", name="Meine Tickets").click()
        page.get_by_role("link", name="Offen").click()
        expect(page.get_by_role("row").filter(has_text=number_text)).to_contain_text(
            "Drucker im 2. OG druckt nicht")
        shot("my-tickets-open")
        page.get_by_label("Suchen in Nummer, Betreff und Text").fill("Papierstau")
        page.get_by_role("button", name="Suche").click()
        expect(page.get_by_role("row").filter(has_text=number_text)).to_be_visible()
        shot("search")

        # reply
        page.get_by_role("link", name=number_text).first.click()
        page.get_by_label("Text").fill("Nach dem Neustart geht es wieder nicht.")
        page.get_by_role("button", name="Absenden").click()
        expect(page.get_by_role("status")).to_contain_text("Antwort wurde hinzugefügt")
        expect(page.get_by_text("Nach dem Neustart geht es wieder nicht.")).to_be_visible()
        shot("reply")

        # staff closes it with the CLI; it shows under Closed and its status mail is sent
        closed = subprocess.run([*_ticketgw(), "--config", str(config), "ticket", "set",
                                 number_text, "--state", "closed"], cwd=tmp_path,
                                capture_output=True, text=True, env=_env())
        assert closed.returncode == 0, closed.stderr
        page.goto(f"{base}/tickets?filter=closed")
        expect(page.get_by_role("row").filter(has_text=number_text)).to_contain_text(
            "geschlossen")
        shot("my-tickets-closed")
        outbox.wait_for(lambda m: f"Ticket#{number_text}" in str(m["Subject"])
                        and "geschlossen" in text_of(m) and "max.mustermann" in str(m["To"]))
