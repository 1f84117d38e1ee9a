"""The database schema: SQLModel tables, the same on SQLite and PostgreSQL.

Only schema lives here; queries live with the code that needs them. Alembic migrations in
`store/migrations/` must produce exactly this schema (a test compares them).

Conventions:
- Timestamps are UTC, stored without zone and returned timezone-aware (`UtcDateTime`).
- Rows configured in the TOML file (queues, templates, staff) are keyed by their config id
  and never deleted: tickets keep pointing at them; removed ones are marked inactive.
- Anything a lookup on the mail path needs (Message-IDs, ticket numbers, address keys,
  token hashes, work status) is indexed, so a reply costs what a new mail costs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, LargeBinary, Table, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from gateway.store.types import UtcDateTime


def utcnow() -> datetime:
    return datetime.now(UTC)


def _time(**kwargs: Any) -> Any:
    return Field(sa_type=UtcDateTime, **kwargs)


# -- people and configuration ---------------------------------------------------------------

class Meta(SQLModel, table=True):
    """Small facts about this database (e.g. that the demo data was loaded)."""

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(default="")


class TicketCounter(SQLModel, table=True):
    """The last number handed out per day; incremented atomically with the ticket insert."""

    __tablename__ = "ticket_counter"
    day: str = Field(primary_key=True, max_length=8)       # YYYYMMDD in the configured zone
    value: int = Field(default=0)


class Organisation(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=100)          # as written in CSV/config
    name: str = Field(default="", max_length=200)
    created: datetime = _time(default_factory=utcnow)


class CustomerUser(SQLModel, table=True):
    """A customer login. `username` and `email` are kept exactly as given (case-sensitive
    login, per the KIX portal); `email_key` is the address with its domain lower-cased,
    which is how mail is matched (RFC 5321 §2.4: only the domain is case-insensitive)."""

    __tablename__ = "customer_user"
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(unique=True, max_length=200)
    email: str = Field(max_length=320)
    email_key: str = Field(index=True, max_length=320)
    name: str = Field(default="", max_length=200)
    organisation_id: int | None = Field(default=None, foreign_key="organisation.id", index=True)
    language: str = Field(default="de", max_length=8)
    password_hash: str | None = Field(default=None, max_length=300)
    must_change_password: bool = Field(default=False)
    active: bool = Field(default=True)
    password_changed: datetime | None = _time(default=None)
    created: datetime = _time(default_factory=utcnow)
    updated: datetime = _time(default_factory=utcnow)


class Staff(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    email: str = Field(unique=True, max_length=320)
    email_key: str = Field(index=True, max_length=320)
    name: str = Field(default="", max_length=200)
    language: str = Field(default="de", max_length=8)
    active: bool = Field(default=True)


class Queue(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=100)          # the config id
    name: str = Field(default="", max_length=200)
    from_address: str = Field(max_length=400)
    language: str = Field(default="de", max_length=8)
    active: bool = Field(default=True)


class QueueStaff(SQLModel, table=True):
    __tablename__ = "queue_staff"
    queue_id: int = Field(foreign_key="queue.id", primary_key=True)
    staff_id: int = Field(foreign_key="staff.id", primary_key=True)


class Template(SQLModel, table=True):
    """A ticket template (Ticketvorlage); its conversation guide is in `guide_question`."""

    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(unique=True, max_length=100)          # the config id
    group: str = Field(max_length=32)                       # change | incident | service-request
    names: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    addresses: list[str] = Field(default_factory=list, sa_type=JSON)
    queue_id: int = Field(foreign_key="queue.id")
    default_priority: int = Field(default=3)
    organisations: list[str] = Field(default_factory=list, sa_type=JSON)  # empty: all
    active: bool = Field(default=True)


class GuideQuestion(SQLModel, table=True):
    """One question of a template's conversation guide (Gesprächsleitfaden), in order."""

    __tablename__ = "guide_question"
    __table_args__ = (UniqueConstraint("template_id", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    template_id: int = Field(foreign_key="template.id", index=True)
    position: int
    key: str = Field(max_length=100)
    labels: dict[str, str] = Field(default_factory=dict, sa_type=JSON)
    required: bool = Field(default=False)


# -- tickets ----------------------------------------------------------------------------------

class Ticket(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    number: str = Field(unique=True, max_length=32)
    title: str = Field(max_length=1000)
    state: str = Field(default="new", max_length=16, index=True)
    priority: int = Field(default=3)
    template_id: int | None = Field(default=None, foreign_key="template.id")
    queue_id: int = Field(foreign_key="queue.id", index=True)
    customer_user_id: int | None = Field(default=None, foreign_key="customer_user.id")
    contact_email: str = Field(default="", max_length=320)   # the sender, registered or not
    owner_staff_id: int | None = Field(default=None, foreign_key="staff.id")
    reply_token: str | None = Field(default=None, unique=True, max_length=64)   # +r-: customers
    staff_token: str | None = Field(default=None, unique=True, max_length=64)   # +s-: staff
    created: datetime = _time(default_factory=utcnow)
    updated: datetime = _time(default_factory=utcnow)
    closed: datetime | None = _time(default=None)
    # service levels (tickets/service_levels.py): due times in UTC, None = no target; the
    # clock stands while pending or closed (since sla_paused_at), and the working time it
    # stood moves both due times (sla_paused_seconds)
    first_response_due: datetime | None = _time(default=None)
    solution_due: datetime | None = _time(default=None)
    first_response_at: datetime | None = _time(default=None)   # the first staff answer
    sla_paused_at: datetime | None = _time(default=None)
    sla_paused_seconds: int = Field(default=0)

    __table_args__ = (Index("ix_ticket_customer_number", "customer_user_id", "number"),)


class GuideAnswer(SQLModel, table=True):
    """An answer to a conversation-guide question, as received (by mail or the web form)."""

    __tablename__ = "guide_answer"
    __table_args__ = (UniqueConstraint("ticket_id", "key"),)
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    key: str = Field(max_length=100)
    value: str = Field(default="")


class Article(SQLModel, table=True):
    """One message on a ticket. `quote_start` is the offset in `body` where quoted history
    begins (None: no quote found), so views can fold it and still show it."""

    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    direction: str = Field(max_length=3)                    # in | out
    channel: str = Field(max_length=8)                      # mail | web | note
    internal: bool = Field(default=False)
    sender: str = Field(max_length=8)                       # customer | staff | system
    from_address: str = Field(default="", max_length=1000)
    to_addresses: str = Field(default="", max_length=4000)
    subject: str = Field(default="", max_length=1000)
    body: str = Field(default="")
    body_html: str | None = Field(default=None)            # sanitized, for display only
    # remote images (http/https) removed from body_html when it was stored; None: none
    remote_images: int | None = Field(default=None)
    quote_start: int | None = Field(default=None)
    message_id: str | None = Field(default=None, max_length=1000, index=True)
    received_mail_id: int | None = Field(default=None, foreign_key="received_mail.id")
    outbound_mail_id: int | None = Field(default=None, foreign_key="outbound_mail.id")
    created: datetime = _time(default_factory=utcnow)


class TicketMessageId(SQLModel, table=True):
    """Every Message-ID a ticket has sent or received: what In-Reply-To/References match."""

    __tablename__ = "ticket_message_id"
    message_id: str = Field(primary_key=True, max_length=1000)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)


class TicketParticipant(SQLModel, table=True):
    """Someone besides the customer who may write to a ticket and gets its answers: a Cc of
    the opening mail, a colleague of the customer's organisation who replied, or whom staff
    added with `#cc add` (`source`). `address_key` is how mail is matched (RFC 5321 §2.4)."""

    __tablename__ = "ticket_participant"
    __table_args__ = (UniqueConstraint("ticket_id", "address_key"),)
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    address: str = Field(max_length=320)
    address_key: str = Field(max_length=320, index=True)
    name: str = Field(default="", max_length=200)
    source: str = Field(max_length=16)                      # cc | organisation | staff
    added_by: str = Field(max_length=400)                   # as in ticket_history.actor
    added: datetime = _time(default_factory=utcnow)


class TicketHistory(SQLModel, table=True):
    """Who changed what on a ticket, when, from what to what."""

    __tablename__ = "ticket_history"
    id: int | None = Field(default=None, primary_key=True)
    ticket_id: int = Field(foreign_key="ticket.id", index=True)
    at: datetime = _time(default_factory=utcnow)
    actor: str = Field(max_length=400)                      # e.g. "cli", "staff:anna@x", "mail"
    field: str = Field(max_length=32)                       # created | state | priority | ...
    old_value: str | None = Field(default=None)
    new_value: str | None = Field(default=None)


class Blob(SQLModel, table=True):
    """Attachment content, stored once per SHA-256 on disk under DATA_DIR/attachments."""

    sha256: str = Field(primary_key=True, max_length=64)
    size: int
    created: datetime = _time(default_factory=utcnow)


class Attachment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    article_id: int = Field(foreign_key="article.id", index=True)
    sha256: str = Field(foreign_key="blob.sha256", index=True)
    filename: str = Field(max_length=1000)
    content_type: str = Field(default="application/octet-stream", max_length=200)
    content_id: str | None = Field(default=None, max_length=1000)   # inline images
    inline: bool = Field(default=False)
    size: int


class BouncingAddress(SQLModel, table=True):
    """An address our mail bounced at (from a delivery status notification); outbound
    delivery and staff views use it to stop mailing a dead address."""

    __tablename__ = "bouncing_address"
    address_key: str = Field(primary_key=True, max_length=320)
    status: str = Field(default="", max_length=16)         # RFC 3463 code, e.g. 5.1.1
    permanent: bool = Field(default=True)
    reason: str = Field(default="")
    count: int = Field(default=1)
    first_bounce: datetime = _time(default_factory=utcnow)
    last_bounce: datetime = _time(default_factory=utcnow)
    last_ticket_id: int | None = Field(default=None, foreign_key="ticket.id")


class AutoAnswer(SQLModel, table=True):
    """One automatic answer (acknowledgment, rejection) sent to an address: what the
    per-sender rate limit counts (RFC 3834 §2: never flood a sender with auto-replies)."""

    __tablename__ = "auto_answer"
    id: int | None = Field(default=None, primary_key=True)
    address_key: str = Field(max_length=320)
    event: str = Field(max_length=32)
    sent: datetime = _time(default_factory=utcnow)

    __table_args__ = (Index("ix_auto_answer_address_sent", "address_key", "sent"),)


# -- mail queues -------------------------------------------------------------------------------

class ReceivedMail(SQLModel, table=True):
    """Every received mail, raw, committed before anything looks at it; also the work queue
    of the inbound pipeline (claimed with FOR UPDATE SKIP LOCKED on PostgreSQL)."""

    __tablename__ = "received_mail"
    id: int | None = Field(default=None, primary_key=True)
    received: datetime = _time(default_factory=utcnow)
    source: str = Field(max_length=16)                      # smtp | lmtp | imap | ingest
    envelope_from: str = Field(default="", max_length=1000)
    envelope_to: list[str] = Field(default_factory=list, sa_type=JSON)
    # the SMTP/LMTP client's IP address (None for ingest and IMAP): whether the hop that
    # handed it to us is trusted (inbound/hops.py, [inbound] trusted_relays)
    client_address: str | None = Field(default=None, max_length=64)
    raw: bytes = Field(sa_type=LargeBinary)       # empty when over 1 MiB: see raw_sha256
    raw_sha256: str = Field(max_length=64, index=True)   # and the blob store (intake.py)
    size: int
    # over [inbound] max_message_size: only the beginning was kept; the size it had
    truncated_from: int | None = Field(default=None, sa_type=BigInteger)
    # and the attachments it had, seen as it passed: [{"name", "type", "size"}, ...]
    left_out: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON)
    status: str = Field(default="pending", max_length=16)  # pending | done | quarantined
    outcome: str | None = Field(default=None, max_length=16)
    reason: str | None = Field(default=None)
    rule: str | None = Field(default=None, max_length=64)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id")
    message_id: str | None = Field(default=None, max_length=1000, index=True)
    from_address: str | None = Field(default=None, max_length=1000)
    subject: str | None = Field(default=None, max_length=1000)
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None)
    next_attempt: datetime = _time(default_factory=utcnow)
    # hostname:pid of the instance leasing it, None once there is a result (store/leases.py)
    lease_holder: str | None = Field(default=None, max_length=100)
    processed: datetime | None = _time(default=None)

    __table_args__ = (Index("ix_received_mail_work", "status", "next_attempt"),)


