"""What `--demo` sets up holds for every command run against that data directory: with no
config file, `ticketgw demo` / `serve --demo` write one into the data directory and the
config lookup finds it (issue #17 item 1). Real processes in a fresh working directory, as
a user runs them in a second terminal."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.serve_helpers import TICKETGW, free_port, serving, start
from tests.serve_helpers import stop as stop_process

MAIL = (b"From: max.mustermann@acme.example\r\nTo: stoerung@support.example.com\r\n"
        b"Subject: Drucker defekt\r\n\r\nBetroffenes System: HP 2. OG\r\n"
        b"Auswirkung: Abteilung\r\n")
DEMO_TEMPLATES = {"incident", "sap-incident", "change", "order"}


def environment(database_url: str, **overrides: str) -> dict[str, str]:
    """The process environment without the caller's TICKETGW_* variables: the test's
    database (it is the embedded default's SQLite file on the SQLite half) and `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETGW_")}
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).parents[2]), env.get("PYTHONPATH", "")) if p)
    if database_url.startswith("postgresql"):
        env["TICKETGW_DATABASE_URL"] = database_url
    env.update(overrides)
    return env


def ticketgw(cwd: Path, env: dict[str, str], *args: str,
             stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """`ticketgw ARGS` without --config, in `cwd`; must succeed."""
    result = subprocess.run([*TICKETGW, *args], cwd=cwd, env=env, capture_output=True,
                            input=stdin.decode() if stdin is not None else None, text=True)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def assert_demo_holds(cwd: Path, env: dict[str, str]) -> None:
    """Every command sees the demo: routing, explain, templates, status mail sender."""
    (cwd / "mail.eml").write_bytes(MAIL)
    explained = json.loads(ticketgw(cwd, env, "explain", "mail.eml", "--json").stdout)
    assert explained["outcome"].startswith("created"), explained
    listed = json.loads(ticketgw(cwd, env, "template", "list", "--json").stdout)
    assert {t["id"] for t in listed} == DEMO_TEMPLATES
    ticketgw(cwd, env, "ingest", "-f", "max.mustermann@acme.example",
             "-r", "stoerung@support.example.com", "mail.eml")
    tickets = json.loads(ticketgw(cwd, env, "ticket", "list", "--json").stdout)
    ticket = next(t for t in tickets if t["title"] == "Drucker defekt")
    assert ticket["template"] == "incident" and ticket["queue"] == "servicedesk"
    ticketgw(cwd, env, "ticket", "set", ticket["number"], "--state", "closed")
    queued = json.loads(ticketgw(cwd, env, "outbox", "list", "--json").stdout)
    status = [m for m in queued if m["ticket"] == ticket["number"]
              and m["recipients"] == ["max.mustermann@acme.example"]]
    assert status, queued
    raw = ticketgw(cwd, env, "outbox", "show", str(status[0]["id"]), "--raw").stdout
    assert "From: Service Desk <support@support.example.com>" in raw, raw


def test_demo_command_writes_a_config_every_command_finds(database_url: str,
                                                         tmp_path: Path) -> None:
    env = environment(database_url)
    result = ticketgw(tmp_path, env, "demo")
    written = tmp_path / "var" / "ticketgw.toml"
    assert f"wrote the demo config {written}" in result.stderr
    assert written.read_text().startswith("# Written by `ticketgw serve --demo`")
    checked = ticketgw(tmp_path, env, "check-config")
    assert f"ok: {written} (2 queues, 4 templates" in checked.stdout
    assert "config file found in the data directory" in checked.stdout
    assert_demo_holds(tmp_path, env)
    # a second run changes nothing and finds the file
    again = ticketgw(tmp_path, env, "demo")
    assert "wrote" not in again.stderr and "note:" not in again.stderr


@pytest.mark.slow
@pytest.mark.backends("sqlite")   # the demo's own database; the config lookup runs on both
def test_serve_demo_then_other_commands_and_a_failing_serve(database_url: str,
                                                            tmp_path: Path) -> None:
    port = free_port()
    env = environment(database_url, TICKETGW_WEB_LISTEN=f"127.0.0.1:{port}",
                      TICKETGW_INBOUND_SMTP="")
    with serving(["serve", "--demo"], tmp_path, f"http://127.0.0.1:{port}/healthz", env=env):
        # a second `serve` (no --demo) on the same port fails, and must not deactivate the
        # demo's queues and templates while the first one runs
        second = start(["serve"], tmp_path, env=env)
        _, stderr = second.communicate(timeout=60)
        assert second.returncode == 1, stderr
        listed = json.loads(ticketgw(tmp_path, env, "queue", "list", "--json").stdout)
        assert {q["id"]: q["active"] for q in listed} == {"servicedesk": True,
                                                          "changes": True}
    assert_demo_holds(tmp_path, env)


@pytest.mark.slow
@pytest.mark.backends("sqlite")   # the demo's own database; the config lookup runs on both
def test_serve_demo_on_a_busy_port_leaves_the_demo_usable(database_url: str,
                                                           tmp_path: Path) -> None:
    ticketgw(tmp_path, environment(database_url), "demo")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = environment(database_url, TICKETGW_WEB_LISTEN=f"127.0.0.1:{port}",
                          TICKETGW_INBOUND_SMTP="")
        process = start(["serve", "--demo"], tmp_path, env=env)
        try:
            _, stderr = process.communicate(timeout=60)
        finally:
            stop_process(process)
        assert process.returncode == 1, stderr
        assert f"error: web server could not listen on 127.0.0.1:{port}" in stderr
    assert_demo_holds(tmp_path, env)


@pytest.mark.backends("sqlite")
def test_demo_with_a_config_file_says_how_to_keep_it(run_cli: Any, tmp_path: Path,
                                                     database_url: str) -> None:
    from tests.conftest import write_config

    config = write_config(tmp_path / "mine.toml", database_url)
    result = run_cli("--config", str(config), "demo")
    assert result.exit_code == 0, result.output
    assert "for this command only" in result.stderr and "demo.toml" in result.stderr
    assert not (tmp_path / "var" / "ticketgw.toml").exists()


def test_a_serve_that_cannot_listen_leaves_the_running_ones_config_alone(
        database_url: str, tmp_path: Path) -> None:
    """With --config too: the second `serve` (without --demo) stops before it syncs its
    config, so the first one's demo queues stay active."""
    from tests.serve_helpers import serve_config

    port = free_port()
    config = serve_config(tmp_path / "mine.toml", database_url, web_port=port)
    env = environment(database_url)
    with serving(["--config", str(config), "serve", "--demo"], tmp_path,
                 f"http://127.0.0.1:{port}/healthz", env=env):
        second = start(["--config", str(config), "serve"], tmp_path, env=env)
        _, stderr = second.communicate(timeout=60)
        assert second.returncode == 1, stderr
        assert f"error: web server could not listen on 127.0.0.1:{port}" in stderr
        listed = json.loads(ticketgw(tmp_path, env, "--config", str(config), "queue", "list",
                                     "--json").stdout)
        assert {q["id"]: q["active"] for q in listed} == {"servicedesk": True,
                                                          "changes": True}


def test_the_help_names_the_config_lookup(run_cli: Any) -> None:
    result = run_cli("--help")
    assert "var/ticketgw.toml" in " ".join(result.output.split())
