"""One config file for several instances: `ticketgw check-config` and a real `serve` read
`TICKETGW_<SECTION>_<KEY>` overrides from their environment (docs/admin.md 1.2)."""

from __future__ import annotations

import socket
from pathlib import Path

import httpx
import pytest

from tests.conftest import write_config
from tests.serve_helpers import free_port, serve_config, serving, start


def check_config(config: Path, env: dict[str, str]) -> tuple[int, str, str]:
    process = start(["--config", str(config), "check-config"], config.parent, env=env)
    stdout, stderr = process.communicate(timeout=60)
    return process.returncode, stdout, stderr


@pytest.mark.slow
def test_check_config_shows_the_keys_from_the_environment(tmp_path: Path) -> None:
    config = write_config(tmp_path / "ticketgw.toml", f"sqlite:///{tmp_path}/gw.db")
    code, stdout, stderr = check_config(config, {"TICKETGW_WEB_LISTEN": "127.0.0.1:9",
                                                 "TICKETGW_INBOUND_MAX_RECIPIENTS": "7"})
    assert code == 0, stderr
    assert stdout.splitlines()[1:] == [
        "from the environment: inbound.max_recipients (TICKETGW_INBOUND_MAX_RECIPIENTS)",
        "from the environment: web.listen (TICKETGW_WEB_LISTEN)"]


@pytest.mark.slow
def test_check_config_refuses_a_misspelt_variable(tmp_path: Path) -> None:
    config = write_config(tmp_path / "ticketgw.toml", f"sqlite:///{tmp_path}/gw.db")
    code, _, stderr = check_config(config, {"TICKETGW_INBOUND_SMPT": "127.0.0.1:2526",
                                            "TICKETGW_WEB_PAGE_SIZE": "ten"})
    assert code == 2
    assert "config error: TICKETGW_INBOUND_SMPT: environment variable names no key of " \
           "[inbound]" in stderr
    assert "config error: TICKETGW_WEB_PAGE_SIZE: web.page_size: 'ten' is not a whole " \
           "number" in stderr


@pytest.mark.slow
@pytest.mark.backends("sqlite")
def test_serve_listens_where_the_environment_says(database_url: str, tmp_path: Path) -> None:
    file_port, web_port, smtp_port = free_port(), free_port(), free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, web_port=file_port)
    env = {"TICKETGW_WEB_LISTEN": f"127.0.0.1:{web_port}",
           "TICKETGW_INBOUND_SMTP": f"127.0.0.1:{smtp_port}"}
    with serving(["--config", str(config), "serve", "--demo"], tmp_path,
                 f"http://127.0.0.1:{web_port}/healthz", env=env):
        assert httpx.get(f"http://127.0.0.1:{web_port}/healthz").status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{file_port}/healthz")
        with socket.create_connection(("127.0.0.1", smtp_port), timeout=10) as smtp:
            assert smtp.recv(512).startswith(b"220 ")
