"""Assignment by mail (`#take`, `#assign`), shown to staff and filtered in the CLI, and the
order in which staff are reminded (issue #16 item 6). Driven through `ticketgw ingest` as an
MTA pipe, with the CLI to look, on both databases."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.app import build_app, prepare_database
from gateway.tickets.actions import assign
from gateway.tickets.assignees import staff_to_remind
from gateway.tickets.ticket import find_ticket
from tests.conftest import BASE_CONFIG, make_settings
from tests.integration.outbound.test_answers import deliver, mail
from tests.integration.smtp_helpers import DESK_WITH_STAFF
from tests.integration.tickets.test_staff_by_mail import (
    ANNA,
    MAX,
    STAFF_PASS,
    Cli,
    dmarc,
    ingest,
    message,
    reply_to,
    text_of,
    vouched_desk,
)

BERND = "bernd.berater@example.com"


@pytest.fixture
def desk(database_url: str, tmp_path: Path, run_cli: Any) -> Cli:
    """Anna and Bernd staff the service desk; `authserv_id` set; the customer Max."""
    extra = DESK_WITH_STAFF.replace(f'staff = ["{ANNA}"]', f'staff = ["{ANNA}", "{BERND}"]')
    extra += f'\n[[staff]]\nemail = "{BERND}"\nname = "Bernd Berater"\nlanguage = "en"\n'
    return vouched_desk(run_cli, database_url, tmp_path, extra=extra)


def notices(cli: Cli, to: str) -> list[Any]:
    return [m for e, r, m in cli.outbox() if e == "staff-notify" and r == [to]]


def test_take_and_assign_by_mail_show_in_notices_show_and_list(desk: Cli) -> None:
    cli = desk
    number = str(ingest(cli, message(f"Max Mustermann <{MAX}>", "incident@support.example.com",
                                     "Drucker defekt", "<a1@acme.example>", "Er druckt nicht.\n",
                                     Authentication_Results=dmarc("pass")),
                        "incident@support.example.com", MAX)["ticket"])
    [to_anna] = notices(cli, ANNA)
    [to_bernd] = notices(cli, BERND)
    assert "#take" in text_of(to_anna) and "#assign ADRESSE" in text_of(to_anna)
    assert "#take" in text_of(to_bernd) and "#assign ADDRESS" in text_of(to_bernd)
    html = to_bernd.get_body(("html",)).get_content()
    assert "#take" in html and "#assign ADDRESS" in html
    assert "Zuständig" not in text_of(to_anna) and "Assignee" not in text_of(to_bernd)
    assert cli.ticket(number)["assignee"] is None
    unassigned = cli.json("ticket", "list", "--unassigned")
    assert [t["number"] for t in unassigned] == [number]
    staff_address = reply_to(to_bernd)

    taken = ingest(cli, message(f"Bernd Berater <{BERND}>", staff_address,
                                f"Re: [Ticket#{number}]", "<a2@example.com>",
                                "#take\nIch schaue es mir an.\n",
                                Authentication_Results=STAFF_PASS), staff_address, BERND)
    assert f"#take {BERND}" in taken["reason"]
    assert cli.ticket(number)["assignee"] == BERND
    assert [t["number"] for t in cli.json("ticket", "list", "--assignee",
                                          BERND.upper())] == [number]
    assert cli.json("ticket", "list", "--assignee", ANNA) == []
    assert cli.json("ticket", "list", "--unassigned") == []
    listed = cli("ticket", "list").stdout
    assert "ASSIGNEE" in listed and BERND in listed

    customer_address = reply_to(next(m for e, _, m in cli.outbox() if e == "ack"))
    ingest(cli, message(f"Max Mustermann <{MAX}>", customer_address, f"Re: [Ticket#{number}]",
                        "<a3@acme.example>", "Noch immer.\n",
                        Authentication_Results=dmarc("pass")), customer_address, MAX)
    assert f"Zuständig: {BERND}" in text_of(notices(cli, ANNA)[-1])
    assert f"Assignee: {BERND}" in text_of(notices(cli, BERND)[-1])
    assert BERND in notices(cli, BERND)[-1].get_body(("html",)).get_content()

    ingest(cli, message(f"Anna Agent <{ANNA}>", staff_address, f"Re: [Ticket#{number}]",
                        "<a4@example.com>", "#assign Anna Agent\n#internal\nÜbernehme ich.\n",
                        Authentication_Results=STAFF_PASS), staff_address, ANNA)
    shown = cli.ticket(number)
    assert shown["assignee"] == ANNA
    assert [(h["field"], h["new"]) for h in shown["history"] if h["field"] == "owner"] == [
        ("owner", BERND), ("owner", ANNA)]
    assert f"assignee: {ANNA}" in cli("ticket", "show", number).stdout


def test_take_from_an_address_that_is_not_staff_runs_nothing(desk: Cli) -> None:
    """All or nothing: #take by a sender who is not an active staff member fails the block."""
    cli = desk
    number = str(ingest(cli, message(f"Max Mustermann <{MAX}>", "incident@support.example.com",
                                     "VPN", "<t1@acme.example>", "Geht nicht.\n",
                                     Authentication_Results=dmarc("pass")),
                        "incident@support.example.com", MAX)["ticket"])
    staff_address = reply_to(notices(cli, ANNA)[0])
    entry = ingest(cli, message("Carla <carla@example.com>", staff_address,
                                f"Re: [Ticket#{number}]", "<t2@example.com>",
                                "#state pending\n#take\nOk.\n",
                                Authentication_Results=STAFF_PASS), staff_address,
                   "carla@example.com")
    shown = cli.ticket(number)
    assert shown["assignee"] is None and shown["state"] == "new", entry


def test_staff_to_remind_puts_the_assignee_first(database_url: str, tmp_path: Path) -> None:
    queues = [{**BASE_CONFIG["queue"][0], "staff": [ANNA, BERND]}, BASE_CONFIG["queue"][1]]
    settings = make_settings(database_url, tmp_path / "data", queue=queues, staff=[
        *BASE_CONFIG["staff"], {"email": BERND, "name": "Bernd Berater"}])
    app = build_app(settings)
    try:
        prepare_database(app, migrate=False)
        [done] = deliver(app, mail(message_id="<r1@acme>", sender="moritz@acme.example"))
        with app.db.write() as session:
            ticket_id = find_ticket(session, str(done.ticket_number)).id or 0
            assert staff_to_remind(session, app.settings, ticket_id) == (ANNA, BERND)
            assign(session, ticket_id, BERND.upper(), actor="test")
            assert staff_to_remind(session, app.settings, ticket_id) == (BERND, ANNA)
            assign(session, ticket_id, "Anna Agent", actor="test")
            assert staff_to_remind(session, app.settings, ticket_id) == (ANNA, BERND)   # once
    finally:
        app.close()
