"""Whose `Authentication-Results` count (issue #14, item 6): a staff mail with a forged
`Authentication-Results: <our authserv-id>; dmarc=pass` sent straight to the gateway's SMTP
port by a client that is no trusted relay runs no `#command`; the same header from the
trusted relay (the border MTA) or through `ticketgw ingest` (the local MTA's pipe) counts.

Two clients on one machine: the listener is reached from 127.0.0.1 (configured as the
trusted relay) and from 127.0.0.2 (a stranger; Linux answers on all of 127.0.0.0/8)."""

from __future__ import annotations

import json
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from tests.conftest import write_config
from tests.integration.smtp_helpers import DESK_WITH_STAFF, STAFF_ADDRESS, customer_mail
from tests.serve_helpers import free_port, serve_config, serving, stop_cleanly, tickets_titled

AUTHSERV = "mx.support.example.com"
STAFF = STAFF_ADDRESS
STRANGER = "127.0.0.2"
INBOUND = f'authserv_id = "{AUTHSERV}"\ntrusted_relays = ["127.0.0.1/32"]\n'


def with_inbound(config: Path, lines: str) -> Path:
    """Add keys to the config's [inbound] section."""
    config.write_text(config.read_text().replace("[inbound]\n", f"[inbound]\n{lines}", 1))
    return config


def staff_mail(number: str, message_id: str, to: str) -> EmailMessage:
    """Anna closes the ticket by answering to its staff reply address `to`; the header
    claims our border MTA checked her domain."""
    return customer_mail(f"Re: [Ticket#{number}] Drucker defekt", sender=STAFF, to=to,
                         message_id=message_id, body="#state closed\nErledigt.\n",
                         Authentication_Results=f"{AUTHSERV}; dmarc=pass (p=reject) "
                                                "header.from=example.com")


def staff_address(run_cli: Any, config: Path) -> str:
    """The staff reply address: the Reply-To of Anna's notice of the (only) ticket."""
    import email
    import email.policy

    listed = json.loads(run_cli("--config", str(config), "outbox", "list", "--json").stdout)
    [notice] = [m for m in listed if m["event"] == "staff-notify"]
    raw = run_cli("--config", str(config), "outbox", "show", str(notice["id"]), "--raw")
    parsed = email.message_from_bytes(raw.stdout_bytes, policy=email.policy.default)
    return str(parsed["Reply-To"].addresses[0].addr_spec)


def processed(run_cli: Any, config: Path, message_id: str,
              timeout: float = 30) -> dict[str, Any]:
    """The processing-log entry of this mail, once the worker has processed it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = run_cli("--config", str(config), "inbound", "list", "--json")
        found = [e for e in json.loads(result.stdout) if e["message_id"] == message_id]
        if found:
            return dict(found[0])
        time.sleep(0.2)
    raise AssertionError(f"{message_id} was not processed within {timeout} s")


def state_of(run_cli: Any, config: Path, number: str) -> str:
    shown = run_cli("--config", str(config), "ticket", "show", number, "--json")
    return str(json.loads(shown.stdout)["state"])


def test_authentication_results_count_only_from_a_trusted_relay(
        database_url: str, tmp_path: Path, run_cli: Any) -> None:
    smtp_port, web_port = free_port(), free_port()
    config = with_inbound(serve_config(tmp_path / "ticketgw.toml", database_url,
                                       smtp_port=smtp_port, web_port=web_port,
                                       extra=DESK_WITH_STAFF), INBOUND)
    with serving(["--config", str(config), "serve"], tmp_path,
                 f"http://127.0.0.1:{web_port}/healthz") as process:
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.send_message(customer_mail(message_id="<hop-1@acme>",
                                              body="Betroffenes System: HP\n"))
        [ticket] = tickets_titled(config, "Drucker defekt")
        number = str(ticket["number"])
        to = staff_address(run_cli, config)

        # a stranger talks to our port directly and writes our authserv-id itself
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10,
                          source_address=(STRANGER, 0)) as client:
            client.send_message(staff_mail(number, "<forged@example.com>", to), from_addr=STAFF)
        forged = processed(run_cli, config, "<forged@example.com>")
        assert state_of(run_cli, config, number) == "new"
        assert forged["outcome"] == "appended"
        assert "Authentication-Results are ignored" in forged["reason"]
        assert "no commands run, nothing sent" in forged["reason"]
        shown = json.loads(run_cli("--config", str(config), "inbound", "show",
                                   str(forged["id"]), "--json").stdout)
        assert shown["client"] == STRANGER
        assert shown["hop"].startswith(f"not trusted ({STRANGER} is not in [inbound] "
                                       "trusted_relays")

        # the border MTA (the trusted relay) hands on the same header: it counts
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.send_message(staff_mail(number, "<relayed@example.com>", to),
                                from_addr=STAFF)
        relayed = processed(run_cli, config, "<relayed@example.com>")
        assert state_of(run_cli, config, number) == "closed", relayed["reason"]
        shown = json.loads(run_cli("--config", str(config), "inbound", "show",
                                   str(relayed["id"]), "--json").stdout)
        assert (shown["client"], shown["hop"]) == (
            "127.0.0.1", "trusted (127.0.0.1 is in [inbound] trusted_relays)")
        assert "Traceback" not in stop_cleanly(process)


def test_mail_through_ingest_is_a_trusted_hop(database_url: str, tmp_path: Path,
                                              run_cli: Any) -> None:
    """`ingest` is run by the local MTA's pipe transport, after the border MTA that
    removes forged headers with its authserv-id: its header counts."""
    config = with_inbound(write_config(tmp_path / "ticketgw.toml", database_url,
                                       extra=DESK_WITH_STAFF), INBOUND)
    assert run_cli("--config", str(config), "db", "upgrade").exit_code == 0  # syncs the queues
    first = run_cli("--config", str(config), "ingest", "-r", "incident@support.example.com",
                    "-f", "max@acme.example",
                    input=customer_mail(message_id="<in-1@acme>").as_string())
    assert first.exit_code == 0, first.output
    [ticket] = json.loads(run_cli("--config", str(config), "ticket", "list", "--json").stdout)
    number = str(ticket["number"])
    to = staff_address(run_cli, config)
    answer = run_cli("--config", str(config), "ingest", "-r", to, "-f", STAFF,
                     input=staff_mail(number, "<in-2@example.com>", to).as_string())
    assert answer.exit_code == 0, answer.output
    assert state_of(run_cli, config, number) == "closed"
    entry = processed(run_cli, config, "<in-2@example.com>")
    shown = json.loads(run_cli("--config", str(config), "inbound", "show", str(entry["id"]),
                               "--json").stdout)
    assert (shown["client"], shown["hop"]) == (None, "trusted (ingest: the local mail system)")
