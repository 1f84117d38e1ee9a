"""Running `ticketgw serve` (or another command) as a real process in a test: free ports, a
config with the listeners on them, start, wait until /healthz answers, and stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx

from tests.conftest import REPO, write_config

TICKETGW = [sys.executable, "-m", "gateway"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(args: list[str], cwd: Path, *, env: Mapping[str, str] | None = None
          ) -> subprocess.Popen[str]:
    """`ticketgw ARGS` without the caller's TICKETGW_* variables (plus `env`), in a process
    group of its own: `stop` can then take its worker process down with it."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("TICKETGW_")}
    # the gateway of this checkout, not the one the virtualenv was installed from (a git
    # worktree shares the virtualenv of the main checkout)
    environment["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), environment.get("PYTHONPATH", "")) if p)
    environment.update(env or {})
    return subprocess.Popen([*TICKETGW, *args], cwd=cwd, env=environment, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)


def wait_healthy(process: subprocess.Popen[str], url: str, timeout: float = 30) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited {process.returncode}: {process.communicate()}")
        try:
            return httpx.get(url, timeout=2)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("serve did not answer in time")


def stop(process: subprocess.Popen[str], timeout: float = 30) -> None:
    """SIGTERM, then after `timeout` SIGKILL to its whole process group."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()


def stop_cleanly(process: subprocess.Popen[str], stop_signal: int = signal.SIGTERM,
                 timeout: float = 40) -> str:
    """Stop it as an init system would and insist on exit code 0; its stderr."""
    process.send_signal(stop_signal)
    _, stderr = process.communicate(timeout=timeout)
    assert process.returncode == 0, stderr
    return stderr


@contextmanager
def serving(args: list[str], cwd: Path, health_url: str, *,
            env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """The command running and healthy; stopped at the end if the test did not stop it."""
    process = start(args, cwd, env=env)
    try:
        wait_healthy(process, health_url)
        yield process
    finally:
        stop(process)


def serve_config(path: Path, database_url: str, *, web_port: int, smtp_port: int | None = None,
                 extra: str = "") -> Path:
    """A config with the web view (and, given a port, the SMTP listener) on these ports;
    `extra` is appended (more sections)."""
    config = write_config(path, database_url)
    text = config.read_text()
    if smtp_port is not None:
        text = text.replace(
            '[inbound]\nsmtp = ""',
            f'[inbound]\nsmtp = "127.0.0.1:{smtp_port}"\ndomains = ["support.example.com"]')
    text = text.replace('listen = ""', f'listen = "127.0.0.1:{web_port}"')
    config.write_text(text + extra)
    return config


def tickets_titled(config: Path, title: str, timeout: float = 30) -> list[dict[str, object]]:
    """Poll `ticketgw ticket list --json` until a ticket with this title exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listed = subprocess.run([*TICKETGW, "--config", str(config), "ticket", "list",
                                 "--json"], capture_output=True, text=True, check=True)
        found = [t for t in json.loads(listed.stdout) if t["title"] == title]
        if found:
            return found
        time.sleep(0.2)
    return []


def child_pids(pid: int) -> list[int]:
    """The process's children (of all its threads), from /proc. A thread that ends while
    they are read (its `children` file is gone) had none to add."""
    children: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with suppress(FileNotFoundError, ProcessLookupError):
            children += [int(child) for child in (task / "children").read_text().split()]
    return children


def child_pids_named(serve_pid: int, name: str) -> list[int]:
    """`serve`'s child processes called `name` (`/proc/PID/comm`: `ticketgw-worker`,
    `ticketgw-outbox`; a child names itself once it runs, a moment after it was spawned)."""
    found = []
    for pid in child_pids(serve_pid):
        with suppress(OSError):
            if Path(f"/proc/{pid}/comm").read_text().strip() == name:
                found.append(pid)
    return found


def worker_pids(serve_pid: int) -> list[int]:
    """The inbound worker processes among `serve`'s children."""
    return child_pids_named(serve_pid, "ticketgw-worker")


def only_child(serve_pid: int, name: str, timeout: float = 30.0) -> int:
    """`serve`'s one child process called `name` (waiting for it to have named itself)."""
    deadline = time.monotonic() + timeout
    while len(found := child_pids_named(serve_pid, name)) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(found) == 1, (name, found)
    return found[0]


def only_worker(serve_pid: int, timeout: float = 30.0) -> int:
    """`serve`'s one worker process."""
    return only_child(serve_pid, "ticketgw-worker", timeout)
