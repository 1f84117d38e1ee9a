"""The ticket domain: tickets and articles (`ticket`), numbers (`numbers`), state changes with
their mails (`actions`), what answers need to know (`facts`), listings (`queries`), customer
users and organisations (`customers`) with their one-time tokens (`tokens`: password lost),
the staff's `#commands` (`commands`) and a staff member's mail carried out or kept as a
note (`staff_mail`).

In: a `Session` inside the caller's transaction and frozen dataclasses describing the change.
Out: ids and numbers; every change is written to the ticket history.

Guarantees: nothing here commits: the caller's transaction makes a change and everything it
caused (history, queued mail) atomic.
"""
