"""The counters and histograms of `/metrics` against the processing log: a real `ticketgw
serve` (SMTP listener, worker process, outbox process) takes real mails, and every counter
must equal what the database recorded. The worker counts in its own process, so these
counters reaching `/metrics` at all is the cross-process path working; a worker killed and
restarted in the middle must not make them go down."""

from __future__ import annotations

import os
import signal
import smtplib
import time
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import create_engine, text

from tests.serve_helpers import (
    free_port,
    serve_config,
    serving,
    stop_cleanly,
    worker_pids,
)


def _mail(subject: str, **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Max Mustermann <max.mustermann@acme.example>"
    message["To"] = "stoerung@support.example.com"
    message["Subject"] = subject
    message["Message-ID"] = f"<{subject.replace(' ', '-')}@acme.example>"
    for name, value in headers.items():
        message[name] = value
    message.set_content("Betroffenes System: Monitor\nAuswirkung: nur ich\n")
    return message


def _send(port: int, *messages: EmailMessage) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        for message in messages:
            client.send_message(message)


def _samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = httpx.get(url, timeout=10)
    assert answer.status_code == 200 and "set-cookie" not in answer.headers
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples}


def _value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    """The sum over every series of `name` that has these labels."""
    return sum(value for (sample, sample_labels), value in samples.items()
               if sample == name and set(labels.items()) <= set(sample_labels))


def _database(url: str, query: str) -> dict[tuple[str, ...], int]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return {tuple(row[:-1]): int(row[-1]) for row in connection.execute(text(query))}
    finally:
        engine.dispose()


def _until(condition: object, timeout: float = 60) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _all_done(database_url: str, received: int) -> bool:
    """`received` mails processed, and no outbound mail waiting to be sent."""
    states = _database(database_url, "SELECT status, count(*) FROM received_mail "
                                      "GROUP BY status")
    queued = _database(database_url, "SELECT status, count(*) FROM outbound_mail "
                                     "GROUP BY status")
    return (sum(states.values()) == received and ("pending",) not in states
            and ("queued",) not in queued)


@pytest.mark.slow
@pytest.mark.backends("postgresql")   # a real serve for 11 s: once, on the production database
def test_metrics_count_what_the_database_recorded_across_a_worker_restart(
        database_url: str, tmp_path: Path) -> None:
    smtp_port, web_port = free_port(), free_port()
    config = serve_config(tmp_path / "ticketgw.toml", database_url, smtp_port=smtp_port,
                          web_port=web_port)
    metrics_url = f"http://127.0.0.1:{web_port}/metrics"
    health_url = f"http://127.0.0.1:{web_port}/healthz"
    with serving(["--config", str(config), "serve", "--demo"], tmp_path,
                 health_url) as process:
        # three new tickets and one out-of-office answer, which is dropped
        _send(smtp_port, _mail("Monitor flackert"), _mail("Drucker klemmt"),
              _mail("Abwesend", **{"Auto-Submitted": "auto-replied"}),
              _mail("Maus defekt"))
        _until(lambda: _all_done(database_url, 4))
        _until(lambda: _total(_samples(metrics_url), "ticketgw_processed_total") == 4)

        [worker] = worker_pids(process.pid)       # the counting happened over there
        os.kill(worker, signal.SIGKILL)
        _until(lambda: worker_pids(process.pid) not in ([], [worker]))
        _send(smtp_port, _mail("Tastatur klebt"))
        _until(lambda: _all_done(database_url, 5))
        _until(lambda: _total(_samples(metrics_url), "ticketgw_processed_total") == 5)
        # the outbox process reports what it sent every 0.5 s, after the database has it
        _until(lambda: _value(_samples(metrics_url), "ticketgw_outbound_total", result="sent")
               == _database(database_url, "SELECT status, count(*) FROM outbound_mail "
                                          "GROUP BY status").get(("sent",)))

        samples = _samples(metrics_url)
        health = httpx.get(health_url, timeout=10)
        assert "set-cookie" not in health.headers
        stderr = stop_cleanly(process)
    assert "Traceback" not in stderr

    by_source = _database(database_url, "SELECT source, count(*) FROM received_mail "
                                        "GROUP BY source")
    assert by_source == {("smtp",): 5}
    assert _value(samples, "ticketgw_received_total", source="smtp") == 5
    assert _value(samples, "ticketgw_received_total", source="imap") == 0   # present, 0

    by_outcome = _database(database_url, "SELECT outcome, coalesce(rule, ''), count(*) "
                                         "FROM received_mail GROUP BY outcome, rule")
    counted = {(outcome, rule): value for (name, labels), value in samples.items()
               if name == "ticketgw_processed_total" and value
               for outcome, rule in [(dict(labels)["outcome"], dict(labels)["rule"])]}
    assert counted == by_outcome
    assert {outcome for outcome, _ in by_outcome} == {"created", "ignored"}
    assert _value(samples, "ticketgw_receive_to_processed_seconds_count") == 5
    assert _value(samples, "ticketgw_receive_to_processed_seconds_bucket", le="+Inf") == 5
    assert _value(samples, "ticketgw_processing_failures_total") == 0

    outbound = _database(database_url, "SELECT status, count(*) FROM outbound_mail "
                                       "GROUP BY status")
    assert outbound[("sent",)] >= 4               # acknowledgments (and staff notices)
    assert _value(samples, "ticketgw_outbound_total", result="sent") == outbound[("sent",)]
    assert _value(samples, "ticketgw_queued_to_sent_seconds_count") == outbound[("sent",)]
    for result in ("deferred", "failed", "suppressed"):
        assert _value(samples, "ticketgw_outbound_total", result=result) == 0
    for queue in ("received", "outbound"):
        assert _value(samples, "ticketgw_lease_takeovers_total", queue=queue) == 0
