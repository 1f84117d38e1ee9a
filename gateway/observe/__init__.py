"""What operators see of a running gateway: its counters and histograms, and its log lines.

In: observations from the stages (a mail received, processed, sent, a lease taken over) and
the `[logging]` settings. Out: prometheus_client metrics in `metrics.REGISTRY` (exposed by
the web's `/metrics`) and the process's logging handlers (`logs.configure_logging`).

Promises: recording an observation never raises and never touches the database; the inbound
worker's process forwards its observations to the `serve` process that started it, so one
`/metrics` counts the whole instance.
"""
