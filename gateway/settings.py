"""Configuration: one TOML file in, validated frozen `Settings` out.

In: a path (`--config`, `TICKETGW_CONFIG`) or none; with none, the embedded defaults of the
contract (SQLite in ./var/, SMTP on 127.0.0.1:2525, web on 127.0.0.1:8080, outbound mail
into the Maildir ./var/outbox/).

Out: `Settings`, immutable. Relative paths are resolved against the directory of the config
file (the current directory when there is none), so a service started from elsewhere finds
the same files.

Guarantees: `load_settings` either returns valid settings or raises `ConfigError` listing
*every* problem as "FILE: key: problem" (unknown keys included: a typo is an error, not a
silently ignored setting). Secrets are never read from the file: the file names environment
variables (`*_env` keys) and only those are read.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from gateway.errors import ConfigError

CONFIG_ENV = "TICKETGW_CONFIG"
DATABASE_URL_ENV = "TICKETGW_DATABASE_URL"
TEMPLATE_GROUPS = ("change", "incident", "service-request")
LANGUAGES = ("de", "en")

_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2,
               "MIB": 1024**2, "G": 1024**3, "GB": 1024**3, "GIB": 1024**3}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


# -- value checks -------------------------------------------------------------------------

def _parse_size(value: Any) -> int:
    """`50MB`, `512K`, `1GiB` or a plain number of bytes; units are binary (1 MB = 1024² B)."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as 50MB")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    if not isinstance(value, str):
        raise ValueError("must be a size such as 50MB")
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", value)
    if not match or match.group(2).upper() not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size; write e.g. 50MB, 512KB or 1GB")
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    if size <= 0:
        raise ValueError("must be positive")
    return size


def _check_listen(value: str) -> str:
    """`host:port`, `[v6]:port`, or "" for off."""
    if value == "":
        return value
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (or \"\" to turn it off)")
    return value


def _check_env_name(value: str) -> str:
    if value and not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


def _check_address(value: str) -> str:
    """A bare address `local@domain`."""
    if value.count("@") != 1 or value.startswith("@") or value.endswith("@") or " " in value:
        raise ValueError(f"{value!r} is not a mail address")
    return value


def _check_mailbox(value: str) -> str:
    """`Display Name <local@domain>` or a bare address."""
    _, address = parseaddr(value)
    if not address or "\r" in value or "\n" in value:
        raise ValueError(f"{value!r} is not a mail address "
                         "(e.g. \"Service Desk <sd@example.com>\")")
    _check_address(address)
    return value


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"{value!r} is not an id: use lower-case letters, digits, '.', '_', '-'")
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a known time zone (e.g. UTC, Europe/Berlin)") from None
    return value


def _check_transport(value: str) -> str:
    if value.startswith("maildir:") and len(value) > len("maildir:"):
        return value
    if re.fullmatch(r"smtps?://[^/:\s]+(:\d+)?/?", value):
        return value
    raise ValueError(f"{value!r} is not a transport: use \"maildir:PATH\" or \"smtp://host:port\"")


Size = Annotated[int, BeforeValidator(_parse_size)]
Listen = Annotated[str, AfterValidator(_check_listen)]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
Address = Annotated[str, AfterValidator(_check_address)]
Mailbox = Annotated[str, AfterValidator(_check_mailbox)]
Identifier = Annotated[str, AfterValidator(_check_id)]
Language = Literal["de", "en"]
Labels = dict[Language, str]


