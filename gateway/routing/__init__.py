"""What a mail becomes, pure: a new ticket, a reply to one, a staff command, ignored or rejected.

In: a parsed mail, its envelope (`context.MailContext`), the settings, the address book (which
local address belongs to which queue/template) and a read-only `context.Directory` of tickets
and customers. Out: a frozen decision dataclass (`decisions`) naming the routing rule that
made it (`rules.route_message`; what it reads from the mail's text: `mail_fields`; what the
border MTA's Authentication-Results vouch for: `authentication`).

Guarantees: no writes; the same mail and the same directory give the same decision, so
`ticketgw explain` shows exactly what processing will do.
"""
