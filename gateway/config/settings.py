"""The configuration's shape: one frozen pydantic model per TOML section, and `Settings`.

In: a mapping as parsed from the TOML file, plus `source` and `base_dir` (set by
`loading.settings_from_mapping`, never by the file itself).

Out: `Settings`, immutable, with the values derived from it (`path`, `data_dir`,
`database_url`, ...). Relative paths are resolved against `base_dir`, the directory of the
config file (the current directory when there is none), so a service started from
elsewhere finds the same files.

Guarantees: every section refuses unknown keys (a typo is an error, not a silently ignored
setting), and the defaults are the contract's (SQLite in ./var/, SMTP on 127.0.0.1:2525, web
on 127.0.0.1:8080, outbound mail into the Maildir ./var/outbox/). Secrets are never settings:
the file names environment variables (`*_env` keys) and only those are read.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gateway.config.values import (
    Address,
    Addresses,
    AfterImport,
    BaseUrl,
    BlobLocation,
    BusinessHours,
    DatabaseUrl,
    Duration,
    EnvName,
    FileSize,
    Identifier,
    ImapUrl,
    IpNetwork,
    Labels,
    Language,
    Listen,
    Mailbox,
    Network,
    Priority,
    S3Endpoint,
    Size,
    SystemId,
    TimeZone,
    Transport,
)
from gateway.errors import ConfigError

DATABASE_URL_ENV = "TICKETGW_DATABASE_URL"
TEMPLATE_GROUPS = ("change", "incident", "service-request")
LANGUAGES = ("de", "en")


class _Section(BaseModel):
    """Every section is immutable and refuses unknown keys (a typo must not pass silently)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# -- sections -------------------------------------------------------------------------------

class DatabaseSettings(_Section):
    url: DatabaseUrl = "sqlite:///var/gateway.db"
    password_env: EnvName = ""   # the password for `url`, never written in the file itself


class StorageSettings(_Section):
    data_dir: str = "var"       # attachments live in DATA_DIR/attachments, content-addressed
    # "" : that directory; "s3://BUCKET/PREFIX": S3-compatible object storage, which several
    # hosts can share (credentials: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, never here)
    blobs: BlobLocation = ""
    s3_endpoint: S3Endpoint = ""   # http(s)://HOST:PORT of a server that is not AWS
    s3_region: str = ""

    @model_validator(mode="after")
    def _s3_keys_need_s3(self) -> StorageSettings:
        if (self.s3_endpoint or self.s3_region) and not self.blobs:
            raise ValueError("s3_endpoint and s3_region are used only with "
                             "blobs = \"s3://BUCKET/PREFIX\"")
        return self


class TicketSettings(_Section):
    # two digits in every ticket number, like the KIX/OTRS SystemID
    system_id: SystemId = "10"
    timezone: TimeZone = "UTC"   # the date in numbers; also the zone of [[queue]] hours
    reopen_on_reply: bool = True
    holidays: list[date] = Field(default_factory=list)   # closed in every queue with hours


def _default_trusted_relays() -> list[str]:
    return ["127.0.0.1/8", "::1/128"]


