"""Issue #14 item 12: X-Forwarded-For against a real `ticketgw serve` (uvicorn), sent from
127.0.0.1 as a local reverse proxy would.

Without `[web] trusted_proxies` the header is not believed, whoever sends it (uvicorn's own
default believed it from 127.0.0.1, and so does $FORWARDED_ALLOW_IPS): the per-address
limits of the login and of file links count the connecting address, so a new made-up
address per request gains nothing. With the proxy trusted, each client behind it is
counted on its own, by the address the proxy appended (the rightmost one it does not
trust), so a client that writes the header itself cannot pick its own key either.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, select

from gateway.store.models import WebAttempt, table_of
from tests.serve_helpers import free_port, serve_config, serving

LIMITS = ("rate_limit_per_address = 3\nrate_limit_per_user = 100\n"
          "\n[files]\nrate_limit_per_address = 3\n")


@contextmanager
def served(database_url: str, tmp_path: Path, web_extra: str = "",
           env: dict[str, str] | None = None) -> Iterator[httpx.Client]:
    port = free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, web_port=port,
                          extra=web_extra + LIMITS)
    base = f"http://127.0.0.1:{port}"
    with serving(["--config", str(config), "serve"], tmp_path, f"{base}/healthz", env=env), \
            httpx.Client(base_url=base, timeout=30) as client:
        yield client


def failed_login(client: httpx.Client, n: int, forwarded: str) -> int:
    """One wrong login (a new username each time: only the address limit can trip) with
    this X-Forwarded-For; the status."""
    page = client.get("/login", headers={"X-Forwarded-For": forwarded}).text
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert match, page
    response = client.post("/login", headers={"X-Forwarded-For": forwarded}, data={
        "username": f"guess{n}", "password": "wrong", "csrf": match.group(1)})
    return response.status_code


def wrong_link(client: httpx.Client, n: int, forwarded: str) -> int:
    return client.get(f"/files/{'x' * 42}{n}", headers={"X-Forwarded-For": forwarded}
                      ).status_code


def address_keys(database_url: str) -> set[tuple[str, str]]:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            attempt = table_of(WebAttempt)
            return {(r.kind, r.key) for r in connection.execute(
                select(attempt.c.kind, attempt.c.key).where(attempt.c.key.like("addr:%")))}
    finally:
        engine.dispose()


def test_without_trusted_proxies_a_forged_header_does_not_escape_the_limits(
        database_url: str, tmp_path: Path) -> None:
    # uvicorn would otherwise take its trusted list from this variable
    with served(database_url, tmp_path, env={"FORWARDED_ALLOW_IPS": "*"}) as client:
        logins = [failed_login(client, n, f"203.0.113.{n}") for n in range(1, 6)]
        links = [wrong_link(client, n, f"198.51.100.{n}") for n in range(1, 6)]
    assert logins == [401, 401, 401, 429, 429]
    assert links == [404, 404, 404, 429, 429]
    assert address_keys(database_url) == {("login", "addr:127.0.0.1"),
                                          ("file-token", "addr:127.0.0.1")}


def test_behind_a_trusted_proxy_each_client_is_counted_by_its_own_address(
        database_url: str, tmp_path: Path) -> None:
    with served(database_url, tmp_path, '\ntrusted_proxies = ["127.0.0.1", "::1"]\n') as client:
        first = [failed_login(client, n, "203.0.113.7") for n in range(1, 4)]
        # a client that writes its own header: the proxy appends the real address
        forged = failed_login(client, 4, "192.0.2.99, 203.0.113.7")
        other = failed_login(client, 5, "198.51.100.9")
        links = [wrong_link(client, n, "203.0.113.7") for n in range(1, 5)]
        other_link = wrong_link(client, 5, "198.51.100.9")
    assert (first, forged, other) == ([401, 401, 401], 429, 401)
    assert (links, other_link) == ([404, 404, 404, 429], 404)
    assert address_keys(database_url) == {
        ("login", "addr:203.0.113.7"), ("login", "addr:198.51.100.9"),
        ("file-token", "addr:203.0.113.7"), ("file-token", "addr:198.51.100.9")}


@pytest.mark.parametrize("value", ["nginx", "10.0.0.5/8", "*"])
def test_a_trusted_proxy_must_be_an_address_or_network(value: str, run_cli: Any,
                                                       tmp_path: Path) -> None:
    from tests.conftest import write_config
    config = write_config(tmp_path / "ticketgw.toml", f"sqlite:///{tmp_path}/gw.db",
                          extra=f'trusted_proxies = ["{value}"]\n')
    result = run_cli("--config", str(config), "check-config")
    assert result.exit_code != 0
    assert "web.trusted_proxies" in result.output and value in result.output
