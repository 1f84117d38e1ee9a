"""Customers (exact case, domain-folded matching, all-or-nothing import) and the mirror of the
configured queues, staff and templates."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.app import App
from gateway.config.sync import sync_configuration
from gateway.errors import InvalidInput
from gateway.store.models import CustomerUser, GuideQuestion, Queue, Template, table_of
from gateway.tickets.customers import NewCustomer, add_customer, import_customers, list_customers
from tests.conftest import BASE_CONFIG, make_settings


def test_usernames_are_case_sensitive_and_addresses_kept_as_given(app: App) -> None:
    with app.db.write() as session:
        add_customer(session, NewCustomer("mmuster", "Max.Muster@ACME.Example", org := "acme"))
        add_customer(session, NewCustomer("MMuster", "max@acme.example", "", org))
        with pytest.raises(InvalidInput, match="username 'mmuster' exists already"):
            add_customer(session, NewCustomer("mmuster", "other@acme.example"))
    c = table_of(CustomerUser)
    with app.db.read() as session:
        rows = session.execute(select(c.c.username, c.c.email, c.c.email_key)
                               .order_by(c.c.username)).all()
        listed = list_customers(session, organisation="acme")
    assert [tuple(r) for r in rows] == [
        ("MMuster", "max@acme.example", "max@acme.example"),
        ("mmuster", "Max.Muster@ACME.Example", "Max.Muster@acme.example")]
    assert {r["organisation"] for r in listed} == {"acme"}


def test_import_writes_all_rows_or_none(app: App) -> None:
    with app.db.write() as session:
        add_customer(session, NewCustomer("taken", "taken@example.com"))
    bad = ("username,email,organisation\n"
           "new1,new1@example.com,acme\n"
           "taken,t2@example.com,acme\n"
           "new2,broken,acme\n")
    with pytest.raises(InvalidInput) as caught, app.db.write() as session:
        import_customers(session, bad)
    assert str(caught.value) == ("nothing imported; fix these rows:\n"
                                 "line 3: username 'taken' exists already\n"
                                 "line 4: 'broken' is not a valid mail address")
    with app.db.read() as session:
        assert [r["username"] for r in list_customers(session)] == ["taken"]
    with app.db.write() as session:
        assert import_customers(session, "username,email\nnew1,new1@example.com\n"
                                         "new2,new2@example.com\n") == 2
    with app.db.read() as session:
        assert [r["username"] for r in list_customers(session)] == ["new1", "new2", "taken"]


def test_config_sync_is_idempotent_and_keeps_removed_rows_inactive(app: App,
                                                                   tmp_path: Path) -> None:
    t, q, g = table_of(Template), table_of(Queue), table_of(GuideQuestion)
    with app.db.write() as session:
        sync_configuration(session, app.settings)      # a second run changes nothing
    with app.db.read() as session:
        before = session.execute(select(t.c.id, t.c.key, t.c.active).order_by(t.c.key)).all()
        guide = session.execute(select(g.c.key, g.c.labels, g.c.required)).all()
    assert [(r.key, r.active) for r in before] == [("change", True), ("incident", True)]
    assert [tuple(r) for r in guide] == [
        ("system", {"de": "Betroffenes System", "en": "Affected system"}, True)]

    smaller = make_settings(app.settings.database.url, tmp_path / "d",
                            template=[BASE_CONFIG["template"][0]], queue=BASE_CONFIG["queue"])
    with app.db.write() as session:
        sync_configuration(session, smaller)
    with app.db.read() as session:
        after = session.execute(select(t.c.id, t.c.key, t.c.active).order_by(t.c.key)).all()
        queues = session.execute(select(q.c.key, q.c.active).order_by(q.c.key)).all()
    assert [(r.id, r.key, r.active) for r in after] == [
        (before[0].id, "change", False), (before[1].id, "incident", True)]
    assert [tuple(r) for r in queues] == [("changes", True), ("servicedesk", True)]


def test_instances_starting_together_sync_without_conflict(settings: object) -> None:
    """Four instances start at once on a fresh database: none fails, nothing is doubled."""
    import threading

    from gateway.app import build_app, prepare_database
    from gateway.config.settings import Settings

    assert isinstance(settings, Settings)
    apps = [build_app(settings) for _ in range(4)]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def start(app: App) -> None:
        barrier.wait()
        try:
            prepare_database(app, migrate=False)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(a,)) for a in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with apps[0].db.read() as session:
        assert len(session.execute(select(table_of(Queue).c.id)).all()) == 2
        assert len(session.execute(select(table_of(Template).c.id)).all()) == 2
    for app in apps:
        app.close()
