"""The composition root: settings in, every long-lived object out, built once.

Nothing else in the code base creates engines, stores or transports; tests build their own
`App` from their own settings (see tests/conftest.py). Only the entry points (`cli/`, the web
app factory `web/app.py`, `service.py`) import this module; they hand each stage the parts it
uses (`App.stages` for the pipeline, `App.answering` for what sends answers, or a single part
such as `App.db`), never the `App` itself.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

from gateway.config.settings import Settings
from gateway.config.sync import ConfiguredIds, sync_configuration
from gateway.outbound.answers import Answering
from gateway.outbound.dkim import DkimKey, DkimSigner
from gateway.outbound.render import MailRenderer
from gateway.pipeline import Stages
from gateway.routing.addressbook import AddressBook
from gateway.store.blob_backends import build_blob_store
from gateway.store.blobs import BlobStore
from gateway.store.db import Database, display_url
from gateway.tickets.numbers import Numbering

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    db: Database
    blobs: BlobStore
    numbering: Numbering
    addressbook: AddressBook
    renderer: MailRenderer
    configured_ids: ConfiguredIds = field(default_factory=ConfiguredIds)

    @property
    def answering(self) -> Answering:
        """What composing answers uses (the current settings and the renderer)."""
        return Answering(self.settings, self.renderer)

    @property
    def stages(self) -> Stages:
        """What the stages of one mail use (`pipeline.Stages`)."""
        return Stages(settings=self.settings, addressbook=self.addressbook, blobs=self.blobs,
                      numbering=self.numbering, answering=self.answering,
                      configured_ids=self.configured_ids)

    def close(self) -> None:
        self.db.dispose()


def build_app(settings: Settings) -> App:
    """Wire the parts together. Opens no connection yet (the engine connects lazily)."""
    return App(
        settings=settings,
        db=Database(settings.database_url()),
        blobs=build_blob_store(settings.storage.blobs, attachments_dir=settings.attachments_dir,
                               endpoint=settings.storage.s3_endpoint,
                               region=settings.storage.s3_region),
        numbering=Numbering(settings.tickets.system_id, settings.tickets.timezone),
        addressbook=AddressBook(settings),
        renderer=build_renderer(settings),
    )


def build_renderer(settings: Settings) -> MailRenderer:
    """The mail renderer with the admin's template overrides and DKIM keys, if any."""
    outbound = settings.outbound
    signer = None
    if outbound.dkim:
        signer = DkimSigner(DkimKey.from_file(k.domain, k.selector, settings.path(k.key_path))
                            for k in outbound.dkim)
    return MailRenderer(
        base_url=settings.web.base_url,
        override_dir=settings.path(outbound.templates_dir) if outbound.templates_dir else None,
        dkim=signer, timezone=ZoneInfo(settings.tickets.timezone))


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