class _Section(BaseModel):
    """Every section is immutable and refuses unknown keys (a typo must not pass silently)."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# -- sections -------------------------------------------------------------------------------

class DatabaseSettings(_Section):
    url: str = "sqlite:///var/gateway.db"
    password_env: EnvName = ""   # the password for `url`, never written in the file itself

    @model_validator(mode="after")
    def _no_password_in_file(self) -> DatabaseSettings:
        if not (self.url.startswith("sqlite") or self.url.startswith("postgresql")):
            raise ValueError("url: use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
        if re.match(r"^[a-z+]+://[^/@]*:[^/@]*@", self.url):
            raise ValueError("url: contains a password; name an environment variable in "
                             "password_env instead")
        return self


class StorageSettings(_Section):
    data_dir: str = "var"       # attachments live in DATA_DIR/attachments, content-addressed


class TicketSettings(_Section):
    system_id: str = "10"       # two digits in every ticket number, like KIX/OTRS SystemID
    timezone: Annotated[str, AfterValidator(_check_timezone)] = "UTC"   # the date in numbers
    reopen_on_reply: bool = True

    @model_validator(mode="after")
    def _two_digits(self) -> TicketSettings:
        if not re.fullmatch(r"\d\d", self.system_id):
            raise ValueError("system_id: must be exactly two digits, e.g. \"10\"")
        return self


class InboundSettings(_Section):
    smtp: Listen = "127.0.0.1:2525"
    lmtp: Listen = ""
    domains: list[str] = Field(default_factory=list)
    max_message_size: Size = 50 * 1024**2
    max_recipients: int = Field(default=50, gt=0)


class OutboundSettings(_Section):
    transport: Annotated[str, AfterValidator(_check_transport)] = "maildir:var/outbox"
    from_: Mailbox = Field(default="Service Desk <support@localhost>", alias="from")
    smtp_user: str = ""
    smtp_password_env: EnvName = ""
    starttls: bool = True
    templates_dir: str = ""     # admins' overrides of mail_templates/, same file names


class WebSettings(_Section):
    listen: Listen = "127.0.0.1:8080"
    base_url: str = "http://127.0.0.1:8080"
    secret_key_env: EnvName = ""   # empty: a random key per start (sessions end on restart)

    @model_validator(mode="after")
    def _absolute_base(self) -> WebSettings:
        if not re.match(r"^https?://[^/\s]+", self.base_url):
            raise ValueError("base_url: must be an absolute http(s) URL")
        return self


class QueueSettings(_Section):
    id: Identifier
    name: str = ""
    from_: Mailbox = Field(alias="from")
    staff: list[Address] = Field(default_factory=list)
    language: Language = "de"


class StaffSettings(_Section):
    email: Address
    name: str = ""
    language: Language = "de"


class GuideQuestion(_Section):
    key: Identifier
    label: Labels
    required: bool = False


class TemplateSettings(_Section):
    id: Identifier
    group: Literal["change", "incident", "service-request"]
    name: Labels
    addresses: list[Address] = Field(default_factory=list)
    queue: str
    priority: int = Field(default=3, ge=1, le=5)
    organisations: list[str] = Field(default_factory=list)   # empty: every customer
    guide: list[GuideQuestion] = Field(default_factory=list)

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
    address: str = ""


class MailboxSettings(_Section):
    name: Identifier
    url: str
    user: str = ""
    password_env: EnvName = ""
    oauth2_token_command: str = ""
    folder: str = "INBOX"
    after: str = "seen"
    poll_interval: int = Field(default=60, gt=0)

    @model_validator(mode="after")
    def _check(self) -> MailboxSettings:
        if not re.match(r"^imaps?://", self.url):
            raise ValueError("url: must start with imap:// or imaps://")
        if self.after not in ("seen", "delete") and not re.fullmatch(r"move:.+", self.after):
            raise ValueError("after: must be \"seen\", \"delete\" or \"move:FOLDER\"")
        return self


class Settings(_Section):
    """The whole validated configuration. `source` names the file(s) it came from."""

    source: str = "<embedded defaults>"
    base_dir: str = "."
    database: DatabaseSettings = DatabaseSettings()
    storage: StorageSettings = StorageSettings()
    tickets: TicketSettings = TicketSettings()
    inbound: InboundSettings = InboundSettings()
    outbound: OutboundSettings = OutboundSettings()
    web: WebSettings = WebSettings()
    faq: FaqSettings = FaqSettings()
    queue: list[QueueSettings] = Field(default_factory=list)
    staff: list[StaffSettings] = Field(default_factory=list)
    template: list[TemplateSettings] = Field(default_factory=list)
    route: list[RouteSettings] = Field(default_factory=list)
    mailbox: list[MailboxSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _references(self) -> Settings:
        problems = _cross_reference_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

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

            password = os.environ.get(self.database.password_env, "")
            url = make_url(url).set(password=password).render_as_string(hide_password=False)
        return url

    def queue_by_id(self, queue_id: str) -> QueueSettings:
        return next(q for q in self.queue if q.id == queue_id)


def host_port(listen: str) -> tuple[str, int]:
    """`127.0.0.1:8080` -> ("127.0.0.1", 8080); `[::1]:25` -> ("::1", 25)."""
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def _duplicates(values: list[str]) -> list[str]:
    seen: set[str] = set()
    return sorted({v for v in values if v in seen or seen.add(v)})  # type: ignore[func-returns-value]


def _cross_reference_problems(settings: Settings) -> list[str]:
    """Checks between sections: ids are unique and every reference points somewhere."""
    problems: list[str] = []
    queue_ids = [q.id for q in settings.queue]
    for dup in _duplicates(queue_ids):
        problems.append(f"queue: id {dup!r} is used twice")
    for dup in _duplicates([t.id for t in settings.template]):
        problems.append(f"template: id {dup!r} is used twice")
    for dup in _duplicates([s.email for s in settings.staff]):
        problems.append(f"staff: {dup!r} is listed twice")
    for dup in _duplicates([m.name for m in settings.mailbox]):
        problems.append(f"mailbox: name {dup!r} is used twice")
    addresses = [a.lower() for t in settings.template for a in t.addresses]
    for dup in _duplicates(addresses):
        problems.append(f"template: address {dup!r} opens two templates")
    template_ids = {t.id for t in settings.template}
    for i, tpl in enumerate(settings.template):
        if tpl.queue not in queue_ids:
            problems.append(f"template[{i}].queue: unknown queue {tpl.queue!r} "
                            f"(known: {', '.join(queue_ids) or 'none'})")
    for i, route in enumerate(settings.route):
        if route.template and route.template not in template_ids:
            problems.append(f"route[{i}].template: unknown template {route.template!r}")
        if route.queue and route.queue not in queue_ids:
            problems.append(f"route[{i}].queue: unknown queue {route.queue!r}")
        if not route.template and not route.queue:
            problems.append(f"route[{i}]: needs a template or a queue")
    return problems


# -- loading ----------------------------------------------------------------------------------

def _format_location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + ("from" if part == "from_" else str(part))
    return text or "(top level)"


def _format_errors(source: str, error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors():
        loc = tuple(p for p in item["loc"] if p not in ("function-after", "function-before"))
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling; see `ticketgw init` for every key)"
        elif item["type"] == "missing":
            message = "is required"
        # a root check joins several problems with "; " - give each its own line
        for part in message.split("; "):
            problems.append(f"{source}: {_format_location(loc)}: {part}")
    return problems


def merge_config(user: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Add `overlay` to the user's config: lists are appended, tables merged, and a value the
    user set is kept (the overlay only fills in)."""
    merged = dict(user)
    for key, value in overlay.items():
        if key not in merged:
            merged[key] = value
        elif isinstance(value, list) and isinstance(merged[key], list):
            merged[key] = [*merged[key], *value]
        elif isinstance(value, dict) and isinstance(merged[key], dict):
            merged[key] = merge_config(merged[key], value)
    return merged


