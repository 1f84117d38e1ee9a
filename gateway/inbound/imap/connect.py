"""Opening an IMAP session for a `[[mailbox]]`: where to connect, TLS, and logging in.

In: `MailboxSettings`. Out: a logged-in `imapclient.IMAPClient` with a timeout on every
socket operation, or an `ImapFailure` that says what went wrong and of which `kind`:
- `auth`: the server refused the credentials, the password variable is not set, the OAuth2
  token command failed, or TLS is missing where a password would travel in clear text.
  Retrying soon will not help; the poller waits long between attempts (RFC 3501 §6.2.3:
  servers may lock out clients that keep failing).
- `connection`: refused, timed out, dropped, TLS handshake failed: retried soon.

TLS: `imaps://` is TLS from the first byte (RFC 8314, port 993 by default). `imap://` uses
STARTTLS (RFC 3501 §6.2.1, port 143); a server that does not offer it is refused unless it
is on a loopback address, so a password never crosses a network in clear text. Certificates
are checked against the system's CAs (`SSL_CERT_FILE` names another bundle) and the host.

Credentials are never read from the config file: the password comes from the environment
variable `password_env`, read at each login; an OAuth2 access token (SASL XOAUTH2, as
Microsoft 365 and Gmail want) is what `oauth2_token_command` prints, run at each login
without a shell, in the config file's directory.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shlex
import socket
import ssl
import subprocess
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote, urlsplit

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from gateway.config.settings import MailboxSettings
from gateway.errors import ConfigError

log = logging.getLogger(__name__)
COMMAND_TIMEOUT = 60.0        # seconds for connecting and for every read and write
TOKEN_COMMAND_TIMEOUT = 60.0
ErrorKind = Literal["auth", "connection", "folder", "message", "database", "internal"]


class ImapFailure(Exception):
    """A check could not be done; `kind` decides how soon to try again."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: ErrorKind = kind


@dataclass(frozen=True)
class ImapTarget:
    host: str
    port: int
    security: Literal["tls", "starttls"]
    folder: str

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def describe(self) -> str:
        scheme = "imaps" if self.security == "tls" else "imap"
        return f"{scheme}://{self.host}:{self.port}/{self.folder}"


def target_of(mailbox: MailboxSettings) -> ImapTarget:
    """Host, port, TLS mode and folder of a mailbox; `ConfigError` for a URL we cannot use.
    The folder is the URL's path (percent-decoded) or else `folder`; both set and
    different is an error, as is a user or password in the URL."""
    where = f"mailbox {mailbox.name}: url"
    parts = urlsplit(mailbox.url)
    if parts.username or parts.password:
        raise ConfigError([f"{where}: put the user in `user` and the password in the "
                           "variable named by `password_env`, not in the URL"])
    if parts.query or parts.fragment:
        raise ConfigError([f"{where}: takes no ?query or #fragment"])
    if not parts.hostname:
        raise ConfigError([f"{where}: {mailbox.url!r} names no host"])
    try:
        port = parts.port
    except ValueError:
        raise ConfigError([f"{where}: {mailbox.url!r} has an invalid port"]) from None
    tls = parts.scheme == "imaps"
    path_folder = unquote(parts.path.lstrip("/"))
    folder = mailbox.folder
    if path_folder and mailbox.folder not in ("INBOX", path_folder):
        raise ConfigError([f"{where}: names folder {path_folder!r} but `folder` is "
                           f"{mailbox.folder!r}; give it in one place"])
    folder = path_folder or folder
    return ImapTarget(host=parts.hostname, port=port or (993 if tls else 143),
                      security="tls" if tls else "starttls", folder=folder)


def _password(mailbox: MailboxSettings) -> str:
    if not mailbox.password_env:
        raise ImapFailure("auth", "no credentials: set `password_env` or "
                                  "`oauth2_token_command`")
    password = os.environ.get(mailbox.password_env)
    if not password:
        raise ImapFailure("auth", f"environment variable {mailbox.password_env} "
                                  "(password_env) is not set")
    return password


