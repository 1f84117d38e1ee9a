"""The SMTP transport: outbound mail through a relay (`smtp://host[:port]`, `smtps://...`).

In: `send(envelope_from, recipients, raw)` (or `send_batch` of one `Envelope`: `batch_size`
is 1, so the outbox records each mail's result before it sends the next, and a crash sends
at most the mail in flight twice); the relay's host and port, TLS (implicit, or
STARTTLS), optional AUTH. Out: a `DeliveryResult` classified by `transport.classify`, with
the phase and the relay's reply in its text, and per-recipient `Refusal`s when the relay
took the mail for some recipients and refused others.

Guarantees:
- CRLF line endings only: a bare CR or LF in `raw` becomes CRLF (RFC 5321 §2.3.8).
- One connection serves consecutive mails until `close()`. A reused connection found gone
  (or closing, 421) at MAIL FROM, before the relay accepted anything, is replaced once and
  the mail sent on the new one. A connection lost later is a `temporary` result: after
  DATA began we cannot know whether the relay kept the mail (at most one duplicate, never
  a lost mail).
- When the relay cannot be reached, or refuses our login, the following mails until
  `close()` get the same `temporary` result at once instead of a timeout each.
- Never in clear text when STARTTLS is wanted but not offered. `send` never raises for
  anything the network or the relay does.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import ssl as ssl_module
from collections.abc import Sequence

from gateway.outbound.transport import DeliveryResult, Envelope, Outcome, Refusal, classify

_BARE_EOL = re.compile(rb"\r\n|\r|\n")
DEFAULT_TIMEOUT = 60.0    # seconds per socket operation; RFC 5321 §4.5.3.2 allows far more


def _text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())[:1000]


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

    # a relay's 250 cannot be taken back: record it before the next mail, so that a crash
    # repeats at most the mail in flight (the connection is kept across batches of one)
    batch_size = 1

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

    def send_batch(self, envelopes: Sequence[Envelope]) -> list[DeliveryResult]:
        return [self.send(e.envelope_from, e.recipients, e.raw) for e in envelopes]

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
