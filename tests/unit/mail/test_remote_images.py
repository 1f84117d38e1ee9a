"""Remote images (tracking pixels) leave a mail's HTML when it is parsed, and are counted;
inline `cid:` images stay. Real corpus mails and crafted edge cases."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from gateway.mail.message import ParsedMessage
from gateway.mail.mime_html import sanitize_html
from gateway.mail.parse import parse_message
from tests.conftest import CORPUS

# every corpus mail whose HTML has remote images, with how many; the others lose none
# (sisimai's dos/ and mac/ folders hold the same mails with other line ends: left out)
REMOTE_IN_CORPUS = {
    "flanker/bounce/office365.eml": 1, "sisimai/maildir/bsd/rhost-aol-01.eml": 20,
    "spamscope-mail-parser/mail_test_13": 11, "spamscope-mail-parser/mail_test_5": 1,
    "spamscope-mail-parser/mail_test_6": 1, "spamscope-mail-parser/mail_test_8": 5,
}
# and mails with inline images, which keep every one of them
CID_IN_CORPUS = {"spamscope-mail-parser/mail_test_10": 3, "spamscope-mail-parser/mail_test_2": 2,
                 "spamscope-mail-parser/mail_test_5": 5, "spamscope-mail-parser/mail_test_6": 4}


def parsed(path: str) -> ParsedMessage:
    return parse_message((CORPUS / path).read_bytes(), received=datetime(2026, 1, 1, tzinfo=UTC))


def test_the_whole_corpus() -> None:
    found = {}
    for path in sorted(CORPUS.rglob("*")):
        if not path.is_file() or path.suffix in (".tsv", ".md", ".json", ".yml") \
                or path.parent.name == "LICENSES" or "mac" in path.parts or "dos" in path.parts:
            continue
        name = str(path.relative_to(CORPUS))
        try:
            message = parsed(name)
        except ValueError:
            continue
        if message.remote_images:
            found[name] = message.remote_images
        html = (message.body_html or "").lower()
        assert "src=\"http" not in html and "src=\"//" not in html, name
    assert found == REMOTE_IN_CORPUS


@pytest.mark.parametrize("path, images", sorted(CID_IN_CORPUS.items()))
def test_inline_images_of_real_mails_stay(path: str, images: int) -> None:
    message = parsed(path)
    html = message.body_html or ""
    assert html.count('src="cid:') == images
    ids = {a.content_id for a in message.attachments}
    for start in range(images):
        cid = html.split('src="cid:')[start + 1].split('"', 1)[0]
        assert cid in ids


@pytest.mark.parametrize("html, kept, remote", [
    ('<img src="https://t.example/p.gif" width="1">', "", 1),
    ('<IMG SRC="HTTP://t.example/p.gif">', "", 1),
    ('<img src="  //t.example/p.gif">', "", 1),
    ('<img src="image001.png">', "", 0),                      # relative: points nowhere
    ('<img src="data:image/png;base64,AAAA">', "", 0),
    ('<img src="cid:logo@x" alt="Logo">', '<img src="cid:logo@x" alt="Logo">', 0),
    ('<p>a<img alt="x&gt;y" src="https://t.example/p">b</p>', "<p>ab</p>", 1),
    ('<img alt="a><script>alert(1)</script>" src="https://t.example">', "", 1),
    ('<a href="https://example.com/">Link</a>',
     '<a href="https://example.com/" rel="noopener noreferrer nofollow">Link</a>', 0),
])
def test_edge_cases(html: str, kept: str, remote: int) -> None:
    result = sanitize_html(html)
    assert (result.html, result.remote_images) == (kept, remote)
