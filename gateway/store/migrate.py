"""Alembic, driven from code: `ticketgw db upgrade` needs no alembic.ini on the user's disk.

Guarantee: `upgrade` brings the database to the head revision in one call and is safe to
repeat (an up-to-date database is left alone).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        # ConfigParser interpolates '%': escape it so URL-encoded passwords survive
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def upgrade(url: str) -> None:
    """Create or migrate the database at `url` to the head revision."""
    command.upgrade(alembic_config(url), "head")