def oauth2_token(mailbox: MailboxSettings, base_dir: str) -> str:
    """Run `oauth2_token_command`; its first line of output is the access token."""
    try:
        argv = shlex.split(mailbox.oauth2_token_command)
        result = subprocess.run(argv, capture_output=True, text=True, cwd=base_dir,
                                timeout=TOKEN_COMMAND_TIMEOUT, check=False)
    except (OSError, ValueError, subprocess.TimeoutExpired) as exc:
        raise ImapFailure("auth", f"oauth2_token_command could not run: {exc}") from None
    token = result.stdout.strip().splitlines()[0].strip() if result.stdout.strip() else ""
    if result.returncode != 0 or not token:
        detail = (result.stderr.strip().splitlines() or ["no output"])[-1][:300]
        raise ImapFailure("auth", f"oauth2_token_command exited {result.returncode} "
                                  f"without a token: {detail}")
    return token


def open_session(mailbox: MailboxSettings, target: ImapTarget, *, base_dir: str = ".",
                 ssl_context: ssl.SSLContext | None = None,
                 timeout: float = COMMAND_TIMEOUT) -> IMAPClient:
    """Connect, secure and log in; the caller selects the folder. On failure nothing is
    left open."""
    context = ssl_context or ssl.create_default_context()
    try:
        client = IMAPClient(target.host, target.port, ssl=target.security == "tls",
                            ssl_context=context, timeout=timeout)
    except ssl.SSLError as exc:
        raise ImapFailure("connection", f"TLS with {target.host}:{target.port} failed: "
                                        f"{exc.reason or exc}") from None
    except (OSError, IMAPClientError) as exc:
        raise ImapFailure("connection", f"cannot connect to {target.host}:{target.port}: "
                                        f"{_reason(exc)}") from None
    try:
        _secure(client, target, context)
        _log_in(client, mailbox, base_dir)
    except BaseException:
        close_quietly(client)
        raise
    return client


def _secure(client: IMAPClient, target: ImapTarget, context: ssl.SSLContext) -> None:
    if target.security == "tls":
        return
    try:
        offered = client.has_capability("STARTTLS")
        if offered:
            client.starttls(context)
            return
    except ssl.SSLError as exc:
        raise ImapFailure("connection", f"STARTTLS with {target.host} failed: "
                                        f"{exc.reason or exc}") from None
    except (OSError, IMAPClientError) as exc:
        raise ImapFailure("connection", f"STARTTLS with {target.host} failed: "
                                        f"{_reason(exc)}") from None
    if not target.loopback:
        raise ImapFailure("auth", f"{target.host} does not offer STARTTLS: refusing to log "
                                  "in without TLS (use imaps://, or a server with STARTTLS)")


def _log_in(client: IMAPClient, mailbox: MailboxSettings, base_dir: str) -> None:
    try:
        if mailbox.oauth2_token_command:
            if not mailbox.user:
                raise ImapFailure("auth", "XOAUTH2 needs `user` (the mailbox's address)")
            client.oauth2_login(mailbox.user, oauth2_token(mailbox, base_dir))
        else:
            client.login(mailbox.user, _password(mailbox))
    except LoginError as exc:
        # RFC 5530 §3: [UNAVAILABLE] is the server's own trouble (its user database is
        # down): try again soon; anything else is a verdict on the credentials
        kind: ErrorKind = "connection" if "[UNAVAILABLE]" in str(exc) else "auth"
        raise ImapFailure(kind, f"login as {mailbox.user!r} refused: {_reason(exc)}") from None
    except (OSError, IMAPClientError) as exc:
        raise ImapFailure("connection", f"login failed: {_reason(exc)}") from None


def close_quietly(client: IMAPClient, *, logout: bool = False) -> None:
    """Close the session; with `logout`, politely first (bounded by the socket timeout)."""
    if logout:
        try:
            client.logout()
            return
        except Exception as exc:   # a dead connection: shut it down below
            log.debug("logout failed: %s", exc)
    with contextlib.suppress(Exception):   # already closed
        client.shutdown()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, socket.timeout):
        return "timed out"
    text = str(exc)
    if text.startswith("b'") or text.startswith('b"'):
        text = text[2:-1]
    return text or type(exc).__name__
