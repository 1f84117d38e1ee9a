"""The metrics' recording functions, directly and through the worker process's forwarding
path (a real multiprocessing pipe; here both ends live in this process)."""

from __future__ import annotations

import logging
import multiprocessing
import threading

import pytest

from gateway.observe import metrics


def _value(name: str, **labels: str) -> float:
    value = metrics.REGISTRY.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_each_function_counts_in_the_registry() -> None:
    before = {
        "smtp": _value("ticketgw_received_total", source="smtp"),
        "imap": _value("ticketgw_received_total", source="imap"),
        "created": _value("ticketgw_processed_total", outcome="created", rule="new-mail"),
        "latency": _value("ticketgw_receive_to_processed_seconds_count"),
        "deferred": _value("ticketgw_outbound_total", result="deferred"),
        "sent_latency": _value("ticketgw_queued_to_sent_seconds_count"),
        "takeovers": _value("ticketgw_lease_takeovers_total", queue="outbound"),
    }
    metrics.count_received(["smtp", "imap", "smtp"])
    metrics.count_processed("created", "new-mail", 1.5)
    metrics.count_processed("created", "new-mail", None)     # not in the histogram
    metrics.count_outbound("deferred")
    metrics.count_outbound("sent", 0.2)
    metrics.count_lease_takeover("outbound", 2)
    assert _value("ticketgw_received_total", source="smtp") - before["smtp"] == 2
    assert _value("ticketgw_received_total", source="imap") - before["imap"] == 1
    assert _value("ticketgw_processed_total", outcome="created",
                  rule="new-mail") - before["created"] == 2
    assert _value("ticketgw_receive_to_processed_seconds_count") - before["latency"] == 1
    assert _value("ticketgw_outbound_total", result="deferred") - before["deferred"] == 1
    assert _value("ticketgw_queued_to_sent_seconds_count") - before["sent_latency"] == 1
    assert _value("ticketgw_lease_takeovers_total",
                  queue="outbound") - before["takeovers"] == 2


def test_forwarded_observations_are_applied_by_the_receiver() -> None:
    receiver, sender = multiprocessing.get_context("spawn").Pipe(duplex=False)
    applying = threading.Thread(target=metrics.receive_observations, args=(receiver,))
    applying.start()
    before = _value("ticketgw_lease_takeovers_total", queue="received")
    failures = _value("ticketgw_processing_failures_total")
    forwarder = metrics.forward_observations(sender, every=60)   # only `close` sends
    try:
        metrics.count_lease_takeover("received")
        metrics.count_processing_failure()
        # queued for the parent, not counted here
        assert _value("ticketgw_lease_takeovers_total", queue="received") == before
    finally:
        forwarder.close()                      # sends the rest and closes: EOF over there
    applying.join(10)
    assert not applying.is_alive()
    assert _value("ticketgw_lease_takeovers_total", queue="received") - before == 1
    assert _value("ticketgw_processing_failures_total") - failures == 1
    metrics.count_lease_takeover("received")   # recording here again
    assert _value("ticketgw_lease_takeovers_total", queue="received") - before == 2


def test_a_bad_observation_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="gateway.observe.metrics"):
        metrics.count_outbound("sent", -1.0)           # clamped to 0, fine
        metrics._record("outbound", ("sent", "extra label"), 1)
        metrics._record("no such metric", (), 1)
    assert [r.getMessage().split(" by ")[0] for r in caplog.records] == [
        "metrics: could not count outbound('sent', 'extra label')",
        "metrics: could not count no such metric()"]