class InboundSettings(_Section):
    smtp: Listen = "127.0.0.1:2525"
    lmtp: Listen = ""
    domains: list[str] = Field(default_factory=list)
    max_message_size: Size = 50 * 1024**2
    # larger mails, up to this size, are accepted: their text is kept (the first 256 KiB)
    # and the sender gets a file-exchange link for the attachments; 0 = refuse them (552)
    oversize_limit: Size = 500 * 1024**2
    max_recipients: int = Field(default=50, gt=0)
    timeout: int = Field(default=300, gt=0)   # seconds a client may idle (RFC 5321 §4.5.3.2.7)
    # the border MTA's authserv-id (RFC 8601): if set, staff commands need its DMARC/DKIM pass
    authserv_id: str = ""
    # one new mail to several template/queue addresses: one ticket (the first) or one each
    several_templates: Literal["first", "each"] = "first"
    # SMTP/LMTP clients whose Authentication-Results we believe (RFC 8601 §5): the border
    # MTA; they are also exempt from max_sessions_per_client (docs/admin.md 5.3)
    trusted_relays: list[Network] = Field(default_factory=_default_trusted_relays)
    # abuse limits per listener: sessions at once, in all and per client address (an IPv6
    # client counts by its /64); more are answered 421 and disconnected
    max_sessions: int = Field(default=100, gt=0)
    max_sessions_per_client: int = Field(default=20, gt=0)
    # errors (unknown recipients, relaying, bad commands) a session may make before each
    # further error answer waits error_sleep_time x (errors - soft limit) seconds; at the
    # hard limit the session ends with 421. Delivering a mail starts the count again.
    soft_error_limit: int = Field(default=10, ge=0)
    hard_error_limit: int = Field(default=20, gt=0)
    error_sleep_time: float = Field(default=1.0, ge=0, le=60)

    @model_validator(mode="after")
    def _error_limits_in_order(self) -> InboundSettings:
        if self.soft_error_limit > self.hard_error_limit:
            raise ValueError(f"soft_error_limit ({self.soft_error_limit}) must not be above "
                             f"hard_error_limit ({self.hard_error_limit})")
        return self


StateName = Literal["new", "open", "pending", "closed"]


def _default_status_states() -> list[StateName]:
    return ["open", "pending", "closed"]


class DkimSettings(_Section):
    domain: str
    selector: str
    key_path: str               # PEM private key; relative to the config file


class OutboundSettings(_Section):
    transport: Transport = "maildir:var/outbox"
    from_: Mailbox = Field(default="Service Desk <support@localhost>", alias="from")
    smtp_user: str = ""
    smtp_password_env: EnvName = ""
    starttls: bool = True
    templates_dir: str = ""     # admins' overrides of mail_templates/, same file names
    reply_addresses: bool = True  # Reply-To local+r-TOKEN@domain: threads even without headers
    max_auto_replies_per_hour: int = Field(default=5, ge=0)   # per sender (RFC 3834 §2)
    status_mail_states: list[StateName] = Field(default_factory=_default_status_states)
    delivery_deadline_hours: int = Field(default=120, gt=0)   # then a 4xx becomes failed
    dkim: list[DkimSettings] = Field(default_factory=list)


class WebSettings(_Section):
    listen: Listen = "127.0.0.1:8080"
    base_url: BaseUrl = "http://127.0.0.1:8080"
    secret_key_env: EnvName = ""   # empty: a random key per start (sessions end on restart)
    # addresses/networks of reverse proxies whose X-Forwarded-For names the client; empty:
    # the header is ignored and every limit counts the connecting address (docs/admin.md 5.4)
    trusted_proxies: list[IpNetwork] = Field(default_factory=list)
    # the customer portal (see docs/admin.md 1.8)
    password_mode: Literal["mail", "set-on-confirm"] = "mail"  # noqa: S105 (a mode)
    token_minutes: int = Field(default=30, gt=0, le=24 * 60)
    session_idle_minutes: int = Field(default=60, gt=0)
    session_max_hours: int = Field(default=12, gt=0)
    min_password_length: int = Field(default=10, ge=8, le=200)
    organisation_tickets: bool = False        # also show the tickets of the user's organisation
    rate_limit_minutes: int = Field(default=15, gt=0)
    rate_limit_per_user: int = Field(default=5, gt=0)      # login / password-lost per username
    rate_limit_per_address: int = Field(default=30, gt=0)  # ... per client IP address
    page_size: int = Field(default=25, gt=0, le=500)
    max_upload_size: Size = 20 * 1024**2      # all attachments of one web form together
    # /healthz answers 503 when mail waits longer than this (seconds; docs/admin.md 3.6)
    health_max_received_age: int = Field(default=300, gt=0)     # oldest pending received mail
    health_max_outbound_overdue: int = Field(default=900, gt=0)  # oldest queued, past its try


