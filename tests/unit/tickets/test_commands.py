"""Staff mail commands: the command block, its errors, and `#internal` anywhere."""

from __future__ import annotations

import pytest

from gateway.tickets.commands import Command, closing_state, parse_commands
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
    ("#internl", "unknown command #internl"),
    ("#files 0", "1 to 365"),
    ("#files 366", "1 to 365"),
    ("#files soon", "1 to 365"),
    ("# state closed", "not a command"),
    ("#", "not a command"),
    ("#1 Drucker", "not a command"),
    ("#priority4", "not a command"),
])
def test_every_bad_line_of_the_block_is_an_error(line: str, reason: str) -> None:
    """Each wrong line is reported; the pipeline then carries out nothing of the mail
    (tests/integration/outbound/test_staff_trust.py), so the block is still read whole."""
    mail = parse_commands(f"{line}\n#priority 2\nText")
    assert [e.line for e in mail.errors] == [line]
    assert reason in mail.errors[0].reason
    assert mail.commands == (Command("priority", "2"),) and mail.text == "Text"


@pytest.mark.parametrize("text", [
    "Nur für uns:\n#internal\nDer Kunde zahlt nicht.",
    "Der Kunde zahlt nicht. #INTERNAL",
    "#state pending\n\nDer Kunde zahlt nicht.\n\n  #Internal bitte",
])
def test_internal_anywhere_in_the_text_keeps_it_internal(text: str) -> None:
    mail = parse_commands(text)
    assert mail.internal and mail.errors == ()


def test_files_with_and_without_days() -> None:
    assert parse_commands("#files\nBitte hochladen.").commands == (Command("files", ""),)
    assert parse_commands("#Files 014\n").commands == (Command("files", "14"),)


def test_a_mail_without_commands() -> None:
    mail = parse_commands("Hallo,\n#state closed steht unten nicht oben")
    assert mail.commands == () and mail.text.startswith("Hallo,")
    assert parse_commands("").text == ""


def test_cc_add_and_remove_take_one_address() -> None:
    mail = parse_commands("#cc add Berta Boss <berta@acme.example>\n#CC Remove max@acme.example\n"
                          "Text")
    assert mail.commands == (Command("cc", "add berta@acme.example"),
                             Command("cc", "remove max@acme.example"))
    assert mail.errors == () and mail.text == "Text"


@pytest.mark.parametrize("line", ["#cc", "#cc berta@acme.example", "#cc add",
                                  "#cc add nobody", "#cc invite berta@acme.example",
                                  "#cc add a@b.example c@d.example"])
def test_a_wrong_cc_line_is_an_error(line: str) -> None:
    mail = parse_commands(f"{line}\nText")
    assert mail.commands == ()
    assert [e.line for e in mail.errors] == [line]
    assert "#cc takes add or remove and one mail address" in mail.errors[0].reason


def test_take_needs_no_value() -> None:
    mail = parse_commands("#take\n#state open\nIch schaue es mir an.")
    assert mail.commands == (Command("take", ""), Command("state", "open"))
    wrong = parse_commands("#take bernd\nText")
    assert wrong.commands == () and "#take takes no value" in wrong.errors[0].reason
