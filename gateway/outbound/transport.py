"""Transports: hand one finished mail (envelope + raw bytes) to the next hop.

In: `send(envelope_from, recipients, raw)`. Out: a `DeliveryResult` saying what the next hop
did with it: `sent`, `temporary` (try again later) or `permanent` (it will never take it), with
the reply code and text, and per-recipient refusals when the relay took the mail for some
recipients and refused others.

Guarantees:
- `send` never raises for anything the network, the relay or the disk does: every such
  failure is a `temporary` result with what happened in its text. Only `permanent` results
  (an SMTP `5xx` about this mail) make the outbox give up on a mail.
- `sent` is reported only after the next hop accepted responsibility: the relay's `250` to
  the end of DATA, or the Maildir file renamed into `new/` and fsynced.
- SMTP sends CRLF line endings only (a bare CR or LF in `raw` becomes CRLF); the Maildir
  gets `raw` unchanged.
- A transport holds at most one connection, opened on the first `send` and kept for the
  following ones until `close()` (the outbox closes it after each batch, so no idle
  connection is left for the relay to time out).

Classification (RFC 5321 §4.2.1, §4.5.3.1.10):
- connection errors, timeouts, TLS errors and `4xx`: temporary;
- `552` (historically "too many recipients", RFC 5321 §4.5.3.1.10 says to treat it as
  temporary): temporary, unless its enhanced code says the mail is too big (RFC 3463
  `5.3.4`, `5.2.3`): sending the same bytes again cannot succeed, so permanent;
- every other `5xx`: permanent, except at login: a refused AUTH or a missing STARTTLS is
  our configuration, not the mail's fault, so it is temporary (retried until the deadline).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import smtplib
import socket
import ssl as ssl_module
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import urlsplit

from gateway.config.settings import Settings
from gateway.errors import ConfigError

Outcome = Literal["sent", "temporary", "permanent"]
_BARE_EOL = re.compile(rb"\r\n|\r|\n")
DEFAULT_TIMEOUT = 60.0    # seconds per socket operation; RFC 5321 §4.5.3.2 allows far more


@dataclass(frozen=True)
class Refusal:
    """One recipient the relay refused at RCPT TO."""

    recipient: str
    outcome: Literal["temporary", "permanent"]
    code: int
    text: str

    def describe(self) -> str:
        return f"<{self.recipient}>: {self.code} {self.text}"


@dataclass(frozen=True)
class DeliveryResult:
    """What became of one mail. `outcome` applies to every recipient not in `refused`;
    `text` says what happened, with the phase and the relay's reply ("end of DATA: 550 …")."""

    outcome: Outcome
    code: int | None = None
    text: str = ""
    refused: tuple[Refusal, ...] = ()

    def outcome_for(self, recipient: str) -> Outcome:
        for refusal in self.refused:
            if refusal.recipient == recipient:
                return refusal.outcome
        return self.outcome

    def describe(self) -> str:
        if not self.refused:
            return self.text
        return f"{self.text}; refused " + "; ".join(r.describe() for r in self.refused)


class Transport(Protocol):
    def send(self, envelope_from: str, recipients: tuple[str, ...],
             raw: bytes) -> DeliveryResult: ...

    def close(self) -> None: ...


_TOO_BIG = re.compile(rb"^\s*5\.(?:3\.4|2\.3)(?!\d)")


def classify(code: int, reply: bytes | str = b"") -> Outcome:
    """An SMTP reply code (and its text, which may start with an RFC 3463 enhanced code)
    as an outcome (RFC 5321 §4.2.1)."""
    if 200 <= code < 300:
        return "sent"
    if code == 552:   # RFC 5321 §4.5.3.1.10: treat as temporary, unless "too big"
        text = reply.encode("utf-8", "replace") if isinstance(reply, str) else reply
        return "permanent" if _TOO_BIG.match(text) else "temporary"
    if 500 <= code < 600:
        return "permanent"
    return "temporary"   # 4xx, and anything malformed (-1 from smtplib)


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:1000]


# -- Maildir ----------------------------------------------------------------------------------

