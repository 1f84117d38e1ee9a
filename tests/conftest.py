"""Shared fixtures: real databases (SQLite and PostgreSQL), settings, an App, the CLI.

Every test that asks for `backend` (directly or through `database_url`, `settings`, `app`)
runs once per database named in TGW_TEST_DATABASES (default: "sqlite,postgresql").
PostgreSQL must answer at TGW_TEST_POSTGRES (default postgresql+psycopg://postgres@127.0.0.1:5432);
when it does not, those tests fail with a message saying so; they never skip.

Isolation: one fresh PostgreSQL database per test session (created, migrated, dropped at the
end), emptied before each test; one fresh SQLite file per test, copied from a migrated one.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from gateway.app import App, build_app, prepare_database
from gateway.cli import cli
from gateway.config.loading import settings_from_mapping
from gateway.config.settings import Settings
from gateway.store.migrate import upgrade
from tests.s3 import ENVIRONMENT as S3_ENVIRONMENT
from tests.s3 import REGION as S3_REGION
from tests.s3 import SeaweedS3

POSTGRES_SERVER = os.environ.get("TGW_TEST_POSTGRES",
                                 "postgresql+psycopg://postgres@127.0.0.1:5432")
SELECTED = [b.strip() for b in os.environ.get("TGW_TEST_DATABASES", "sqlite,postgresql")
            .split(",") if b.strip()]
REPO = Path(__file__).resolve().parent.parent
# The real mails the corpus tests read (provenance and licences: tests/corpus/SOURCES.md).
CORPUS = Path(__file__).resolve().parent / "corpus"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        wanted = SELECTED
        marker = metafunc.definition.get_closest_marker("backends")
        if marker:
            wanted = [b for b in SELECTED if b in marker.args]
        metafunc.parametrize("backend", wanted, scope="function")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "backends(*names): run only on these databases")


# -- databases ---------------------------------------------------------------------------------

def _admin_engine() -> Any:
    return create_engine(f"{POSTGRES_SERVER}/postgres", isolation_level="AUTOCOMMIT")


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL database for this test session, dropped afterwards."""
    name = f"tgw_test_{secrets.token_hex(4)}"
    admin = _admin_engine()
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:   # any driver error becomes one clear failure
        pytest.fail(f"PostgreSQL is not reachable at {POSTGRES_SERVER} ({exc.__class__.__name__}"
                    f": {str(exc).splitlines()[0]}); start it, or set "
                    "TGW_TEST_DATABASES=sqlite to run the SQLite half only", pytrace=False)
    url = f"{POSTGRES_SERVER}/{name}"
    upgrade(url)
    yield url
    with admin.connect() as connection:
        connection.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = :n"),
            {"n": name})
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    admin.dispose()


def drop_connections(url: str) -> None:
    """What a PostgreSQL restart does to the gateway: every connection to the database of
    `url` but this one is terminated."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    admin.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file that each test copies (migrating once is the slow part)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


def empty_postgres(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        tables = connection.execute(text(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'alembic_version'")).scalars().all()
        connection.execute(text(
            "TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of the parametrized backend."""
    if backend == "sqlite":
        template = request.getfixturevalue("sqlite_template")
        target = tmp_path / "gateway.db"
        shutil.copy(template, target)
        return f"sqlite:///{target}"
    url: str = request.getfixturevalue("postgres_url")
    empty_postgres(url)
    return url


# -- settings and app --------------------------------------------------------------------------

BASE_CONFIG: dict[str, Any] = {
    "inbound": {"smtp": "", "domains": ["support.example.com"]},
    "web": {"listen": ""},
    "queue": [
        {"id": "servicedesk", "from": "Service Desk <support@support.example.com>",
         "staff": ["anna.agent@example.com"]},
        {"id": "changes", "from": "Changes <changes@support.example.com>"},
    ],
    "staff": [{"email": "anna.agent@example.com", "name": "Anna Agent"}],
    "template": [
        {"id": "incident", "group": "incident", "queue": "servicedesk", "priority": 3,
         "name": {"de": "Allgemeine Störungsmeldung", "en": "General incident report"},
         "addresses": ["incident@support.example.com"],
         "guide": [{"key": "system", "label": {"de": "Betroffenes System",
                                               "en": "Affected system"}, "required": True}]},
        {"id": "change", "group": "change", "queue": "changes",
         "name": {"de": "Änderungsanforderung", "en": "Change request"},
         "addresses": ["change@support.example.com"]},
    ],
}


def make_settings(database_url: str, data_dir: Path, **sections: Any) -> Settings:
    data = {**BASE_CONFIG, "database": {"url": database_url},
            "storage": {"data_dir": str(data_dir)}, **sections}
    return settings_from_mapping(data, "test-config", data_dir)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, tmp_path / "data")


@pytest.fixture
def app(settings: Settings) -> Iterator[App]:
    built = build_app(settings)
    prepare_database(built, migrate=False)
    yield built
    built.close()


# -- object storage (SeaweedFS's S3 gateway) ------------------------------------------------

@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """One SeaweedFS for the session (a few seconds to start); fails saying what to install
    when `weed` is missing."""
    server = SeaweedS3().start()
    yield server
    server.cleanup()


@pytest.fixture(scope="session")
def s3_bucket(s3_server: SeaweedS3) -> str:
    """The session's bucket. One only: SeaweedFS gives every bucket volumes of its own, and
    a bucket per test ran out of them (InternalError) after a few dozen tests."""
    return s3_server.create_bucket(f"tgw-{secrets.token_hex(6)}")


@pytest.fixture
def s3_storage(s3_bucket: str, s3_server: SeaweedS3,
               monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The `[storage]` keys of a fresh key prefix in the session's bucket (as empty as a new
    bucket to the gateway); its credentials are in the environment, where boto3 finds them."""
    for name, value in S3_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    return {"blobs": f"s3://{s3_bucket}/t-{secrets.token_hex(6)}/blobs",
            "s3_endpoint": s3_server.endpoint, "s3_region": S3_REGION}


@pytest.fixture
def s3_app(database_url: str, tmp_path: Path, s3_storage: dict[str, str]) -> Iterator[App]:
    """Like `app`, with its blobs in S3 (`s3_storage`)."""
    built = build_app(make_settings(database_url, tmp_path / "data", storage={
        "data_dir": str(tmp_path / "data"), **s3_storage}))
    prepare_database(built, migrate=False)
    yield built
    built.close()


def write_config(path: Path, database_url: str, extra: str = "") -> Path:
    """A config file for CLI tests (TOML, as a user would write it)."""
    path.write_text(f'[database]\nurl = "{database_url}"\n\n[storage]\ndata_dir = "data"\n'
                    f'\n[inbound]\nsmtp = ""\n\n[web]\nlisten = ""\n{extra}', encoding="utf-8")
    return path


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Run `ticketgw ARGS` in-process; returns click's Result (exit_code, stdout, stderr)."""
    for name in [n for n in os.environ if n.startswith("TICKETGW_")]:
        monkeypatch.delenv(name)   # TICKETGW_CONFIG, TICKETGW_DATABASE_URL, the overrides

    def run(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)

    return run


def sqlite_path(url: str) -> Path:
    return Path(make_url(url).database or "")
