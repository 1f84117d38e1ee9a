"""IMAP mailboxes as a mail source: a poller per configured `[[mailbox]]` (`poller`) that
connects (`connect`: TLS, password or OAuth2), waits for mail (`wait`: IDLE or NOOP, with
`backoff` between failures), fetches new messages in batches (`fetch`), stores each exactly
once through the intake (`state`: UIDVALIDITY, cursor, already-imported UIDs), holds one
poller per mailbox across instances (`lock`) and reports its health (`report`).

Guarantee: a message is marked done on the server only after its raw bytes are committed;
a crash between the two imports nothing twice (the UID is recorded with the mail).
"""
