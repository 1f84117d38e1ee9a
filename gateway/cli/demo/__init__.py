"""Demo data so a newcomer can try every feature at once.

`DEMO_OVERLAY` (demo.toml) adds queues, staff, the three template groups and the FAQ address
to the settings; `load_demo` adds customers (customers.csv), a few tickets in different
states and the FAQ articles of `faq/` (German and English), once per database (marker rows
in `meta` make a second run a no-op; the FAQ has its own, so a database that got the demo
before the FAQ existed gets the FAQ too).
"""

from __future__ import annotations

import tomllib
from datetime import timedelta
from importlib import resources
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlmodel import Session

from gateway.faq.source import faq_files, read_sources
from gateway.faq.store import save_articles
from gateway.store.db import Database
from gateway.store.models import CustomerUser, Meta, Queue, Template, table_of, utcnow
from gateway.tickets.customers import import_customers
from gateway.tickets.numbers import Numbering
from gateway.tickets.ticket import NewArticle, NewTicket, State, create_ticket, set_state

DEMO_MARKER = "demo_loaded"
DEMO_FAQ_MARKER = "demo_faq_loaded"
DEMO_FAQ_DIR = Path(__file__).parent / "faq"
_files = resources.files(__package__)


def demo_overlay() -> dict[str, Any]:
    return tomllib.loads(_files.joinpath("demo.toml").read_text(encoding="utf-8"))


def load_demo(db: Database, numbering: Numbering) -> bool:
    """Add demo customers, tickets and FAQ unless this database has them; True if it added
    any. The demo queues and templates must already be synced (`prepare_database`)."""
    added = False
    with db.write() as session:
        if session.get(Meta, DEMO_MARKER) is None:
            import_customers(session,
                             _files.joinpath("customers.csv").read_text(encoding="utf-8"))
            _create_demo_tickets(session, numbering)
            session.add(Meta(key=DEMO_MARKER, value=utcnow().isoformat()))
            added = True
        if session.get(Meta, DEMO_FAQ_MARKER) is None:
            save_articles(session, read_sources(faq_files(DEMO_FAQ_DIR)))
            session.add(Meta(key=DEMO_FAQ_MARKER, value=utcnow().isoformat()))
            added = True
    return added


_TICKETS = [
    # (customer, template, title, body, answers, final state, age in days)
    ("mmuster", "incident", "Drucker im 2. OG druckt nicht",
     "Seit heute Morgen druckt der Drucker im 2. OG nur leere Seiten.",
     {"system": "HP LaserJet 2. OG", "since": "heute 08:00", "impact": "Abteilung"}, "open", 3),
    ("mmuster", "sap-incident", "SAP: Buchung in FB01 bricht ab",
     "Beim Buchen in FB01 erscheint ein Kurzdump.",
     {"transaction": "FB01", "client": "100"}, "new", 0),
    ("jdoe", "change", "Add a second mail domain to our tenant",
     "We acquired a company and need their domain on our tenant.",
     {"service": "Mail", "reason": "Acquisition", "date": "next Monday"}, "pending", 10),
    ("jdoe", "order", "Two new laptops for the sales team",
     "Please order two laptops, standard configuration.",
     {"item": "Laptop standard", "quantity": "2", "cost_centre": "4711"}, "closed", 30),
    ("emusterfrau", "incident", "VPN-Verbindung bricht ständig ab",
     "Die VPN-Verbindung trennt sich alle paar Minuten.",
     {"system": "VPN"}, "new", 1),
]


def _create_demo_tickets(session: Session, numbering: Numbering) -> None:
    customers = {row.username: row for row in session.execute(select(table_of(CustomerUser)))}
    templates = {row.key: row for row in session.execute(select(table_of(Template)))}
    queues = {row.id: row for row in session.execute(select(table_of(Queue)))}
    for username, template_key, title, body, answers, state, age in _TICKETS:
        customer, template = customers[username], templates[template_key]
        created = utcnow() - timedelta(days=age)
        queue = queues[template.queue_id]
        ref = create_ticket(session, NewTicket(
            title=title, queue_id=template.queue_id, priority=template.default_priority,
            template_id=template.id, customer_user_id=customer.id, contact_email=customer.email,
            guide_answers=tuple(answers.items()),
            first_article=NewArticle(
                direction="in", channel="mail", sender="customer", subject=title,
                from_address=f"{customer.name} <{customer.email}>",
                to_addresses=template.addresses[0],
                body=body + "\n\n" + "\n".join(f"{k}: {v}" for k, v in answers.items()))),
            numbering=numbering, actor="demo", now=created)
        if state != State.NEW.value:
            set_state(session, ref.id, State(state), actor=f"staff:{queue.from_address}",
                      now=created + timedelta(hours=2))
