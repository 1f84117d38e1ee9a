"""What `/healthz` judges: the database, the other components of the same `serve`, and how
long mail has been waiting.

In: the `App`, a `Liveness` view (component name -> a callable that returns `None` while the
component works, else the reason it does not; empty when the web app runs without `serve`)
and the `[web] health_max_*` thresholds. Out: `(status_code, report)` for `/healthz`.

Guarantees: 200 only when the database answers, every component of the view reports no
problem and no mail has waited past its threshold; otherwise 503 with every reason found in
`problems` (a list of short sentences). Checking never raises and never writes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from gateway import __version__
from gateway.app import App
from gateway.errors import DatabaseNotReady, TemporaryFailure
from gateway.inbound.imap.report import mailbox_health
from gateway.store.models import OutboundMail, ReceivedMail, table_of

Liveness = Mapping[str, Callable[[], str | None]]

_received = table_of(ReceivedMail)
_outbound = table_of(OutboundMail)


def health_report(app: App, liveness: Liveness) -> tuple[int, dict[str, object]]:
    """The status code and JSON body of `/healthz` (see the module's guarantees)."""
    try:
        app.db.ping()
    except (DatabaseNotReady, TemporaryFailure):
        return 503, {"status": "unavailable", "database": "unreachable",
                     "problems": ["the database does not answer"]}
    problems: list[str] = []
    components: dict[str, str] = {}
    for name, problem_of in sorted(liveness.items()):
        problem = problem_of()
        components[name] = "ok" if problem is None else "down"
        if problem is not None:
            problems.append(f"{name}: {problem}")
    problems += _waiting_problems(app)
    report: dict[str, object] = {"status": "unavailable" if problems else "ok",
                                 "database": "ok", "version": __version__}
    if components:
        report["components"] = components
    if problems:
        report["problems"] = problems
    if app.settings.mailbox:   # reported, not judged: a mailbox's trouble is not ours
        report["mailboxes"] = mailbox_health(app.db, app.settings)
    return (503 if problems else 200), report


def _waiting_problems(app: App) -> list[str]:
    """Mail that has waited past `[web] health_max_received_age` (oldest pending received
    mail) or `health_max_outbound_overdue` (oldest queued outbound mail past its next
    attempt)."""
    web = app.settings.web
    try:
        with app.db.read() as session:
            waiting = waiting_mail(session)
    except (TemporaryFailure, SQLAlchemyError):        # not migrated, or gone since the ping
        return ["the mail queues could not be read"]
    problems = []
    if waiting.received_age > web.health_max_received_age:
        problems.append(f"the oldest received mail has waited {waiting.received_age:.0f} s "
                        f"to be processed (more than {web.health_max_received_age} s)")
    if waiting.outbound_overdue > web.health_max_outbound_overdue:
        problems.append(f"the oldest queued outbound mail is {waiting.outbound_overdue:.0f} s "
                        f"overdue (more than {web.health_max_outbound_overdue} s)")
    return problems


@dataclass(frozen=True)
class Waiting:
    """How long the oldest mail of each queue has waited, in seconds (0 when none waits).
    `received_age`: the oldest pending received mail since it arrived; `outbound_age`: the
    oldest queued outbound mail since it was queued; `outbound_overdue`: how far the
    earliest next attempt of a queued outbound mail is past (0 when none is due yet)."""

    received_age: float
    outbound_age: float
    outbound_overdue: float


def waiting_mail(session: Session) -> Waiting:
    """The `Waiting` of the shared queues, read in `session` (raises what the read raises)."""
    oldest_received = session.execute(select(func.min(_received.c.received))
                                      .where(_received.c.status == "pending")).scalar()
    oldest_queued, oldest_due = session.execute(
        select(func.min(_outbound.c.created), func.min(_outbound.c.next_attempt))
        .where(_outbound.c.status == "queued")).one()
    now = datetime.now(UTC)
    return Waiting(received_age=_seconds_since(oldest_received, now),
                   outbound_age=_seconds_since(oldest_queued, now),
                   outbound_overdue=_seconds_since(oldest_due, now))


def _seconds_since(moment: datetime | None, now: datetime) -> float:
    if moment is None:
        return 0.0
    if moment.tzinfo is None:          # SQLite hands back naive UTC
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (now - moment).total_seconds())
