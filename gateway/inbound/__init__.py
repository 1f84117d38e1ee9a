"""Receiving mail: intake (durable storage), the SMTP/LMTP listener, IMAP pollers, and the
worker that processes stored mail."""
