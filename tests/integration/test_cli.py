"""The `ticketgw` command as users run it: output, --json, exit codes, nothing half-written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gateway.tickets.numbers import NUMBER_PATTERN
from tests.conftest import write_config

TEMPLATES = """
[inbound]
domains = ["support.example.com"]

[[queue]]
id = "servicedesk"
from = "Service Desk <support@support.example.com>"
staff = ["anna.agent@example.com"]

[[template]]
id = "incident"
group = "incident"
name = { de = "Störung", en = "Incident" }
addresses = ["incident@support.example.com"]
queue = "servicedesk"
guide = [{ key = "system", label = { de = "System", en = "System" }, required = true }]
"""


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Path:
    return write_config(tmp_path / "ticketgw.toml", database_url,
                        extra=TEMPLATES.replace('[inbound]\ndomains = ["support.example.com"]\n',
                                                ""))


def test_demo_loads_everything_a_newcomer_needs(run_cli: Any, config: Path) -> None:
    result = run_cli("--config", str(config), "demo")
    assert result.exit_code == 0, result.output
    tickets = json.loads(run_cli("--config", str(config), "ticket", "list", "--json").stdout)
    assert len(tickets) == 5
    assert all(NUMBER_PATTERN.match(t["number"]) for t in tickets)
    assert set(tickets[0]) == {"number", "title", "state", "priority", "template", "queue",
                               "customer", "contact", "assignee", "created", "updated",
                               "first_response_due", "first_response_at", "solution_due",
                               "next_due"}
    assert {t["state"] for t in tickets} == {"new", "open", "pending", "closed"}
    templates = json.loads(run_cli("--config", str(config), "template", "list", "--json").stdout)
    assert {t["group"] for t in templates} == {"change", "incident", "service-request"}
    customers = json.loads(run_cli("--config", str(config), "customer", "list", "--json").stdout)
    assert {c["username"] for c in customers} == {"mmuster", "emusterfrau", "jdoe", "jsmith"}
    staff = json.loads(run_cli("--config", str(config), "staff", "list", "--json").stdout)
    assert {s["email"] for s in staff} >= {"anna.agent@example.com", "ben.agent@example.com"}
    # a second run adds nothing
    assert run_cli("--config", str(config), "demo").exit_code == 0
    assert len(json.loads(run_cli("--config", str(config), "ticket", "list",
                                  "--json").stdout)) == 5


def test_ticket_show_json_has_the_contract_fields(run_cli: Any, config: Path) -> None:
    run_cli("--config", str(config), "demo")
    number = json.loads(run_cli("--config", str(config), "ticket", "list", "--state", "closed",
                                "--json").stdout)[0]["number"]
    result = run_cli("--config", str(config), "ticket", "show", number, "--json")
    assert result.exit_code == 0
    shown = json.loads(result.stdout)
    assert {"number", "title", "state", "priority", "template", "queue", "customer", "created",
            "updated", "articles"} <= set(shown)
    article = shown["articles"][0]
    assert {"direction", "channel", "internal", "sender", "from", "subject", "body",
            "message_id", "created", "attachments"} <= set(article)
    text = run_cli("--config", str(config), "ticket", "show", number).stdout
    assert f"Ticket#{number}" in text and "state: closed" in text


@pytest.mark.parametrize(("listing", "one"), [
    (("ticket", "list"), ("ticket", "show", "X")), (("outbox", "list"), ("outbox", "show", "1")),
    (("inbound", "list"), ("inbound", "show", "1")),
    (("quarantine", "list"), ("quarantine", "show", "1")),
    (("template", "list"), ("template", "show", "X")),
    (("mailbox", "list"), ("mailbox", "test", "X")), (("customer", "list"), ("explain", "-"))])
def test_json_help_says_what_is_printed(run_cli: Any, listing: tuple[str, ...],
                                        one: tuple[str, ...]) -> None:
    """Listings print a list of objects, `show` and its kind one object, as --help says."""
    assert "JSON list of objects" in run_cli(*listing, "--help").stdout
    shown = " ".join(run_cli(*one[:-1], "--help").stdout.split())
    assert "--json Print one JSON object" in shown and "list" not in shown.split("--json")[1]


def test_ticket_set_changes_and_refuses_bad_values(run_cli: Any, config: Path) -> None:
    run_cli("--config", str(config), "demo")
    number = json.loads(run_cli("--config", str(config), "ticket", "list", "--state", "open",
                                "--json").stdout)[0]["number"]
    result = run_cli("--config", str(config), "ticket", "set", number, "--state", "closed",
                     "--priority", "very high")
    assert result.exit_code == 0, result.output
    assert "-> closed" in result.stdout and "-> 5 very high" in result.stdout

    bad = run_cli("--config", str(config), "ticket", "set", number, "--state", "open",
                  "--priority", "urgent")
    assert bad.exit_code == 1
    assert "error: 'urgent' is not a priority" in bad.stderr
    shown = json.loads(run_cli("--config", str(config), "ticket", "show", number,
                               "--json").stdout)
    assert (shown["state"], shown["priority"]) == ("closed", 5)     # the good half not applied

    for args, message in [
        (("ticket", "show", "2020010110999999"), "no ticket with number '2020010110999999'"),
        (("ticket", "set", number, "--state", "done"), "'done' is not a state"),
        (("ticket", "set", number), "nothing to change"),
    ]:
        result = run_cli("--config", str(config), *args)
        assert result.exit_code == 1 and message in result.stderr, result.output


def test_customer_add_import_list(run_cli: Any, config: Path, tmp_path: Path) -> None:
    added = run_cli("--config", str(config), "customer", "add", "mmuster",
                    "Max.Muster@Acme.example", "--name", "Max Muster", "--org", "acme")
    assert added.exit_code == 0, added.output
    again = run_cli("--config", str(config), "customer", "add", "mmuster", "x@acme.example")
    assert again.exit_code == 1 and "exists already" in again.stderr

    bad = tmp_path / "bad.csv"
    bad.write_text("username,email,name\nok,ok@example.com,Ok\nbroken,nope,Broken\n"
                   "mmuster,m@example.com,Dup\n", encoding="utf-8")
    result = run_cli("--config", str(config), "customer", "import", str(bad))
    assert result.exit_code == 1
    assert "line 3: 'nope' is not a valid mail address" in result.stderr
    assert "line 4: username 'mmuster' exists already" in result.stderr

    good = tmp_path / "good.csv"
    good.write_text("username,email,organisation,language\n"
                    "jdoe,jane@globex.example,globex,en\nerika,erika@acme.example,acme,de\n",
                    encoding="utf-8")
    result = run_cli("--config", str(config), "customer", "import", str(good))
    assert result.exit_code == 0 and "imported 2 customers" in result.stdout

    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("username,email,name\nx,x@example.com,Jürgen\n".encode("latin-1"))
    result = run_cli("--config", str(config), "customer", "import", str(latin1))
    assert result.exit_code == 1 and "not UTF-8" in result.stderr

    listed = json.loads(run_cli("--config", str(config), "customer", "list", "--json").stdout)
    assert [(c["username"], c["email"], c["organisation"]) for c in listed] == [
        ("erika", "erika@acme.example", "acme"), ("jdoe", "jane@globex.example", "globex"),
        ("mmuster", "Max.Muster@Acme.example", "acme")]
    table = run_cli("--config", str(config), "customer", "list").stdout
    assert table.splitlines()[0].split() == ["USERNAME", "EMAIL", "NAME", "ORGANISATION",
                                             "LANGUAGE", "ACTIVE"]


def test_template_and_queue_listings(run_cli: Any, config: Path) -> None:
    assert run_cli("--config", str(config), "db", "upgrade").exit_code == 0
    shown = run_cli("--config", str(config), "template", "show", "incident")
    assert shown.exit_code == 0 and "* system: System / System" in shown.stdout
    assert json.loads(run_cli("--config", str(config), "queue", "list", "--json").stdout) == [
        {"id": "servicedesk", "name": "servicedesk",
         "from": "Service Desk <support@support.example.com>", "language": "de",
         "active": True}]
    missing = run_cli("--config", str(config), "template", "show", "nope")
    assert missing.exit_code == 1 and "no template 'nope'" in missing.stderr


@pytest.mark.backends("sqlite")
def test_unmigrated_database_tells_what_to_run(run_cli: Any, tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", f"sqlite:///{tmp_path}/fresh.db")
    result = run_cli("--config", str(config), "ticket", "list")
    assert result.exit_code == 75
    assert "is empty (no tables)" in result.stderr and "ticketgw db upgrade" in result.stderr
    assert run_cli("--config", str(config), "db", "status").exit_code == 1
    upgraded = run_cli("--config", str(config), "db", "upgrade")
    assert upgraded.exit_code == 0 and "is at revision" in upgraded.stdout
    assert run_cli("--config", str(config), "ticket", "list").stdout.strip() == "(no tickets)"
    assert run_cli("--config", str(config), "db", "status").exit_code == 0


def test_unreachable_database_is_exit_75_with_a_clear_message(run_cli: Any,
                                                              tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.toml", "postgresql+psycopg://gw@127.0.0.1:1/gw")
    result = run_cli("--config", str(config), "ticket", "list", "--json")
    assert result.exit_code == 75
    assert result.stderr.startswith(
        "error: cannot connect to the database postgresql+psycopg://gw@127.0.0.1:1/gw: ")
    assert result.stdout == ""


def test_init_then_check_config(run_cli: Any, tmp_path: Path) -> None:
    path = tmp_path / "ticketgw.toml"
    result = run_cli("init", str(path))
    assert result.exit_code == 0 and path.exists()
    assert result.stdout.strip() == (   # both steps before the first start
        f"wrote {path}; edit it, then: ticketgw --config {path} check-config; "
        f"ticketgw --config {path} db upgrade")
    assert run_cli("init", str(path)).exit_code != 0               # never overwrites silently
    checked = run_cli("--config", str(path), "check-config")
    assert checked.exit_code == 0 and checked.stdout.startswith(f"ok: {path}")


def test_check_config_lists_every_problem_and_exits_2(run_cli: Any, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[web]\nlisten = "nowhere"\nsecret_key_env = "GW_SECRET"\n'
                    '[tickets]\nsystem_id = "1"\n[outbound]\ntransport = "pigeon"\n')
    result = run_cli("--config", str(path), "check-config")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"config error: {path}: tickets.system_id: '1' must be exactly two digits, e.g. \"10\"",
        f"config error: {path}: outbound.transport: 'pigeon' is not a transport: use "
        "\"maildir:PATH\" or \"smtp://host:port\"",
        f"config error: {path}: web.listen: 'nowhere' is not host:port (or \"\" to turn it off)",
    ]
    path.write_text('[web]\nsecret_key_env = "GW_SECRET"\n')
    monkeypatch.delenv("GW_SECRET", raising=False)
    missing = run_cli("--config", str(path), "check-config")
    assert missing.exit_code == 2
    assert "web.secret_key_env: environment variable GW_SECRET is not set" in missing.stderr
    # every command refuses an invalid config the same way
    path.write_text("[database\n")
    assert run_cli("--config", str(path), "ticket", "list").exit_code == 2
    assert run_cli("--config", str(tmp_path / "missing.toml"), "ticket", "list").exit_code == 2