class OutboundMail(SQLModel, table=True):
    """Every mail we send, stored in the transaction that caused it: its bytes, or the recipe
    for them (`outbound/recipe.py`), which the outbox renders and stores before it sends."""

    __tablename__ = "outbound_mail"
    id: int | None = Field(default=None, primary_key=True)
    created: datetime = _time(default_factory=utcnow)
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id", index=True)
    event: str = Field(max_length=32)                       # ack | status | staff-answer | ...
    envelope_from: str = Field(default="", max_length=1000)
    recipients: list[str] = Field(default_factory=list, sa_type=JSON)
    message_id: str = Field(max_length=1000, index=True)
    raw: bytes | None = Field(default=None, sa_type=LargeBinary)   # None until rendered
    recipe: str | None = Field(default=None, sa_type=Text)
    status: str = Field(default="queued", max_length=16)   # queued|sent|failed|suppressed
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None)
    next_attempt: datetime = _time(default_factory=utcnow)
    lease_holder: str | None = Field(default=None, max_length=100)   # as received_mail's
    deadline: datetime | None = _time(default=None)
    sent: datetime | None = _time(default=None)

    __table_args__ = (Index("ix_outbound_mail_work", "status", "next_attempt"),)


class Token(SQLModel, table=True):
    """A one-time token: only its SHA-256 is stored, never the token itself."""

    id: int | None = Field(default=None, primary_key=True)
    purpose: str = Field(max_length=32)                     # password-lost | file-exchange
    token_hash: str = Field(unique=True, max_length=64)
    customer_user_id: int | None = Field(default=None, foreign_key="customer_user.id")
    ticket_id: int | None = Field(default=None, foreign_key="ticket.id")
    created: datetime = _time(default_factory=utcnow)
    expires: datetime = _time()
    used: datetime | None = _time(default=None)


