"""Waiting for new mail between two checks of an IMAP folder: IDLE, or NOOP polling.

In: a logged-in client with the folder selected, the mailbox's `poll_interval`, and the
poller's stop event. Out: `wait_for_mail` returns when the server announced new mail
(EXISTS or RECENT), the period ended, or the poller is stopped;
`mail_arrived_during_check` says whether mail came while the check ran (announced then, or
to a NOOP right after), so the poller checks again at once instead of waiting.

Guarantees: with IDLE (RFC 2177) the wait ends after `min(poll_interval, 24 min)` at the
latest, well before the 29-minute limit, and IDLE is ended (DONE) before returning. Without
IDLE a NOOP every 4 minutes keeps the session (RFC 3501 §5.4). A stop is noticed within
about a second. A server that says BYE, or a socket that closes during IDLE, is an
`ImapFailure("connection")`; other errors propagate to the poller.
"""

from __future__ import annotations

import threading
import time

from imapclient import IMAPClient

from gateway.inbound.imap.connect import ImapFailure

IDLE_RENEW = 24 * 60.0      # RFC 2177 §3: re-issue IDLE at least every 29 minutes
NOOP_INTERVAL = 4 * 60.0


def wait_for_mail(client: IMAPClient, stop: threading.Event, *, poll_interval: float,
                  idle_renew: float = IDLE_RENEW, use_idle: bool = True) -> None:
    """IDLE where the server offers it (and `use_idle`), renewed after `idle_renew` at the
    latest; else NOOP polling for `poll_interval`."""
    if use_idle and client.has_capability("IDLE"):
        idle(client, min(poll_interval, idle_renew), stop)
    else:
        poll_wait(client, poll_interval, stop)


def idle(client: IMAPClient, period: float, stop: threading.Event) -> None:
    """IDLE until new mail is announced, `period` ends or we are stopped."""
    client.idle()
    deadline = time.monotonic() + period
    empty_wakeups = 0
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        window = min(1.0, remaining)
        started = time.monotonic()
        responses = client.idle_check(timeout=window)
        if any(_says_bye(r) for r in responses):
            raise ImapFailure("connection", "the server ended the session (BYE)")
        if any(_announces_mail(r) for r in responses):
            break
        # a closed socket reads as "ready" with nothing in it, again and again
        if not responses and window >= 0.5 and time.monotonic() - started < window / 4:
            empty_wakeups += 1
            if empty_wakeups >= 3:
                raise ImapFailure("connection", "connection closed during IDLE")
        else:
            empty_wakeups = 0
    client.idle_done()


def poll_wait(client: IMAPClient, interval: float, stop: threading.Event) -> None:
    """NOOP every `NOOP_INTERVAL` until mail is announced, `interval` ends or we are
    stopped."""
    deadline = time.monotonic() + interval
    while not stop.is_set():
        remaining = deadline - time.monotonic()
        if remaining <= 0 or stop.wait(min(NOOP_INTERVAL, remaining)):
            return
        if time.monotonic() < deadline:
            _, responses = client.noop()
            if any(_announces_mail(r) for r in responses):
                return


def mail_arrived_during_check(client: IMAPClient) -> bool:
    """Did mail arrive while the check ran? Either the server announced it during the
    check's commands, or it announces it now to a NOOP. The NOOP is needed: Dovecot does
    not report, once IDLE has begun, mail that another session added before it (seen in
    `tests/integration/inbound/test_imap.py`: two mails appended between our SELECT and
    our IDLE were announced only after DONE, 30 s later), so without it such mail waits
    for the next full check."""
    if mail_announced_since_select(client):
        return True
    _, responses = client.noop()
    return any(_announces_mail(r) for r in responses)


def mail_announced_since_select(client: IMAPClient) -> bool:
    """Did the server announce new mail (an untagged EXISTS) during our last commands?
    imapclient keeps such responses to itself (imaplib stashes them until the next SELECT);
    without this peek, mail that arrives during a check waits for the next full check."""
    stash = getattr(getattr(client, "_imap", None), "untagged_responses", None)
    return isinstance(stash, dict) and len(stash.get("EXISTS", ())) > 1   # 1: the SELECT's


def _announces_mail(response: object) -> bool:
    return (isinstance(response, tuple) and len(response) >= 2
            and isinstance(response[0], int) and response[1] in (b"EXISTS", b"RECENT"))


def _says_bye(response: object) -> bool:
    return isinstance(response, tuple) and bool(response) and response[0] == b"BYE"
