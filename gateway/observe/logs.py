"""Log lines for operators: one set-up for every process, text or JSON, and the mail a line
is about.

In: a `LoggingSettings` (`[logging] level`, `format`) and, optionally, a level that wins
when it is lower (`ticketgw -v`, the level `serve` hands its worker process). Out: the root
logger with one handler on stderr; every logger propagates to it, uvicorn's and aiosmtpd's
included.

Guarantees:
- `format = "json"`: each record is one line holding one JSON object with `time` (ISO 8601,
  UTC), `level`, `logger`, `message`, and `inbound_id` / `message_id` when the line is
  about one received mail (`mail_context`, or `extra=` on the call), and `exc_info` with the
  traceback when there is one. A message with line breaks stays one line.
- `format = "text"`: `time level logger: message`, as before.
- `OutageLog`: a dependency that keeps failing (the database, a relay) gives one WARNING
  line without a traceback when it starts, DEBUG lines while it lasts, one INFO line when
  it works again.
Calling `configure_logging` again replaces the handler it installed (never a second one).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import sys
from collections.abc import Iterator
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from gateway.config.settings import LoggingSettings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# libraries that log a line per connection or job at INFO: quieter unless DEBUG is asked for
CHATTY_LOGGERS = ("apscheduler", "alembic", "mail.log")
# libraries whose DEBUG/INFO is about their own insides (SQLAlchemy: every statement and
# row, which `-vv` asks for with the engine's own echo): warnings only, whatever the level
LIBRARY_INSIDES = ("sqlalchemy", "asyncio", "multipart", "httpx", "httpcore")

_inbound_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("inbound_id",
                                                                         default=None)
_message_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("message_id",
                                                                         default=None)


@contextlib.contextmanager
def mail_context(inbound_id: int | None, message_id: str | None = None) -> Iterator[None]:
    """Log lines inside the block are about this received mail (`inbound_id`, `message_id`
    in JSON lines)."""
    tokens = (_inbound_id.set(inbound_id), _message_id.set(message_id or None))
    try:
        yield
    finally:
        _message_id.reset(tokens[1])
        _inbound_id.reset(tokens[0])


class _MailFields(logging.Filter):
    """Adds `inbound_id` and `message_id` from `mail_context` to a record that lacks them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "inbound_id", None) is None and _inbound_id.get() is not None:
            record.inbound_id = _inbound_id.get()
        if getattr(record, "message_id", None) is None and _message_id.get() is not None:
            record.message_id = _message_id.get()
        return True


class _Handler(logging.StreamHandler):
    """The handler `configure_logging` installs (so a second call can find and replace
    it). It writes to whatever `sys.stderr` is at the moment, like logging's last-resort
    handler: a stream swapped in for a while (click's test runner) is never kept after it
    was closed."""

    def __init__(self) -> None:
        super().__init__()

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def json_formatter() -> logging.Formatter:
    return JsonFormatter("%(levelname)s %(name)s %(message)s",
                         rename_fields={"levelname": "level", "name": "logger"},
                         timestamp="time", json_ensure_ascii=False)


def configure_logging(settings: LoggingSettings, *, level: int | None = None) -> None:
    """Send every log record of this process at `settings.level` (or `level`, when lower)
    and above to stderr, formatted as `settings.format` says."""
    effective = logging.getLevelNamesMapping()[settings.level]
    if level is not None:
        effective = min(effective, level)
    handler = _Handler()
    handler.setFormatter(json_formatter() if settings.format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(_MailFields())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(effective)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if effective <= logging.DEBUG
                                         else max(effective, logging.WARNING))
    for name in LIBRARY_INSIDES:
        logging.getLogger(name).setLevel(max(effective, logging.WARNING))


class OutageLog:
    """How one loop reports a dependency that fails again and again (see the guarantees)."""

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self.failing = False

    def failed(self, error: Any) -> None:
        if self.failing:
            self.logger.debug("%s: still failing: %s", self.what, error)
            return
        self.failing = True
        self.logger.warning("%s: %s; trying again until it works", self.what, error)

    def recovered(self) -> None:
        if self.failing:
            self.failing = False
            self.logger.info("%s: works again", self.what)