def read_toml(path: Path) -> dict[str, Any]:
    """Parse one TOML file; an unreadable or invalid file is a `ConfigError` naming it."""
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError([f"{path}: file not found (run `ticketgw init` to write one)"]) from None
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: not valid TOML: {exc}"]) from None


def settings_from_mapping(data: Mapping[str, Any], source: str, base_dir: Path) -> Settings:
    """Validate a parsed config; raises `ConfigError` with every problem found."""
    for forbidden in ("source", "base_dir"):
        if forbidden in data:
            raise ConfigError([f"{source}: {forbidden}: unknown key"])
    try:
        return Settings.model_validate({**data, "source": source, "base_dir": str(base_dir)})
    except ValidationError as exc:
        raise ConfigError(_format_errors(source, exc)) from None


def config_path_from_env(explicit: str | None) -> Path | None:
    """`--config` wins, then `TICKETGW_CONFIG`; None means the embedded defaults."""
    value = explicit or os.environ.get(CONFIG_ENV)
    return Path(value) if value else None


def load_settings(path: Path | None, overlay: Mapping[str, Any] | None = None) -> Settings:
    """Read and validate the config file (or the defaults), with an optional overlay (demo)."""
    if path is None:
        data: dict[str, Any] = {}
        source, base_dir = "<embedded defaults>", Path.cwd()
    else:
        data = read_toml(path)
        source, base_dir = str(path), path.resolve().parent
    if overlay:
        data = merge_config(data, overlay)
        source += " + demo"
    return settings_from_mapping(data, source, base_dir)


def environment_problems(settings: Settings) -> list[str]:
    """Secrets named in the config whose environment variables are not set."""
    wanted = [("database.password_env", settings.database.password_env),
              ("outbound.smtp_password_env", settings.outbound.smtp_password_env),
              ("web.secret_key_env", settings.web.secret_key_env)]
    wanted += [(f"mailbox[{i}].password_env", m.password_env)
               for i, m in enumerate(settings.mailbox)]
    return [f"{settings.source}: {key}: environment variable {name} is not set"
            for key, name in wanted if name and not os.environ.get(name)]
