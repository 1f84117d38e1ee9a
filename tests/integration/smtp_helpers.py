"""Running the real listener inside a test (an asyncio loop in a thread, port 0), and the
mails and SMTP client the tests use with it."""

from __future__ import annotations

import asyncio
import smtplib
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email.message import EmailMessage

from gateway.app import App
from gateway.inbound.intake import GroupCommitter
from gateway.service import ListenerComponent

STAFF_ADDRESS = "anna.agent@example.com"
# One queue with one staff member and one incident template: the desk the staff-trust tests
# (test_trusted_hops, test_staff_by_mail) send their mail to, as a config file's TOML.
DESK_WITH_STAFF = f"""
[[queue]]
id = "servicedesk"
from = "Service Desk <support@support.example.com>"
staff = ["{STAFF_ADDRESS}"]

[[staff]]
email = "{STAFF_ADDRESS}"
name = "Anna Agent"

[[template]]
id = "incident"
group = "incident"
name = {{ de = "Störung", en = "Incident" }}
addresses = ["incident@support.example.com"]
queue = "servicedesk"
"""


@contextmanager
def running_listener(app: App, *, lmtp: bool = False,
                     committer_db: object | None = None) -> Iterator[int]:
    """Start the SMTP (or LMTP) listener of `app` on a free port; yields the port."""
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, object] = {}

    async def start() -> None:
        committer = GroupCommitter(committer_db or app.db, app.blobs)  # type: ignore[arg-type]
        listener = ListenerComponent(app, "127.0.0.1:0", committer, lmtp=lmtp)
        await listener.start()
        holder.update(listener=listener, committer=committer)

    def run() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10)
    listener = holder["listener"]
    assert isinstance(listener, ListenerComponent)
    try:
        yield listener.bound_port
    finally:
        async def stop() -> None:
            await listener.stop()
            await holder["committer"].close()  # type: ignore[attr-defined]

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def lmtp_transaction(port: int, sender: str, recipients: list[str], raw: bytes) -> list[str]:
    """A raw LMTP dialogue (smtplib reads only one reply after DATA); the replies to DATA."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        reader = sock.makefile("rb")

        def reply() -> str:
            lines = []
            while True:
                line = reader.readline().decode()
                lines.append(line.rstrip("\r\n"))
                if line[3:4] != "-":
                    return "\n".join(lines)

        def command(text: str) -> str:
            sock.sendall(text.encode() + b"\r\n")
            return reply()

        reply()                                     # greeting
        assert command("LHLO test").startswith("250")
        assert command(f"MAIL FROM:<{sender}>").startswith("250")
        for recipient in recipients:
            assert command(f"RCPT TO:<{recipient}>").startswith("250")
        assert command("DATA").startswith("354")
        body = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        body = b"\r\n".join(b"." + line if line.startswith(b".") else line
                            for line in body.split(b"\r\n"))
        sock.sendall(body + (b"" if body.endswith(b"\r\n") else b"\r\n") + b".\r\n")
        replies = [reply() for _ in recipients]
        command("QUIT")
        return replies


def customer_mail(subject: str = "Drucker defekt", sender: str = "max@acme.example",
                  to: str = "incident@support.example.com", body: str = "Er druckt nicht.\n",
                  **headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = f"Max Muster <{sender}>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = headers.pop("message_id", f"<{abs(hash(subject + body))}@acme>")
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return message


def send(port: int, message: EmailMessage, sender: str = "max@acme.example",
         recipients: tuple[str, ...] = ("incident@support.example.com",)) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.send_message(message, from_addr=sender, to_addrs=list(recipients))
