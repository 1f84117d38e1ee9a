"""Customer users and organisations: add one, import many from CSV, list.

Usernames and addresses are stored exactly as given (the KIX portal's login is
case-sensitive); `email_key` (domain lower-cased) is what mail is matched on.

Guarantee: `import_customers` validates the whole file first and writes nothing if any row
is bad; the `InvalidInput` it raises lists every bad row by its line number.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from sqlalchemy import insert, select
from sqlmodel import Session

from gateway.config.settings import LANGUAGES
from gateway.errors import InvalidInput
from gateway.mail.addresses import address_key, validate_address
from gateway.store.models import CustomerUser, Organisation, table_of, utcnow

CSV_COLUMNS = ("username", "email", "name", "organisation", "language")
REQUIRED_COLUMNS = ("username", "email")

_customer = table_of(CustomerUser)
_organisation = table_of(Organisation)


@dataclass(frozen=True)
class NewCustomer:
    username: str
    email: str
    name: str = ""
    organisation: str = ""
    language: str = "de"


def check_customer(customer: NewCustomer) -> NewCustomer:
    """The customer with its address validated; `InvalidInput` says what is wrong."""
    if not customer.username or customer.username != customer.username.strip():
        raise InvalidInput(f"username {customer.username!r} is empty or has surrounding spaces")
    if any(c.isspace() for c in customer.username):
        raise InvalidInput(f"username {customer.username!r} contains spaces")
    if customer.language not in LANGUAGES:
        raise InvalidInput(f"language {customer.language!r}: use one of {', '.join(LANGUAGES)}")
    validate_address(customer.email)
    return customer


def add_customer(session: Session, customer: NewCustomer) -> int:
    """Insert one customer user (and its organisation if new); returns its id."""
    check_customer(customer)
    if _username_taken(session, customer.username):
        raise InvalidInput(f"username {customer.username!r} exists already")
    return _insert(session, customer, _organisation_ids(session, [customer.organisation]))


def import_customers(session: Session, text: str) -> int:
    """Import every row of a CSV text with a header line; all rows or none. Returns the count."""
    customers, problems = parse_customer_csv(text)
    taken = _existing_usernames(session, [c.username for _, c in customers])
    problems += [f"line {line}: username {c.username!r} exists already"
                 for line, c in customers if c.username in taken]
    if problems:
        raise InvalidInput("nothing imported; fix these rows:\n" + "\n".join(sorted(
            problems, key=lambda p: int(p.split(":")[0].removeprefix("line ") or 0))))
    organisation_ids = _organisation_ids(session, [c.organisation for _, c in customers])
    for _, customer in customers:
        _insert(session, customer, organisation_ids)
    return len(customers)


def parse_customer_csv(text: str) -> tuple[list[tuple[int, NewCustomer]], list[str]]:
    """Rows as (line number, customer) and every problem as "line N: …". Pure."""
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), strict=True)
    header = [h.strip() for h in (reader.fieldnames or [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if missing or unknown:
        what = []
        if missing:
            what.append(f"missing column(s) {', '.join(missing)}")
        if unknown:
            what.append(f"unknown column(s) {', '.join(unknown)}")
        return [], [f"line 1: {'; '.join(what)} (columns: {', '.join(CSV_COLUMNS)})"]
    reader.fieldnames = header
    rows: list[tuple[int, NewCustomer]] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    try:
        for record in reader:
            line = reader.line_num
            if None in record or any(v is None for v in record.values()):
                problems.append(f"line {line}: expected {len(header)} fields")
                continue
            values = {k: (v or "").strip() for k, v in record.items()}
            values["username"] = record["username"] or ""   # kept exactly as given
            try:
                customer = check_customer(NewCustomer(
                    username=values["username"], email=values["email"],
                    name=values.get("name", ""), organisation=values.get("organisation", ""),
                    language=values.get("language") or "de"))
            except InvalidInput as exc:
                problems.append(f"line {line}: {exc}")
                continue
            if customer.username in seen:
                problems.append(f"line {line}: username {customer.username!r} "
                                f"is also on line {seen[customer.username]}")
                continue
            seen[customer.username] = line
            rows.append((line, customer))
    except csv.Error as exc:
        problems.append(f"line {reader.line_num}: {exc}")
    if not rows and not problems:
        problems.append("line 2: no customer rows after the header")
    return rows, problems


def list_customers(session: Session, organisation: str | None = None) -> list[dict[str, object]]:
    statement = (
        select(_customer.c.username, _customer.c.email, _customer.c.name,
               _organisation.c.key.label("organisation"), _customer.c.language,
               _customer.c.active, _customer.c.created)
        .select_from(_customer.outerjoin(_organisation))
        .order_by(_customer.c.username)
    )
    if organisation:
        statement = statement.where(_organisation.c.key == organisation)
    return [dict(row._mapping) for row in session.execute(statement)]


def _username_taken(session: Session, username: str) -> bool:
    return bool(_existing_usernames(session, [username]))


def _existing_usernames(session: Session, usernames: list[str]) -> set[str]:
    found: set[str] = set()
    for start in range(0, len(usernames), 500):   # bounded IN lists
        chunk = usernames[start:start + 500]
        found.update(session.execute(
            select(_customer.c.username).where(_customer.c.username.in_(chunk))).scalars())
    return found


def _organisation_ids(session: Session, keys: list[str]) -> dict[str, int]:
    """Ids of the named organisations, creating those that do not exist yet."""
    wanted = sorted({k for k in keys if k})
    if not wanted:
        return {}
    existing = dict(session.execute(
        select(_organisation.c.key, _organisation.c.id).where(_organisation.c.key.in_(wanted))
    ).all())
    for key in wanted:
        if key not in existing:
            existing[key] = session.execute(
                insert(_organisation).values(key=key, name=key, created=utcnow())
                .returning(_organisation.c.id)).scalar_one()
    return existing


def _insert(session: Session, customer: NewCustomer, organisation_ids: dict[str, int]) -> int:
    now = utcnow()
    customer_id: int = session.execute(insert(_customer).values(
        username=customer.username, email=customer.email,
        email_key=address_key(customer.email), name=customer.name,
        organisation_id=organisation_ids.get(customer.organisation),
        language=customer.language, password_hash=None, must_change_password=False,
        active=True, password_changed=None, created=now, updated=now,
    ).returning(_customer.c.id)).scalar_one()
    return customer_id