class MailboxState(SQLModel, table=True):
    """Where the import from one configured IMAP mailbox (`[[mailbox]]`) stands, and how its
    last check went: what `ticketgw mailbox status`, /healthz and /metrics show. The
    cursor (`folder`, `uidvalidity`, `last_uid`) only saves work; `imap_import` is what
    makes the import exactly-once."""

    __tablename__ = "mailbox_state"
    name: str = Field(primary_key=True, max_length=100)     # the config name
    folder: str = Field(default="", max_length=300)
    uidvalidity: int | None = Field(default=None, sa_type=BigInteger)   # RFC 3501: 32 bits
    last_uid: int = Field(default=0, sa_type=BigInteger)    # every UID up to here is stored
    messages: int | None = Field(default=None)              # in the folder at the last check
    backlog: int = Field(default=0)                         # not yet stored or not yet marked
    imported: int = Field(default=0)                        # mails stored from this mailbox
    last_check: datetime | None = _time(default=None)       # last complete, successful check
    last_attempt: datetime | None = _time(default=None)
    last_error: str | None = Field(default=None)
    error_kind: str | None = Field(default=None, max_length=16)   # auth | connection | ...
    error_since: datetime | None = _time(default=None)
    failures: int = Field(default=0)                        # failed attempts in a row
    owner: str | None = Field(default=None, max_length=200)  # host:pid polling it


