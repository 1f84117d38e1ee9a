"""Mirror the configured queues, staff and templates (with guides) into the database.

The TOML file is the source of truth for them; the database holds a copy so tickets can
reference them and listings can show them. Rows are keyed by config id (staff by address),
updated in place, and never deleted: a queue or template removed from the config is marked
inactive and its tickets keep pointing at it.

Guarantees: runs in the caller's transaction; running it twice changes nothing the second
time; instances starting at the same moment on one PostgreSQL database take turns (a
transaction-scoped advisory lock), so they never race on the same rows. SQLite's write
transaction (BEGIN IMMEDIATE) already serialises them.
"""

from __future__ import annotations

from sqlalchemy import Table, delete, insert, select, text, update
from sqlmodel import Session

from gateway.config.settings import Settings
from gateway.mail.addresses import address_key
from gateway.store.models import GuideQuestion, Queue, QueueStaff, Staff, Template, table_of

_queue = table_of(Queue)
_staff = table_of(Staff)
_queue_staff = table_of(QueueStaff)
_template = table_of(Template)
_question = table_of(GuideQuestion)


SYNC_LOCK_ID = 0x7467_0001   # an arbitrary constant, unique among our advisory locks


def sync_configuration(session: Session, settings: Settings) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": SYNC_LOCK_ID})
    staff_ids = _sync_staff(session, settings)
    queue_ids = _sync_queues(session, settings, staff_ids)
    _sync_templates(session, settings, queue_ids)


def _upsert(session: Session, table: Table, key_column: str, key: str,
            values: dict[str, object]) -> int:
    column = table.c[key_column]
    existing = session.execute(select(table.c.id).where(column == key)).scalar_one_or_none()
    if existing is None:
        new_id: int = session.execute(
            insert(table).values({key_column: key, **values}).returning(table.c.id)
        ).scalar_one()
        return new_id
    session.execute(update(table).where(table.c.id == existing).values(**values))
    return int(existing)


def _deactivate_others(session: Session, table: Table, key_column: str, keep: set[str]) -> None:
    statement = update(table).values(active=False)
    if keep:
        statement = statement.where(table.c[key_column].not_in(sorted(keep)))
    session.execute(statement)


def _sync_staff(session: Session, settings: Settings) -> dict[str, int]:
    declared = {s.email: s for s in settings.staff}
    wanted = dict.fromkeys([*declared, *(a for q in settings.queue for a in q.staff)])
    ids = {}
    for email in wanted:
        person = declared.get(email)
        ids[email] = _upsert(session, _staff, "email", email, {
            "email_key": address_key(email), "name": person.name if person else "",
            "language": person.language if person else "de", "active": True})
    _deactivate_others(session, _staff, "email", set(wanted))
    return ids


def _sync_queues(session: Session, settings: Settings, staff_ids: dict[str, int]) -> dict[str, int]:
    ids = {}
    for queue in settings.queue:
        queue_id = _upsert(session, _queue, "key", queue.id, {
            "name": queue.name or queue.id, "from_address": queue.from_,
            "language": queue.language, "active": True})
        ids[queue.id] = queue_id
        session.execute(delete(_queue_staff).where(_queue_staff.c.queue_id == queue_id))
        members = list(dict.fromkeys(queue.staff))
        if members:
            session.execute(insert(_queue_staff), [
                {"queue_id": queue_id, "staff_id": staff_ids[m]} for m in members])
    _deactivate_others(session, _queue, "key", set(ids))
    return ids


def _sync_templates(session: Session, settings: Settings, queue_ids: dict[str, int]) -> None:
    kept = set()
    for template in settings.template:
        template_id = _upsert(session, _template, "key", template.id, {
            "group": template.group, "names": dict(template.name),
            "addresses": list(template.addresses), "queue_id": queue_ids[template.queue],
            "default_priority": template.priority,
            "organisations": list(template.organisations), "active": True})
        kept.add(template.id)
        session.execute(delete(_question).where(_question.c.template_id == template_id))
        if template.guide:
            session.execute(insert(_question), [
                {"template_id": template_id, "position": position, "key": q.key,
                 "labels": dict(q.label), "required": q.required}
                for position, q in enumerate(template.guide)])
    _deactivate_others(session, _template, "key", kept)


class ConfiguredIds:
    """The database ids of configured queues and templates, looked up once per process.

    Safe to keep for the life of the process: configured rows are never deleted and their
    keys never change (see above), so a key's id stays the same. Saves two queries for
    every new ticket."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str], int] = {}

    def queue(self, session: Session, key: str) -> int:
        return self._lookup(session, _queue, key)

    def template(self, session: Session, key: str) -> int:
        return self._lookup(session, _template, key)

    def _lookup(self, session: Session, table: Table, key: str) -> int:
        found = self._ids.get((table.name, key))
        if found is None:
            found = int(session.execute(select(table.c.id).where(table.c.key == key))
                        .scalar_one())
            self._ids[(table.name, key)] = found
        return found