class MaildirTransport:
    """Writes each mail as one file into `PATH/new/`, byte for byte as it would go over the
    wire (CRLF line endings). Created on first use. Written to `tmp/`, fsynced, renamed into
    `new/` and the directory fsynced: a file in `new/` is always complete."""

    _counter = itertools.count()

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._ready = False

    def __repr__(self) -> str:
        return f"maildir:{self.path}"

    def send(self, envelope_from: str, recipients: tuple[str, ...],
             raw: bytes) -> DeliveryResult:
        try:
            if not self._ready:
                for sub in ("tmp", "new", "cur"):
                    (self.path / sub).mkdir(mode=0o700, parents=True, exist_ok=True)
                self._ready = True
            name = self._unique_name()
            temporary, final = self.path / "tmp" / name, self.path / "new" / name
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(raw)
                while view:
                    view = view[os.write(fd, view):]
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(temporary, final)
            directory = os.open(self.path / "new", os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        except OSError as exc:
            return DeliveryResult("temporary", None, f"cannot write to the Maildir "
                                                     f"{self.path}: {exc}")
        return DeliveryResult("sent", None, f"written to {final}")

    def _unique_name(self) -> str:
        # the Maildir convention: time.M<usec>P<pid>Q<count>.host, plus randomness for threads
        now = time.time()
        host = socket.gethostname().replace("/", "\\057").replace(":", "\\072")
        return (f"{int(now)}.M{int(now % 1 * 1e6)}P{os.getpid()}Q{next(self._counter)}"
                f"R{os.urandom(4).hex()}.{host}")

    def close(self) -> None:
        return None


# -- SMTP -------------------------------------------------------------------------------------

class _NoConnection(Exception):
    def __init__(self, result: DeliveryResult) -> None:
        super().__init__(result.text)
        self.result = result


class _Stale(Exception):
    """The connection was gone (or closing, 421) at MAIL FROM, before the relay accepted
    anything: on a reused connection it is safe to redo the mail on a new one."""

    def __init__(self, text: str, code: int | None = None) -> None:
        super().__init__(text)
        self.code = code


class SmtpTransport:
    """Delivers through an SMTP relay (smtplib): implicit TLS (`ssl`, "smtps") or STARTTLS,
    optional AUTH. One connection serves consecutive mails until `close()`. When the relay
    cannot be reached, the following mails until `close()` get the same temporary result
    at once instead of waiting for a timeout each."""

    def __init__(self, host: str, port: int, *, ssl: bool = False, starttls: bool = True,
                 user: str = "", password: str = "", timeout: float = DEFAULT_TIMEOUT,
                 ssl_context: ssl_module.SSLContext | None = None,
                 local_hostname: str | None = None) -> None:
        self.host, self.port = host, port
        self.ssl, self.starttls = ssl, starttls and not ssl
        self.user, self._password = user, password
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.local_hostname = local_hostname
        self._connection: smtplib.SMTP | None = None
        self._down: DeliveryResult | None = None

    def __repr__(self) -> str:
        return f"{'smtps' if self.ssl else 'smtp'}://{self.host}:{self.port}"

    def send(self, envelope_from: str, recipients: tuple[str, ...],
             raw: bytes) -> DeliveryResult:
        if self._down is not None:
            return self._down
        for _ in range(2):
            reused = self._connection is not None
            try:
                connection = self._connect()
            except _NoConnection as exc:
                self._down = exc.result
                return exc.result
            try:
                return self._transaction(connection, envelope_from, recipients, raw)
            except _Stale as exc:
                self._drop()
                if not reused:
                    return DeliveryResult("temporary", exc.code, f"MAIL FROM: {exc}")
            except (smtplib.SMTPException, OSError) as exc:
                # after DATA began we cannot know whether the relay kept it: retry later
                # (at most one duplicate), never drop
                self._drop()
                return DeliveryResult("temporary", _code(exc),
                                      f"connection to {self!r} lost: {_describe(exc)}")
        return DeliveryResult("temporary", None, f"{self!r} keeps closing the connection")

    def _transaction(self, connection: smtplib.SMTP, envelope_from: str,
                     recipients: tuple[str, ...], raw: bytes) -> DeliveryResult:
        raw = _crlf(raw)
        options = []
        if not all(a.isascii() for a in (envelope_from, *recipients)):
            if not connection.has_extn("smtputf8"):
                return DeliveryResult("permanent", None, f"{self!r} does not offer SMTPUTF8 "
                                      "(RFC 6531), needed for a non-ASCII address")
            options.append("SMTPUTF8")
        if not raw.isascii() and connection.has_extn("8bitmime"):
            options.append("BODY=8BITMIME")   # RFC 6152
        if connection.has_extn("size"):
            options.append(f"SIZE={len(raw)}")   # RFC 1870: refused before the upload
        try:
            code, reply = connection.mail(envelope_from, options)
        except smtplib.SMTPServerDisconnected as exc:
            raise _Stale(f"{self!r} closed the connection") from exc
        if code == 421:
            raise _Stale(f"{code} {_text(reply)}", code)
        if code != 250:
            self._reset(connection)
            return DeliveryResult(classify(code, reply), code,
                                  f"MAIL FROM: {code} {_text(reply)}")
        refused = []
        for recipient in recipients:
            code, reply = connection.rcpt(recipient)
            if code == 421:
                self._drop()
                return DeliveryResult("temporary", code, f"RCPT TO: {code} {_text(reply)}")
            if code not in (250, 251):
                outcome = classify(code, reply)
                refused.append(Refusal(recipient,
                                       "permanent" if outcome == "permanent" else "temporary",
                                       code, _text(reply)))
        if len(refused) == len(recipients):
            self._reset(connection)
            temporary = any(r.outcome == "temporary" for r in refused)
            worst: Outcome = "temporary" if temporary else "permanent"
            return DeliveryResult(worst, None, "every recipient was refused",
                                  tuple(refused))
        try:
            code, reply = connection.data(raw)
        except smtplib.SMTPDataError as exc:   # no 354: nothing was sent
            self._reset(connection)
            return DeliveryResult(classify(exc.smtp_code, exc.smtp_error), exc.smtp_code,
                                  f"DATA: {exc.smtp_code} {_text(exc.smtp_error)}",
                                  tuple(refused))
        if code != 250:
            self._reset(connection)
            return DeliveryResult(classify(code, reply), code,
                                  f"end of DATA: {code} {_text(reply)}", tuple(refused))
        return DeliveryResult("sent", code, f"{code} {_text(reply)}", tuple(refused))

    def _connect(self) -> smtplib.SMTP:
        if self._connection is not None:
            return self._connection
        where = f"{self!r}"
        connection: smtplib.SMTP | None = None
        try:
            if self.ssl:
                connection = smtplib.SMTP_SSL(self.host, self.port, self.local_hostname,
                                              timeout=self.timeout, context=self._tls())
            else:
                connection = smtplib.SMTP(self.host, self.port, self.local_hostname,
                                          timeout=self.timeout)
            connection.ehlo_or_helo_if_needed()
            if self.starttls:
                if not connection.has_extn("starttls"):
                    raise _NoConnection(DeliveryResult(
                        "temporary", None, f"{where} does not offer STARTTLS; not sending in "
                        "clear text (set outbound.starttls = false for a relay without TLS)"))
                connection.starttls(context=self._tls())
                connection.ehlo()
            if self.user:
                connection.login(self.user, self._password)
        except _NoConnection:
            _quit(connection)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            _quit(connection)
            raise _NoConnection(DeliveryResult(
                "temporary", exc.smtp_code, f"{where} refused our login as {self.user!r} "
                f"({exc.smtp_code} {_text(exc.smtp_error)}): check outbound.smtp_user and "
                "the password")) from exc
        except (smtplib.SMTPException, OSError) as exc:
            _quit(connection)
            raise _NoConnection(DeliveryResult(
                "temporary", _code(exc), f"cannot connect to {where}: {_describe(exc)}")) \
                from exc
        self._connection = connection
        return connection

    def _tls(self) -> ssl_module.SSLContext:
        # loading the system's CA certificates takes ~20 ms: once per transport, not per batch
        if self.ssl_context is None:
            self.ssl_context = ssl_module.create_default_context()
        return self.ssl_context

    def _reset(self, connection: smtplib.SMTP) -> None:
        try:
            code, _ = connection.rset()
        except (smtplib.SMTPException, OSError):
            code = -1
        if code != 250:
            self._drop()

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(OSError):
                connection.close()

    def close(self) -> None:
        """Say QUIT and forget the connection and any "relay down" result."""
        connection, self._connection, self._down = self._connection, None, None
        _quit(connection)


def _quit(connection: smtplib.SMTP | None) -> None:
    if connection is None:
        return
    try:
        connection.quit()
    except (smtplib.SMTPException, OSError):
        with contextlib.suppress(OSError):
            connection.close()


def _crlf(raw: bytes) -> bytes:
    """CRLF line endings, as SMTP requires (RFC 5321 §2.3.8): a bare CR or LF is never sent,
    since relays disagree on what it means (the "SMTP smuggling" family of bugs)."""
    crlf = raw.count(b"\r\n")
    if raw.count(b"\n") == crlf and raw.count(b"\r") == crlf:
        return raw
    return _BARE_EOL.sub(b"\r\n", raw)


def _code(exc: BaseException) -> int | None:
    code = getattr(exc, "smtp_code", None)
    return code if isinstance(code, int) and code > 0 else None


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_text(exc.smtp_error)}"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return _text(str(exc)) or type(exc).__name__


# -- from the settings ------------------------------------------------------------------------

def transport_from_settings(settings: Settings) -> Transport:
    """The configured transport. "maildir:PATH" is resolved against the config file's
    directory; "smtp://host[:port]" (port 25 by default) or "smtps://host[:port]" (465).
    The password is read from the environment variable named by `smtp_password_env`."""
    outbound = settings.outbound
    if outbound.transport.startswith("maildir:"):
        return MaildirTransport(settings.path(outbound.transport[len("maildir:"):]))
    url = urlsplit(outbound.transport)
    implicit_tls = url.scheme == "smtps"
    password = ""
    if outbound.smtp_password_env:
        password = os.environ.get(outbound.smtp_password_env, "")
        if not password:
            raise ConfigError([f"{settings.source}: outbound.smtp_password_env: environment "
                               f"variable {outbound.smtp_password_env} is not set"])
    elif outbound.smtp_user:
        raise ConfigError([f"{settings.source}: outbound.smtp_user is set, but no "
                           "smtp_password_env names the variable holding the password"])
    return SmtpTransport(url.hostname or "", url.port or (465 if implicit_tls else 25),
                         ssl=implicit_tls, starttls=outbound.starttls,
                         user=outbound.smtp_user, password=password)
