"""Keeping file-exchange tokens out of logs.

A file-exchange link carries its token in the path (`/files/{token}`), and uvicorn's access
log writes every request's path. `ticketgw serve` runs uvicorn with the access log off, but
an admin may turn it on or run the app under another server: the `TokenRedactor` filter on
uvicorn's loggers replaces the token in any path it would log with `[token]`.

In: log records. Out: the same records with `/files/<anything>` reduced to
`/files/[token]` (the rest of the path, e.g. a file id, stays). Guaranteed for records of
the `uvicorn.access` and `uvicorn.error` loggers once `install_token_redaction()` ran.
"""

from __future__ import annotations

import logging
import re

_FILES_PATH = re.compile(r"(/files/)[^/?#\s\"']+")
REDACTED = "[token]"
LOGGERS = ("uvicorn.access", "uvicorn.error")


def redact_tokens(text: str) -> str:
    return _FILES_PATH.sub(lambda m: m.group(1) + REDACTED, text)


class TokenRedactor(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_tokens(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(redact_tokens(a) if isinstance(a, str) else a
                                for a in record.args)
        return True


def install_token_redaction() -> None:
    """Add the filter to uvicorn's loggers (once; repeated calls change nothing)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, TokenRedactor) for f in logger.filters):
            logger.addFilter(TokenRedactor())