class LoggingSettings(_Section):
    """`[logging]`: what `serve` (and its worker process) log, and how (docs/admin.md)."""

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"    # json: one object per line

    @field_validator("level", mode="before")
    @classmethod
    def _upper_case_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value


class QueueSettings(_Section):
    id: Identifier
    name: str = ""
    from_: Mailbox = Field(alias="from")
    staff: list[Address] = Field(default_factory=list)
    language: Language = "de"
    acknowledge_follow_ups: bool = False   # confirm each customer follow-up by mail
    # who else may write to a ticket and gets its answers (cumulative levels, docs/admin.md):
    # none; cc = the opening mail's Cc and `#cc add`; organisation = cc + the customer's
    # registered colleagues who reply
    participants: Literal["none", "cc", "organisation"] = "cc"
    # service levels (docs/admin.md 1.13): working hours in [tickets] timezone, "" = 24/7
    hours: BusinessHours = ""
    holidays: list[date] = Field(default_factory=list)   # besides [tickets] holidays
    escalation: Addresses = Field(default_factory=list)   # for missed targets; [] = staff
    # waiting for the customer: remind after N days in pending, close after M; 0 = off
    pending_reminder_days: int = Field(default=0, ge=0, le=365)
    pending_close_days: int = Field(default=0, ge=0, le=365)

    @model_validator(mode="after")
    def _close_after_reminder(self) -> QueueSettings:
        if (self.pending_reminder_days and self.pending_close_days
                and self.pending_close_days <= self.pending_reminder_days):
            raise ValueError(f"pending_close_days ({self.pending_close_days}) must be after "
                             f"pending_reminder_days ({self.pending_reminder_days})")
        return self


class StaffSettings(_Section):
    email: Address
    name: str = ""
    language: Language = "de"


class GuideQuestion(_Section):
    key: Identifier
    label: Labels
    required: bool = False


class ServiceLevel(_Section):
    """Targets in working time (`[[queue]] hours`): the first staff answer and the solution
    (closing) are due this long after the ticket was created; staff are reminded
    `warn_before` a target is due. A target left out is not watched."""

    first_response: Duration | None = None
    solution: Duration | None = None
    warn_before: Duration | None = None     # default 1h


class TemplateSettings(_Section):
    id: Identifier
    group: Literal["change", "incident", "service-request"]
    name: Labels
    addresses: list[Address] = Field(default_factory=list)
    queue: str
    priority: int = Field(default=3, ge=1, le=5)
    organisations: list[str] = Field(default_factory=list)   # empty: every customer
    guide: list[GuideQuestion] = Field(default_factory=list)
    sla: ServiceLevel | None = None
    # per priority (1-5), over `sla`: e.g. { 5 = { first_response = "1h", solution = "8h" } }
    sla_by_priority: dict[Priority, ServiceLevel] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _unique_guide_keys(self) -> TemplateSettings:
        keys = [q.key for q in self.guide]
        duplicates = sorted({k for k in keys if keys.count(k) > 1})
        if duplicates:
            raise ValueError(f"guide: key {duplicates[0]!r} is used twice")
        return self


class RouteSettings(_Section):
    address: str                 # an address or a pattern such as "support+*@example.com"
    template: str = ""
    queue: str = ""
    unknown_sender: Literal["accept", "reject"] = "accept"


class FaqSettings(_Section):
    address: str = ""            # mail here is answered with matching FAQ articles
    # where a "not solved" reply to such an answer opens its ticket: a template, or a queue;
    # neither: the first [[queue]]
    template: str = ""
    queue: str = ""
    max_answers: int = Field(default=3, ge=1, le=10)        # articles per answer by mail
    max_suggestions: int = Field(default=3, ge=0, le=5)     # in acknowledgments; 0: none


