"""Sending mail: rendering (`render`), the outbox in the database (`outbox`) and the
transports that deliver it (`transport`: what each promises, and the configured one;
`maildir`, `smtp`)."""
