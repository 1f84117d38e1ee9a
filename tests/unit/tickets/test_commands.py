"""Staff mail commands and the Authentication-Results check."""

from __future__ import annotations

import pytest

from gateway.tickets.commands import Command, authenticated, closing_state, parse_commands
from gateway.tickets.ticket import State


def test_commands_at_the_top_are_taken_out_of_the_text() -> None:
    mail = parse_commands("#state closed\n#priority high\n\nErledigt, danke!\n#state open\n")
    assert mail.commands == (Command("state", "closed"), Command("priority", "4"))
    assert mail.text == "Erledigt, danke!\n#state open"        # not at the top: text
    assert mail.errors == () and not mail.internal
    assert closing_state(mail.commands) is State.CLOSED


def test_internal_and_assign() -> None:
    mail = parse_commands("  #INTERNAL\n#assign anna.agent@example.com\nNur für uns.")
    assert mail.internal
    assert mail.commands[1] == Command("assign", "anna.agent@example.com")
    assert mail.text == "Nur für uns."


@pytest.mark.parametrize("line, reason", [
    ("#state done", "'done' is not a state"),
    ("#priority urgent", "'urgent' is not a priority"),
    ("#internal please", "takes no value"),
    ("#assign", "needs a staff address"),
    ("#close", "unknown command #close"),
    ("#files 0", "1 to 365"),
    ("#files 366", "1 to 365"),
    ("#files soon", "1 to 365"),
])
def test_bad_commands_are_reported_and_the_rest_still_counts(line: str, reason: str) -> None:
    mail = parse_commands(f"{line}\n#priority 2\nText")
    assert [e.line for e in mail.errors] == [line]
    assert reason in mail.errors[0].reason
    assert mail.commands == (Command("priority", "2"),) and mail.text == "Text"


def test_files_with_and_without_days() -> None:
    assert parse_commands("#files\nBitte hochladen.").commands == (Command("files", ""),)
    assert parse_commands("#Files 014\n").commands == (Command("files", "14"),)


def test_a_mail_without_commands() -> None:
    mail = parse_commands("Hallo,\n#state closed steht unten nicht oben")
    assert mail.commands == () and mail.text.startswith("Hallo,")
    assert parse_commands("").text == ""


MX = "mx.example.com"


@pytest.mark.parametrize("header, ok", [
    (f"{MX}; dmarc=pass (p=reject) header.from=example.com", True),
    (f"{MX}; dkim=pass header.d=example.com header.s=sel; spf=fail", True),
    (f"{MX}; dkim=pass header.i=@example.com", True),
    (f"{MX} (version); spf=pass smtp.mailfrom=example.com; dmarc=pass header.from=Example.COM",
     True),
    (f"{MX}; dmarc=fail header.from=example.com", False),
    (f"{MX}; dkim=pass header.d=evil.example", False),                 # another domain
    (f"{MX}; spf=pass smtp.mailfrom=example.com", False),              # SPF alone: no
    ("mx.evil.example; dmarc=pass header.from=example.com", False),    # not our server
])
def test_authentication_results(header: str, ok: bool) -> None:
    assert authenticated([header], "anna.agent@example.com", MX) is ok


def test_only_our_topmost_header_counts() -> None:
    forged_below = [f"{MX}; dmarc=fail header.from=example.com",
                    f"{MX}; dmarc=pass header.from=example.com"]
    assert not authenticated(forged_below, "anna.agent@example.com", MX)
    assert not authenticated([], "anna.agent@example.com", MX)