class FilesSettings(_Section):
    """The file exchange (`/files/{token}`, `ticketgw files`, `#files`); docs/admin.md 1.12."""

    expiry_days: int = Field(default=7, gt=0, le=365)        # a link is valid this long
    max_file_size: FileSize = 1024**3                        # one file
    max_files: int = Field(default=20, gt=0, le=1000)        # per area
    max_total_size: Size = 2 * 1024**3                       # all files of one area together
    download_limit: int = Field(default=0, ge=0)             # downloads per area; 0: no limit
    rate_limit_minutes: int = Field(default=15, gt=0)
    rate_limit_per_address: int = Field(default=20, gt=0)    # wrong/expired links per client


class DigestSettings(_Section):
    """The staff digest (docs/admin.md 1.14): when each staff member gets the overview of
    their queues' open tickets by mail."""

    # a crontab line (minute hour day month weekday) in `[tickets] timezone`, e.g.
    # "0 8 * * mon-fri"; "" (the default): no digest is sent on a schedule
    schedule: str = ""

    @model_validator(mode="after")
    def _check_schedule(self) -> DigestSettings:
        if self.schedule.strip():
            from apscheduler.triggers.cron import CronTrigger

            try:
                CronTrigger.from_crontab(self.schedule)
            except ValueError as exc:
                raise ValueError(f"schedule {self.schedule!r} is not a crontab line "
                                 f"(minute hour day month weekday, e.g. \"0 8 * * mon-fri\"): "
                                 f"{exc}") from None
        return self


class MailboxSettings(_Section):
    name: Identifier
    url: ImapUrl
    user: str = ""
    password_env: EnvName = ""
    oauth2_token_command: str = ""
    folder: str = "INBOX"
    after: AfterImport = "seen"
    poll_interval: int = Field(default=60, gt=0)


class Settings(_Section):
    """The whole validated configuration. `source` names the file(s) it came from."""

    source: str = "<embedded defaults>"
    base_dir: str = "."
    # (`section.key`, variable) for each key set from the environment (config/environment.py)
    from_environment: tuple[tuple[str, str], ...] = ()
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    tickets: TicketSettings = TicketSettings()
    inbound: InboundSettings = InboundSettings()
    outbound: OutboundSettings = OutboundSettings()
    web: WebSettings = WebSettings()
    faq: FaqSettings = FaqSettings()
    files: FilesSettings = FilesSettings()
    logging: LoggingSettings = LoggingSettings()
    digest: DigestSettings = DigestSettings()
    queue: list[QueueSettings] = Field(default_factory=list)
    staff: list[StaffSettings] = Field(default_factory=list)
    template: list[TemplateSettings] = Field(default_factory=list)
    route: list[RouteSettings] = Field(default_factory=list)
    mailbox: list[MailboxSettings] = Field(default_factory=list)

    # -- derived values ---------------------------------------------------------------
    def path(self, value: str) -> Path:
        """A configured path made absolute against the config file's directory."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else Path(self.base_dir) / candidate

    @property
    def data_dir(self) -> Path:
        return self.path(self.storage.data_dir)

    @property
    def attachments_dir(self) -> Path:
        return self.data_dir / "attachments"

    def database_url(self) -> str:
        """The SQLAlchemy URL: env override, password from its env var, SQLite path resolved."""
        url = os.environ.get(DATABASE_URL_ENV) or self.database.url
        if url.startswith("sqlite:///") and url != "sqlite:///:memory:":
            raw_path = url[len("sqlite:///"):]
            url = "sqlite:///" + str(self.path(raw_path))
        if self.database.password_env and not os.environ.get(DATABASE_URL_ENV):
            from sqlalchemy.engine import make_url

            password = os.environ.get(self.database.password_env)
            if not password:
                raise ConfigError([f"{self.source}: database.password_env: environment "
                                   f"variable {self.database.password_env} is not set"])
            url = make_url(url).set(password=password).render_as_string(hide_password=False)
        return url

    def queue_by_id(self, queue_id: str) -> QueueSettings:
        return next(q for q in self.queue if q.id == queue_id)


def host_port(listen: str) -> tuple[str, int]:
    """`127.0.0.1:8080` -> ("127.0.0.1", 8080); `[::1]:25` -> ("::1", 25)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)