class ImapImport(SQLModel, table=True):
    """One message of an IMAP folder, stored (or recognised as stored) in the same
    transaction as its `received_mail` row. UIDs count only within one folder and one
    UIDVALIDITY (RFC 3501 §2.3.1.1), hence the key; `sha256` of the raw bytes recognises a
    mail again after a UIDVALIDITY change. `done`: the `after` action was carried out."""

    __tablename__ = "imap_import"
    id: int | None = Field(default=None, primary_key=True)
    mailbox: str = Field(max_length=100)
    folder: str = Field(max_length=300)
    uidvalidity: int = Field(sa_type=BigInteger)
    uid: int = Field(sa_type=BigInteger)
    sha256: str = Field(max_length=64)
    received_mail_id: int = Field(foreign_key="received_mail.id")
    duplicate: bool = Field(default=False)                  # bytes already stored before
    imported: datetime = _time(default_factory=utcnow)
    done: datetime | None = _time(default=None)

    __table_args__ = (UniqueConstraint("mailbox", "folder", "uidvalidity", "uid"),
                      Index("ix_imap_import_mailbox_sha256", "mailbox", "sha256"),
                      Index("ix_imap_import_mailbox_done", "mailbox", "done"))



# -- customer portal ---------------------------------------------------------------------------

class WebSession(SQLModel, table=True):
    """A logged-in portal session. Only the SHA-256 of the cookie value is stored, so a leaked
    database does not hand out sessions; idle and absolute timeouts are checked on use."""

    __tablename__ = "web_session"
    id_hash: str = Field(primary_key=True, max_length=64)
    customer_user_id: int = Field(foreign_key="customer_user.id", index=True)
    created: datetime = _time(default_factory=utcnow)
    last_seen: datetime = _time(default_factory=utcnow)


class WebAttempt(SQLModel, table=True):
    """One login or password-lost attempt, per `key` ("user:NAME" or "addr:IP"): what the
    portal's rate limits count. Old rows are removed as new ones are written."""

    __tablename__ = "web_attempt"
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16)                        # login | password-lost
    key: str = Field(max_length=300)
    at: datetime = _time(default_factory=utcnow)

    __table_args__ = (Index("ix_web_attempt_kind_key_at", "kind", "key", "at"),)


def table_of(model: type[SQLModel]) -> Table:
    """The Core `Table` of a model, for the Core statements of the per-mail path."""
    return model.__table__  # type: ignore[attr-defined]
