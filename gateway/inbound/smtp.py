"""The SMTP and LMTP listener (aiosmtpd), one handler for both.

Answers, per RFC 5321/3463 and the contract:
- RCPT outside our domains: `550 5.7.1` (no relaying); our domain but no such address:
  `550 5.1.1`; more than `max_recipients`: `452 4.5.3`.
- SIZE is advertised and enforced: `552 5.3.4` (at MAIL FROM when declared, after DATA when
  not). The advertised size is `oversize_limit`: a mail larger than `max_message_size` but
  within it is accepted with only its beginning kept (its text), and its sender gets a
  file-exchange link for the attachments instead of a bounce (pipeline `_offer_upload`).
- `250` only after the raw message and its envelope are committed (`intake`); any internal
  fault, from a locked database to a bug, answers `451 4.3.0` without detail: the sending
  MTA keeps the mail and retries. Nothing after DATA is ever a `5xx` for a mail we merely
  failed to understand: understanding happens later, in the worker.
- LMTP answers once per accepted recipient (RFC 2033 §4.2); the mail is stored once.
- The client's IP address is stored with the mail (`received_mail.client_address`): the
  worker believes its `Authentication-Results` only from a trusted relay (`hops`).
- Abuse limits (`smtp_limits`): a session beyond `max_sessions` (or, from an untrusted
  client, `max_sessions_per_client`) gets `421 4.7.0` and is closed before the greeting;
  client errors beyond `soft_error_limit` are answered ever more slowly (`asyncio.sleep`,
  the event loop serves the other sessions meanwhile), and after `hard_error_limit` the
  session gets `421 4.7.0` and is closed.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable
from typing import Any

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope

from gateway.errors import TemporaryFailure
from gateway.inbound.data_reader import DataDecoder, RawSpool
from gateway.inbound.hops import peer_address
from gateway.inbound.intake import Envelope, GroupCommitter, Incoming, SpooledRaw
from gateway.inbound.smtp_limits import ClientLimits, is_client_error
from gateway.routing.addressbook import AddressBook, Verdict

log = logging.getLogger(__name__)

OK_QUEUED = "250 2.0.0 OK: queued as {id}"
TEMPFAIL = "451 4.3.0 Temporary failure, please try again later"
NO_RELAY = "550 5.7.1 Relaying denied: not a domain served here"
NO_MAILBOX = "550 5.1.1 No such recipient here"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
TOO_BIG = "552 5.3.4 Message too big for this system"
# RFC 5321 §3.8: 421 names the server and closes the channel; the client tries again later
TOO_MANY_SESSIONS = "421 4.7.0 {host} Too many connections, try again later"
TOO_MANY_ERRORS = "421 4.7.0 {host} Too many errors, closing connection"


class GatewayHandler:
    """aiosmtpd handler hooks: recipients checked against the address book, content
    committed through the group committer."""

    def __init__(self, addressbook: AddressBook, committer: GroupCommitter, *,
                 max_recipients: int, lmtp: bool, max_size: int | None = None,
                 on_stored: Callable[[], None] | None = None,
                 limits: ClientLimits | None = None) -> None:
        self.addressbook = addressbook
        self.committer = committer
        self.max_size = max_size      # larger mails keep only their beginning (see RawSpool)
        self.max_recipients = max_recipients
        self.lmtp = lmtp
        self.on_stored = on_stored       # wakes the worker: no polling delay
        self.limits = limits or ClientLimits.from_settings()   # shared by its sessions

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: SmtpEnvelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return TOO_MANY_RECIPIENTS
        verdict = self.addressbook.check_recipient(address)
        if verdict is Verdict.RELAY:
            return NO_RELAY
        if verdict is Verdict.UNKNOWN:
            return NO_MAILBOX
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        # the mail as `StreamingData.smtp_DATA` read it: bytes, or spooled to the blob store
        raw: bytes | SpooledRaw = getattr(envelope, "raw_mail", None) or \
            envelope.original_content or b""
        incoming = Incoming(raw, Envelope(
            source="lmtp" if self.lmtp else "smtp",
            mail_from=_reverse_path(envelope.mail_from),
            rcpt_to=tuple(envelope.rcpt_tos), client_address=peer_address(session.peer)),
            truncated_from=getattr(envelope, "truncated_from", None),
            left_out=getattr(envelope, "left_out", ()))
        try:
            mail_id = await self.committer.submit(incoming)
        except TemporaryFailure as exc:
            log.warning("smtp %s: mail not stored, answered 451: %s", session.peer, exc)
            return self.per_recipient(envelope, TEMPFAIL)
        # one per mail: DEBUG (ticketgw_received_total counts them)
        log.debug("smtp %s: stored mail %d (%d bytes, %d recipients)", session.peer, mail_id,
                  raw.size if isinstance(raw, SpooledRaw) else len(raw), len(envelope.rcpt_tos),
                  extra={"inbound_id": mail_id})
        if self.on_stored is not None:
            self.on_stored()
        return self.per_recipient(envelope, OK_QUEUED.format(id=mail_id))

    def per_recipient(self, envelope: SmtpEnvelope, status: str) -> str:
        # LMTP wants one reply per recipient; aiosmtpd sends the lines as they are
        if self.lmtp:
            return "\r\n".join(status for _ in envelope.rcpt_tos)
        return status

    async def handle_exception(self, error: Exception) -> str:
        """aiosmtpd's default answers a permanent 500 with the exception text; a fault of
        ours must never bounce a mail, nor tell the world about our internals."""
        log.exception("smtp session fault, answered 451", exc_info=error)
        return TEMPFAIL


def _reverse_path(mail_from: str | None) -> str:
    """aiosmtpd gives "<>" for the null reverse-path (RFC 5321 §4.5.5) as ""."""
    if mail_from in (None, "<>"):
        return ""
    return mail_from


def _with_enhanced_code(status: Any) -> Any:
    """aiosmtpd's own size refusals are plain 552 texts; ours carry RFC 3463's 5.3.4."""
    if isinstance(status, str) and status.startswith("552 ") and "5.3.4" not in status:
        return TOO_BIG
    return status


# RFC 5321 §4.5.3.1.6 allows 1000 octets per line, but real mail breaks it (4 mails of the
# corpus do); refusing them would bounce a customer's mail with a permanent 500, so the
# listener reads long lines, as Postfix does, within the message size limit.
LONG_LINES = 1024 * 1024


class StreamingData(SMTP):
    """aiosmtpd's protocol with our DATA reader (`data_reader`): chunks instead of lines,
    large mails spooled to the blob store as they arrive. Everything else is aiosmtpd's."""

    line_length_limit = LONG_LINES     # also the StreamReader's buffer: the chunk size
    _client: str | None = None         # the client's IP address
    _refused = False                   # over a session limit: never served, never counted
    _errors = 0                        # client errors since the session began or last stored

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self.transport is None:     # a new connection (STARTTLS would call this again)
            self._client = peer_address(transport.get_extra_info("peername"))
            refusal = self.event_handler.limits.admit(self._client)
            if refusal is not None:
                log.warning("smtp %s: session refused with 421: %s", self._client, refusal)
                self._refused = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(TOO_MANY_SESSIONS.format(host=self.hostname).encode() + b"\r\n")
                transport.close()      # sends the reply first
                return
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:              # aiosmtpd never saw this connection
            return
        self.event_handler.limits.release(self._client)
        super().connection_lost(error)

    async def push(self, status: Any) -> None:
        status = _with_enhanced_code(status)
        if not (isinstance(status, str) and is_client_error(status)):
            await super().push(status)
            return
        limits = self.event_handler.limits
        self._errors += 1
        delay = limits.error_delay(self._errors)
        if delay:
            log.info("smtp %s: error %d of this session (soft limit %d): answered after "
                     "%.2f s", self._client, self._errors, limits.soft_error_limit, delay)
            await asyncio.sleep(delay)       # this session waits, the others are served
        await super().push(status)
        if limits.too_many_errors(self._errors) and self.transport is not None:
            log.warning("smtp %s: %d errors (hard_error_limit), session closed with 421",
                        self._client, self._errors)
            await super().push(TOO_MANY_ERRORS.format(host=self.hostname))
            self.transport.close()

    async def smtp_DATA(self, arg: str) -> None:
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        handler = self.event_handler
        spool = RawSpool(handler.committer.blobs, handler.max_size or self.data_size_limit,
                         self.data_size_limit)
        try:
            raw = await self._read_data(spool)
        except TemporaryFailure as exc:    # the blob store could not take a large mail
            peer = self.session.peer if self.session else None
            log.warning("smtp %s: mail not stored, answered 451: %s", peer, exc)
            await self.push(handler.per_recipient(self.envelope, TEMPFAIL))
            self._set_post_data_state()
            return
        except BaseException:
            spool.discard()                # connection lost or cancelled mid-DATA
            raise
        if raw is None:
            await self.push(TOO_BIG)
            self._set_post_data_state()
            return
        self.envelope.raw_mail = raw                                   # type: ignore[attr-defined]
        self.envelope.truncated_from = spool.size if spool.truncated else None  # type: ignore[attr-defined]
        self.envelope.left_out = spool.left_out()                      # type: ignore[attr-defined]
        self.envelope.original_content = self.envelope.content = (
            raw if isinstance(raw, bytes) else b"")
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        if isinstance(status, str) and status.startswith("250"):
            self._errors = 0               # it delivers mail: not (only) a prober
        await self.push(status)

    async def _read_data(self, spool: RawSpool) -> bytes | SpooledRaw | None:
        """The message, or None when it is over the size limit (read to its end anyway)."""
        decoder = DataDecoder()
        while not decoder.finished:
            try:
                # never reads past the end marker: pipelined commands stay in the buffer
                chunk = await self._reader.readuntil(b".\r\n")
            except asyncio.LimitOverrunError as exc:
                chunk = await self._reader.read(exc.consumed)
            spool.write(decoder.feed(chunk))
        if spool.too_big:
            return None
        try:
            return await asyncio.to_thread(spool.finish)    # fsync/upload: off the event loop
        except OSError as exc:             # disk full, object storage unreachable
            raise TemporaryFailure(f"could not store the mail: {exc}") from exc


class GatewaySMTP(StreamingData):
    pass


class GatewayLMTP(StreamingData, LMTP):
    pass


def server_factory(handler: GatewayHandler, *, max_size: int, timeout: float,
                   hostname: str | None = None) -> Any:
    """A protocol factory for `loop.create_server`."""
    protocol = GatewayLMTP if handler.lmtp else GatewaySMTP
    # aiosmtpd would look the name up (a DNS query) for every session, on the event loop:
    # a flood of connections must not stall the others on that, so it is looked up once
    hostname = hostname or socket.getfqdn()

    def factory() -> SMTP:
        return protocol(handler, data_size_limit=max_size, enable_SMTPUTF8=True,
                        decode_data=False, hostname=hostname, ident="ticket-gateway",
                        timeout=timeout, loop=asyncio.get_running_loop())

    return factory
