"""The counters and histograms of one gateway instance, and how those of its child processes
(the worker, the outbox) reach the `serve` process's `/metrics`.

In: calls from the stages (`count_received`, `count_processed`, `count_outbound`,
`count_lease_takeover`), each a few dictionary look-ups and an addition. Out: the metrics in
`REGISTRY`, which the web's `/metrics` exposes beside its database gauges. On failure:
recording never raises (a bad observation is logged and dropped), and never touches the
database.

Why module-level metrics (against the house rule of no module-level singletons): a counter
is a fact about this process, like a logger, and the stages that count (intake, worker,
outbox) are handed only what they work with; threading a metrics object through every
signature would make each of them longer for no gain in testability, since the tests read
the counters of a real `serve` through `/metrics`. They live in their own registry, not
prometheus_client's global one.

Across processes: `ticketgw serve` runs the inbound worker and the outbox sender in spawned
children (`child_processes.py`). There,
`forward_observations(connection)` turns recording into appending to a lock-free queue,
which a thread of the child sends to the parent every `FORWARD_EVERY` seconds (and once
more when the child ends normally or of an exception); in the parent, a thread running
`receive_observations(connection)` applies them to these same metrics. A child that is
restarted therefore never makes a counter go down. A child killed by a signal (SIGKILL,
the OOM killer) loses what it recorded in its last `FORWARD_EVERY` seconds: those mails are
in the database (the gauges) but not in the counters.

Counters are per instance (they start at 0 when `serve` starts); several instances add up
in PromQL, e.g. `sum by (outcome) (rate(ticketgw_processed_total[5m]))`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Histogram

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
FORWARD_EVERY = 0.5      # seconds between two sends of the worker process's observations

# the label values that exist from the start (0 until something happens), so that an alert
# on a series sees 0 rather than no data
SOURCES = ("smtp", "lmtp", "imap", "ingest")
OUTCOMES = ("created", "appended", "ignored", "rejected", "quarantined")
DELIVERY_RESULTS = ("sent", "deferred", "failed", "suppressed")
LEASE_QUEUES = ("received", "outbound")
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                   3600.0, 4 * 3600.0, 24 * 3600.0)

RECEIVED = Counter("ticketgw_received", "Received mail committed to the database, by source",
                   ["source"], registry=REGISTRY)
PROCESSED = Counter("ticketgw_processed",
                    "Received mail processed to its final outcome (created: a new ticket; "
                    "appended: added to a ticket; ignored: a loop, auto-reply, bounce or "
                    "other mail dropped on purpose; rejected: refused with an answer; "
                    "quarantined: kept for the operator), by outcome and routing rule",
                    ["outcome", "rule"], registry=REGISTRY)
PROCESSING_FAILURES = Counter("ticketgw_processing_failures",
                              "Attempts to process a received mail that failed with an error "
                              "(retried, quarantined after the last)", registry=REGISTRY)
OUTBOUND = Counter("ticketgw_outbound",
                   "Delivery attempts of outbound mail by result (sent; deferred: a temporary "
                   "failure, retried; failed: given up; suppressed: not sent to a dead "
                   "address), counted per outbound row", ["result"], registry=REGISTRY)
LEASE_TAKEOVERS = Counter("ticketgw_lease_takeovers",
                          "Leases of another worker or instance that ran out and were taken "
                          "over, by queue", ["queue"], registry=REGISTRY)
RECEIVE_TO_PROCESSED = Histogram(
    "ticketgw_receive_to_processed_seconds",
    "From a received mail's commit to its final outcome (each mail counted in "
    "ticketgw_processed_total once)", buckets=LATENCY_BUCKETS, registry=REGISTRY)
QUEUED_TO_SENT = Histogram(
    "ticketgw_queued_to_sent_seconds",
    "From an outbound mail's queueing to its delivery", buckets=LATENCY_BUCKETS,
    registry=REGISTRY)

for _source in SOURCES:
    RECEIVED.labels(_source)
for _result in DELIVERY_RESULTS:
    OUTBOUND.labels(_result)
for _queue in LEASE_QUEUES:
    LEASE_TAKEOVERS.labels(_queue)

# an observation: (metric name, label values, amount for a counter or value for a histogram)
Observation = tuple[str, tuple[str, ...], float]
_BY_NAME: dict[str, Counter | Histogram] = {
    "received": RECEIVED, "processed": PROCESSED, "processing_failures": PROCESSING_FAILURES,
    "outbound": OUTBOUND, "lease_takeovers": LEASE_TAKEOVERS,
    "receive_to_processed": RECEIVE_TO_PROCESSED, "queued_to_sent": QUEUED_TO_SENT}
_forwarding: deque[Observation] | None = None    # set in the worker process only


def _record(name: str, labels: tuple[str, ...], amount: float) -> None:
    if _forwarding is not None:
        _forwarding.append((name, labels, amount))    # deque.append: atomic, no lock
    else:
        _apply(name, labels, amount)


def _apply(name: str, labels: tuple[str, ...], amount: float) -> None:
    """Count one observation; a bad one (a bug in the caller) is logged, never raised:
    counting must not fail the mail it counts."""
    try:
        metric = _BY_NAME[name]
        if isinstance(metric, Histogram):
            (metric.labels(*labels) if labels else metric).observe(amount)
        else:
            (metric.labels(*labels) if labels else metric).inc(amount)
    except Exception:
        log.exception("metrics: could not count %s%r by %r", name, labels, amount)


# -- what the stages call ---------------------------------------------------------------------

def seconds_between(earlier: datetime, later: datetime) -> float:
    """`later - earlier` in seconds; a naive side is taken as UTC (SQLite hands back
    naive UTC timestamps)."""
    if earlier.tzinfo is None and later.tzinfo is not None:
        earlier = earlier.replace(tzinfo=UTC)
    elif later.tzinfo is None and earlier.tzinfo is not None:
        later = later.replace(tzinfo=UTC)
    return (later - earlier).total_seconds()


def count_received(sources: Iterable[str]) -> None:
    """Received mails committed, one source (`smtp`, `lmtp`, `imap`, `ingest`) per mail."""
    counts: dict[str, int] = {}
    for source in sources:
        counts[source] = counts.get(source, 0) + 1
    for source, count in counts.items():
        _record("received", (source,), count)


def count_processed(outcome: str, rule: str | None,
                    seconds_since_received: float | None) -> None:
    """A received mail reached its final `outcome` (see `OUTCOMES`) by `rule`, this long
    after it was received (None: not known, not in the histogram; only for mail
    quarantined at lease time after unfinished attempts)."""
    _record("processed", (outcome, rule or ""), 1)
    if seconds_since_received is not None:
        _record("receive_to_processed", (), max(0.0, seconds_since_received))


def count_processing_failure() -> None:
    """An attempt to process a received mail failed with an error."""
    _record("processing_failures", (), 1)


def count_outbound(result: str, seconds_since_queued: float | None = None) -> None:
    """An outbound row's attempt ended `result` (see `DELIVERY_RESULTS`); for `sent`, how
    long after it was queued."""
    _record("outbound", (result,), 1)
    if result == "sent" and seconds_since_queued is not None:
        _record("queued_to_sent", (), max(0.0, seconds_since_queued))


def count_lease_takeover(queue: Literal["received", "outbound"], count: int = 1) -> None:
    """`count` leases on `queue` (`received`: the inbound worker's, `outbound`: the
    outbox's) that had run out and were taken over by this worker or outbox. Callable from
    any thread and from the worker process."""
    _record("lease_takeovers", (queue,), count)


def count_takeover_of(queue: str, _row_id: int, _previous_holder: str) -> None:
    """The `on_takeover` hook of the worker and the outbox (`store/leases.TakeoverHook`):
    their queue names `inbound`/`outbound` counted as `received`/`outbound`."""
    count_lease_takeover("received" if queue == "inbound" else "outbound")


# -- across processes -------------------------------------------------------------------------

class Forwarder:
    """The worker process's side: sends what was recorded to the parent (`close` sends the
    rest and stops)."""

    def __init__(self, connection: Connection, every: float = FORWARD_EVERY) -> None:
        self.connection = connection
        self.every = every
        self.queue: deque[Observation] = deque()
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, name="ticketgw-metrics-forwarder",
                                       daemon=True)

    def _run(self) -> None:
        while not self.stopped.wait(self.every):
            if not self.send():
                return

    def send(self) -> bool:
        """Send what is queued; False when the parent is gone."""
        batch: list[Observation] = []
        try:
            while True:
                batch.append(self.queue.popleft())
        except IndexError:
            pass
        if not batch:
            return True
        try:
            self.connection.send(batch)
        except (OSError, ValueError):       # the parent is gone: nobody to count for
            return False
        return True

    def close(self) -> None:
        global _forwarding
        self.stopped.set()
        self.thread.join(5)
        self.send()
        _forwarding = None
        self.connection.close()


def forward_observations(connection: Connection, every: float = FORWARD_EVERY) -> Forwarder:
    """From now on, send this process's observations through `connection` (to a parent
    running `receive_observations` on the other end) instead of recording them here."""
    global _forwarding
    forwarder = Forwarder(connection, every)
    _forwarding = forwarder.queue
    forwarder.thread.start()
    return forwarder


def receive_observations(connection: Connection) -> None:
    """Apply what a `Forwarder` sends to this process's metrics, until the sender's end is
    closed (the worker ended). Meant to run in a thread of its own."""
    while True:
        try:
            batch = connection.recv()
        except (EOFError, OSError):
            break
        started = time.monotonic()
        for name, labels, amount in batch:
            _apply(name, tuple(labels), amount)
        log.debug("applied %d observations of the worker in %.3f s", len(batch),
                  time.monotonic() - started)
    connection.close()
