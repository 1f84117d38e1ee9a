"""The composition root: settings in, every long-lived object out, built once.

Nothing else in the code base creates engines, stores or transports; tests build their own
`App` from their own settings (see tests/conftest.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.addressbook import AddressBook
from gateway.config_sync import sync_configuration
from gateway.settings import Settings
from gateway.store.blobs import BlobStore
from gateway.store.db import Database, display_url
from gateway.store.numbers import Numbering

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    db: Database
    blobs: BlobStore
    numbering: Numbering
    addressbook: AddressBook

    def close(self) -> None:
        self.db.dispose()


def build_app(settings: Settings) -> App:
    """Wire the parts together. Opens no connection yet (the engine connects lazily)."""
    return App(
        settings=settings,
        db=Database(settings.database_url()),
        blobs=BlobStore(settings.attachments_dir),
        numbering=Numbering(settings.tickets.system_id, settings.tickets.timezone),
        addressbook=AddressBook(settings),
    )


def prepare_database(app: App, *, migrate: bool) -> None:
    """Migrate (or insist on a migrated database) and mirror the config's queues, staff and
    templates into it. `DatabaseNotReady` says what to run when the schema is old."""
    if migrate:
        from gateway.store.migrate import upgrade

        app.db.ping()
        upgrade(app.db.url)
    app.db.require_current_schema()
    with app.db.write() as session:
        sync_configuration(session, app.settings)
    log.info("database ready: %s", display_url(app.db.url))
