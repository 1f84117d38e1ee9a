"""The ticket domain: tickets and articles (`ticket`), numbers (`numbers`), state changes with
their mails (`actions`), what answers need to know (`facts`), listings (`queries`), customer
users and organisations (`customers`) and the staff's `#commands` (`commands`).

In: a `Session` inside the caller's transaction and frozen dataclasses describing the change.
Out: ids and numbers; every change is written to the ticket history.

Guarantees: nothing here commits: the caller's transaction makes a change and everything it
caused (history, queued mail) atomic.
"""
