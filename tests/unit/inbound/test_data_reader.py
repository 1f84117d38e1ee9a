"""Undoing SMTP transparency on a DATA stream that arrives in arbitrary pieces."""

from __future__ import annotations

import random

import pytest

from gateway.inbound.data_reader import DataDecoder


def on_the_wire(message: bytes) -> bytes:
    """What a client sends for `message` (CRLF lines): leading dots doubled, then ".\\r\\n"."""
    lines = message.split(b"\r\n")[:-1]
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n"
                    for line in lines) + b".\r\n"


def decode(wire: bytes, sizes: list[int]) -> bytes:
    decoder, out, pos = DataDecoder(), b"", 0
    for size in sizes:
        out += decoder.feed(wire[pos:pos + size])
        pos += size
        if decoder.finished:
            return out
    raise AssertionError("the end marker was not recognised")


@pytest.mark.parametrize("message", [
    b"", b"a\r\n", b".\r\n", b"..\r\n", b"...x\r\n", b"a\r\n.\r\nb\r\n", b"\r\n\r\n",
    b"x.\r\n.y\r\n", b"\r\r\n.\r\n", b"line with a lone \r in it\r\n",
])
def test_every_split_of_the_stream_gives_back_the_message(message: bytes) -> None:
    wire = on_the_wire(message) + b"MAIL FROM:<next@example.org>\r\n"
    for cut in range(1, len(wire)):
        assert decode(wire, [cut, len(wire)]) == message
    assert decode(wire, [1] * len(wire)) == message


def test_random_messages_in_random_pieces() -> None:
    pieces = [b".", b"\r", b"\n", b"\r\n", b"a", b"..", b".\r\n", b"\r\n.", b"xxxxx"]
    for seed in range(3000):
        choice = random.Random(seed)
        text = b"".join(choice.choice(pieces) for _ in range(choice.randint(0, 30)))
        message = text.replace(b"\r\n", b"\n").replace(b"\r", b"").replace(b"\n", b"\r\n")
        if message and not message.endswith(b"\r\n"):
            message += b"\r\n"
        wire = on_the_wire(message)
        sizes = [choice.randint(1, 7) for _ in range(len(wire))]
        assert decode(wire, sizes) == message, seed


def test_nothing_after_the_end_marker_belongs_to_the_message() -> None:
    decoder = DataDecoder()
    assert decoder.feed(b"a\r\n.\r\nQUIT\r\n") == b"a\r\n"
    assert decoder.finished
    assert decoder.feed(b"more") == b""
