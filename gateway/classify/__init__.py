"""Recognising automatic mail, pure: loops, out-of-office replies, bounces.

In: a parsed mail (`loop_mail.Mail` view of it). Out: a named verdict (`loops.classify`: the
rule that fired, e.g. `auto-submitted`, `out-of-office`, `bounce`) and, for delivery status
reports, the failed recipients with their status codes (`bounces`).

Guarantees: nothing here touches the database or the network; every verdict carries the name
of the rule that made it, so logs and `ticketgw explain` can say why.
"""
