"""Mailbox commands: the configured IMAP mailboxes (`[[mailbox]]`), how their import is
doing, and a connection test. The import itself runs in `ticketgw serve`.

- `mailbox list [--json]`: the configuration (no database, no network): `name, url, user,
  folder, after, poll_interval, auth` per mailbox.
- `mailbox status [NAME] [--json]`: what the pollers recorded: `name, state (ok | failing |
  auth-failed | never-checked), folder, last_check, last_attempt, last_error, error_kind,
  error_since, failures, backlog, messages, imported, uidvalidity, last_uid, owner`.
- `mailbox test NAME [--json]`: connect and log in exactly as `serve` does, open the folder
  read-only (EXAMINE) and count its messages. Imports nothing, changes nothing.

Exit codes: 1 no such mailbox; 2 its configuration does not work (URL, credentials, TLS,
folder); 75 the server or the database cannot be reached now.
"""

from __future__ import annotations

import ssl
import sys
from typing import Any, NoReturn

import click
from imapclient.exceptions import IMAPClientAbortError, IMAPClientError

from gateway.cli.context import CliContext, pass_context
from gateway.cli.output import echo_json, echo_table, json_object_option, json_option
from gateway.config.settings import MailboxSettings
from gateway.errors import ConfigError, NotFound, TemporaryFailure

EXIT_CONFIG = 2


def register(cli: click.Group) -> None:
    cli.add_command(mailbox)


def _find(context: CliContext, name: str) -> MailboxSettings:
    for entry in context.settings.mailbox:
        if entry.name == name:
            return entry
    known = ", ".join(m.name for m in context.settings.mailbox) or "none configured"
    raise NotFound(f"no mailbox named {name!r} (known: {known})")


@click.group()
def mailbox() -> None:
    """IMAP mailboxes the gateway imports mail from ([[mailbox]] in the config)."""


@mailbox.command("list")
@json_option
@pass_context
def mailbox_list(context: CliContext, as_json: bool) -> None:
    """The configured mailboxes."""
    rows = [{"name": m.name, "url": m.url, "user": m.user, "folder": m.folder,
             "after": m.after, "poll_interval": m.poll_interval,
             "auth": "oauth2" if m.oauth2_token_command else "password"}
            for m in context.settings.mailbox]
    if as_json:
        echo_json(rows)
        return
    echo_table(rows, ["name", "user", "after", "poll_interval", "auth", "url"],
               empty="(no mailboxes configured)")


@mailbox.command("status")
@click.argument("name", required=False)
@json_option
@pass_context
def mailbox_status(context: CliContext, name: str | None, as_json: bool) -> None:
    """How the import from each mailbox (or NAME) is doing, as the pollers recorded it."""
    from gateway.inbound.imap.report import mailbox_statuses

    names = [_find(context, name).name] if name else [m.name for m in context.settings.mailbox]
    with context.app().db.read() as session:
        rows = [s.as_dict() for s in mailbox_statuses(session, names)]
    if as_json:
        echo_json(rows)
        return
    if name:
        for key, value in rows[0].items():
            click.echo(f"{key + ':':14}{'-' if value in (None, '') else value}")
        return
    echo_table([{**r, "last_check": (r["last_check"] or "")[:19].replace("T", " ") or None,
                 "last_error": (r["last_error"] or "")[:100] or None} for r in rows],
               ["name", "state", "last_check", "backlog", "imported", "last_error"],
               empty="(no mailboxes configured)")


@mailbox.command("test")
@click.argument("name")
@json_object_option
@pass_context
def mailbox_test(context: CliContext, name: str, as_json: bool) -> None:
    """Connect to mailbox NAME, log in and count its messages, without importing."""
    from gateway.inbound.imap.connect import ImapFailure, close_quietly, open_session, target_of

    entry = _find(context, name)
    try:
        target = target_of(entry)
        client = open_session(entry, target, base_dir=context.settings.base_dir)
    except ConfigError:
        raise   # "config error: mailbox NAME: url: …", exit 2
    except ImapFailure as exc:
        if exc.kind == "auth":
            _refuse(name, str(exc))
        raise TemporaryFailure(f"mailbox {name}: {exc}") from None
    secured = isinstance(client.socket(), ssl.SSLSocket)
    try:
        report = _examine(client, entry, target.folder)
    except IMAPClientAbortError as exc:
        raise TemporaryFailure(f"mailbox {name}: connection lost: {exc}") from None
    except IMAPClientError as exc:
        _refuse(name, f"folder {target.folder!r}: {exc}")
    except OSError as exc:
        raise TemporaryFailure(f"mailbox {name}: connection lost: {exc}") from None
    finally:
        close_quietly(client, logout=True)
    data = {"name": name, "server": target.describe(), "user": entry.user,
            "tls": ("tls" if target.security == "tls" else
                    "starttls" if secured else "none (loopback)"),
            **report}
    if as_json:
        echo_json(data)
        return
    for key, value in data.items():
        shown = ", ".join(value) if isinstance(value, list) else value
        click.echo(f"{key + ':':14}{'-' if shown in (None, '') else shown}")


def _examine(client: Any, entry: MailboxSettings, folder: str) -> dict[str, Any]:
    selected = client.select_folder(folder, readonly=True)
    unseen = len(client.search(["UNSEEN"])) if selected[b"EXISTS"] else 0
    capabilities = {c.decode() for c in client.capabilities()}
    after, _, move_to = entry.after.partition(":")
    notes = []
    if "IDLE" not in capabilities:
        notes.append(f"no IDLE: checked every {entry.poll_interval} s")
    if after in ("delete", "move") and "UIDPLUS" not in capabilities:
        notes.append("no UIDPLUS: imported mail is flagged \\Deleted, not expunged")
    if after == "move" and not client.folder_exists(move_to):
        notes.append(f"folder {move_to!r} does not exist yet: it is created on first use")
    return {"folder": folder, "messages": int(selected[b"EXISTS"]), "unseen": unseen,
            "uidvalidity": int(selected[b"UIDVALIDITY"]), "after": entry.after,
            "extensions": sorted(capabilities & {"IDLE", "MOVE", "UIDPLUS", "CONDSTORE"}),
            "notes": notes}


def _refuse(name: str, problem: str) -> NoReturn:
    click.echo(f"error: mailbox {name}: {problem}", err=True)
    sys.exit(EXIT_CONFIG)
