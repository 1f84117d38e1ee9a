"""docker-compose.yml and the image, read as files (no Docker engine runs here).

Guarantees: every image is pinned to a version tag (no `latest`, no bare name); two gateway
instances run from the image built here, on one PostgreSQL database, with one fixed secret
key, beside an S3 server (SeaweedFS) and a mail catcher (Mailpit); the gateway's config
(deploy/docker/ticketgw.toml) with the compose file's environment is a valid config.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from gateway.config.environment import scalar_keys
from gateway.config.loading import load_settings

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "deploy" / "docker" / "ticketgw.toml"
# Keys of the S3 blob store, which arrive with that work; until then the compose file sets
# them ahead of the settings. Once the settings know them they are checked like the rest.
ARRIVING = {"TICKETGW_STORAGE_BLOBS", "TICKETGW_STORAGE_S3_ENDPOINT"}


def services() -> dict[str, dict[str, Any]]:
    with (ROOT / "docker-compose.yml").open(encoding="utf-8") as handle:
        compose = yaml.safe_load(handle)
    return dict(compose["services"])


def gateways() -> dict[str, dict[str, Any]]:
    return {name: s for name, s in services().items() if "build" in s}


def test_every_image_is_pinned() -> None:
    for name, service in services().items():
        image = str(service.get("image", ""))
        assert image, f"{name}: no image"
        if "build" in service:
            continue                                   # built here from the Dockerfile
        repository, _, tag = image.rpartition(":")
        assert repository and re.match(r"v?\d+(\.\d+)+", tag), f"{name}: {image} is not pinned"
        assert "latest" not in tag, name
    base = re.search(r"^FROM (\S+)", (ROOT / "Dockerfile").read_text(), re.M)
    assert base and re.search(r":\d+\.\d+\.\d+", base.group(1)), base


def test_two_gateways_share_one_database_one_key_and_the_bucket() -> None:
    everything = services()
    running = gateways()
    assert len(running) == 2, list(running)
    environments = [s["environment"] for s in running.values()]
    for environment in environments:
        assert environment["TICKETGW_CONFIG"] == "/etc/ticketgw/ticketgw.toml"
        assert environment["TICKETGW_SECRET_KEY"]
        assert environment["TICKETGW_STORAGE_BLOBS"].startswith("s3://")
        assert environment["TICKETGW_STORAGE_S3_ENDPOINT"] == "http://s3:8333"
    for key in ("TICKETGW_SECRET_KEY", "TICKETGW_DB_PASSWORD", "TICKETGW_STORAGE_BLOBS"):
        assert len({e[key] for e in environments}) == 1, f"{key} differs between instances"
    published = [p for s in running.values() for p in s["ports"]]
    assert len(published) == len(set(published))       # each instance on its own host ports
    assert all(p.startswith("127.0.0.1:") for p in published)
    for service in running.values():
        assert service["depends_on"]["db"]["condition"] == "service_healthy"
        assert {"s3-bucket", "mailpit"} <= set(service["depends_on"])
    assert everything["db"]["image"].startswith("postgres:")
    assert everything["s3"]["image"].startswith("chrislusf/seaweedfs:")
    assert "-s3" in everything["s3"]["command"]
    assert everything["mailpit"]["image"].startswith("axllent/mailpit:")
    settings = load_settings(CONFIG, environ={"TICKETGW_DB_PASSWORD": "x"})
    assert settings.database.url.endswith("@db/ticketgw")     # the compose service
    assert settings.outbound.transport == "smtp://mailpit:1025"
    assert settings.web.secret_key_env == "TICKETGW_SECRET_KEY"


def test_the_config_is_valid_with_each_gateways_environment() -> None:
    storage_keys = scalar_keys("storage")
    for name, service in gateways().items():
        environment = {k: str(v) for k, v in service["environment"].items()}
        for variable in ARRIVING:
            if variable.removeprefix("TICKETGW_STORAGE_").lower() not in storage_keys:
                del environment[variable]
        settings = load_settings(CONFIG, environ=environment)
        assert settings.web.base_url == environment["TICKETGW_WEB_BASE_URL"], name
        assert settings.web.listen.startswith("0.0.0.0:"), name    # reachable in a container
