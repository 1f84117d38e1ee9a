"""Non-standard bounces, read from their prose (qmail, Exim, Gmail, Yahoo, Lotus Notes,
old Sendmail, Zoho, ... — everything that is not an RFC 3464 `message/delivery-status`).

In: the report's own text (`loop_mail.report_texts`), the addresses known not to be the bounced
recipient (the sender of the original, the bounce's own From/To), the bounce's Subject and
its `X-Failed-Recipients` header (Exim, Gmail). Out: `BouncedRecipient`s with the RFC 3463
status found next to each address, and `looks_like_bounce` for the decision itself.

Pure, bounded, never raises on odd text: an address that cannot be found is left out.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence

from gateway.classify.bounces import (
    BOUNCE_CODE,
    REPLY_CODE,
    BouncedRecipient,
    reply_code_status,
    short,
)
from gateway.mail.addresses import ADDRESS, addresses_in
from gateway.mail.originals import split_quoted_original

MAX_RECIPIENTS = 50
WINDOW = 6           # lines after an address searched for its status code
MAX_LINE = 1000      # longer lines name no recipient; skipping them keeps the regexes linear

# Subjects MTAs give their bounces; anchored at the start, so "Fwd: Undeliverable" from a
# person forwarding a bounce is not one.
BOUNCE_SUBJECT = re.compile(
    r"^\W*(?:undeliver|undelivered mail|delivery status notification|delivery notification|"
    r"delivery failure|delivery failed|failed delivery|failure notice|mail delivery failed|"
    r"mail delivery failure|returned mail|mail system error|message delivery has failed|"
    r"delivery report|non[- ]?delivery|nondeliverable|unzustellbar|nicht zustellbar|"
    r"warning: could not send|mail failure|message not delivered|could not deliver|"
    r"delivery has failed|notice: mail delivery status|delivery status|"
    r"undelivered|returned to sender|non remis|mail could not be delivered|"
    r"sorry, your message could not be delivered|there was an error sending your mail)",
    re.I)

BOUNCE_PHRASE = re.compile(
    r"could not be delivered|couldn't be delivered|undeliverable|was not delivered|"
    r"delivery to the following recipients? (?:failed|has been delayed)|"
    r"permanent(?:ly)? (?:error|failure|fatal)|failed permanently|user unknown|unknown user|"
    r"no such user|mailbox (?:is )?(?:full|unavailable)|returning message to sender|"
    r"wasn't able to deliver|unable to deliver|delivery (?:has )?failed|"
    r"following address\(?e?s?\)? (?:failed|had permanent)|mail delivery software|"
    r"remote host said|message could not|could not deliver|diagnostic-code|final-recipient|"
    r"invalid (?:final delivery )?user|account (?:is|has been) disabled|"
    r"nicht zugestellt|unzustellbar|konnte nicht zugestellt|"
    r"delivery status notification|mail delivery failed",
    re.I)

# Given up after retrying (RFC 3463 4.4.7, delivery time expired): not the address's fault.
EXPIRED_PHRASE = re.compile(
    r"retry timeout exceeded|have been failing for a long time|could not be delivered within|"
    r"in the queue too long|(?:delivery|message|queue) (?:time )?(?:has )?expired|"
    r"expired after|cannot send message for \d+ days|giving up on", re.I)

DELAY_PHRASE = re.compile(
    r"\bdelayed\b|\bdelay\)|will (?:be )?retr(?:y|ied)|will continue to (?:try|attempt)|"
    r"still trying|warning message only|not yet been delivered|could not send message for "
    r"past|delivery delay|no action is required|verzögert", re.I)

# Lines whose addresses are never the bounced recipient.
_NOT_RECIPIENT_LINE = re.compile(
    r"^\W*(?:>>>\s*)?(?:mail from|from|sender|reply-to|return-path|message-id|in-reply-to|"
    r"references|received|x-original-message-id)\s*:|envelope-(?:from|sender)|"
    r"^\W*a message (?:that )?(?:you )?sent by", re.I)
_RCPT_LINE = re.compile(r"rcpt to\s*:|(?:final|original)-recipient\s*:", re.I)
_ALONE = re.compile(r"^[\s*\-•>\"'(]*<?([^\s<>\"']+@[^\s<>\"']+?)>?[\s\"')]*(?::|\.\.\.)?\s*$")
# "<a@b>: host said ...", "a@b Invalid Address", sendmail's "550 5.1.1 <a@b>... User unknown"
_LEADING = re.compile(r"^[\s*\-•>\"'(]*(?:[45]\d\d[ -](?:[45]\.\d\.\d{1,3}\s+)?)?"
                      r"<?([^\s<>\"':,]+@[A-Za-z0-9.-]+)>?(?:[:\s,]|\.\.\.)")
# "could not be delivered to: <a@b>", "error delivering your mail to <a@b>"
_DELIVERED_TO = re.compile(r"(?:deliver\w*|undeliverable|sent|send)\s+(?:[\w-]+\s+){0,3}to:?"
                           r"\s*<?([^\s<>\"':,]+@[A-Za-z0-9.-]+[A-Za-z0-9])", re.I)
_ERROR_WORDS = re.compile(
    r"unknown|invalid|fail|full|reject|refuse|denied|not exist|disabled|no such|"
    r"unavailable|undeliver|could not|quota|blocked|suspend|unrouteable|does not|error", re.I)
_DAEMON = re.compile(r"^(?:mailer-?daemon|postmaster|post_master|mail\.delivery\.system)$", re.I)


def looks_like_bounce(subject: str, texts: Sequence[str], failed_header: str) -> str:
    """The evidence that a mail is a bounce ("" if none): X-Failed-Recipients, a bounce
    subject, a bounce phrase or a 4.x.x/5.x.x status code in the report text."""
    if failed_header.strip():
        return "X-Failed-Recipients"
    if BOUNCE_SUBJECT.search(subject or ""):
        return f"subject {_quote(subject)}"
    for text in texts:
        report, _ = split_quoted_original(text)
        match = BOUNCE_PHRASE.search(report)
        if match:
            return f"text {_quote(match.group(0))}"
        code = BOUNCE_CODE.search(report)
        if code:
            return f"status {code.group(0)}"
    return ""


def has_status_code(texts: Sequence[str]) -> bool:
    """A 4.x.x/5.x.x RFC 3463 code in the report's own words: an MTA's transcript."""
    return any(BOUNCE_CODE.search(split_quoted_original(t)[0]) for t in texts)


def read_bounce_text(texts: Sequence[str], *, not_recipients: Collection[str],
                     subject: str = "", failed_header: str = "") -> list[BouncedRecipient]:
    """The recipients a prose bounce names, each with the status code found next to it."""
    excluded = {a.lower() for a in not_recipients}
    reports = [split_quoted_original(t)[0] for t in texts]
    lines = [line for report in reports for line in report.splitlines()
             if len(line) <= MAX_LINE]
    delayed = bool(DELAY_PHRASE.search(subject or "")) or any(
        DELAY_PHRASE.search(r) for r in reports)

    listed = [a for a in addresses_in([failed_header]) if a.lower() not in excluded]
    if not listed:
        listed = _candidates(lines, texts, excluded)
    joined = "\n".join(reports)
    fallback = _first_code(joined) or ("4.4.7" if EXPIRED_PHRASE.search(joined) else "")
    result: list[BouncedRecipient] = []
    for address in listed[:MAX_RECIPIENTS]:
        status, diagnostic = _status_near(address, lines)
        status = status or fallback
        action = "delayed" if delayed and not status.startswith("5") else "failed"
        result.append(BouncedRecipient(address, status, action, diagnostic))
    return result


def _candidates(lines: list[str], texts: Sequence[str], excluded: set[str]) -> list[str]:
    """Addresses ranked: named as a recipient (alone on a line, leading a line, RCPT TO),
    else next to an error or status code, else anywhere in the report."""
    strong: list[str] = []
    medium: list[str] = []
    weak: list[str] = []
    for text in texts:       # RCPT TO lines count wherever they are (Verizon/James quote them)
        for line in text.splitlines():
            if len(line) <= MAX_LINE and _RCPT_LINE.search(line):
                strong.extend(ADDRESS.findall(line.split(":", 1)[-1]))
    for line in lines:
        if _NOT_RECIPIENT_LINE.search(line):
            continue
        found = ADDRESS.findall(line)
        if not found:
            continue
        alone = _ALONE.match(line) or _LEADING.match(line) or _DELIVERED_TO.search(line)
        if alone:
            strong.append(alone.group(1))
        elif _ERROR_WORDS.search(line) or BOUNCE_CODE.search(line) or REPLY_CODE.search(line):
            medium.extend(found)
        else:
            weak.extend(found)
    for group in (strong, medium, weak):
        chosen = _clean(group, excluded, keep_daemons=group is strong)
        if chosen:
            return chosen
    return []


def _clean(addresses: list[str], excluded: set[str], *, keep_daemons: bool) -> list[str]:
    result: dict[str, str] = {}
    for raw in addresses:
        address = raw.strip(".,;:()[]<>\"'")
        local, at, domain = address.rpartition("@")
        if not at or not local or "." not in domain or address.lower() in excluded:
            continue
        if not keep_daemons and _DAEMON.match(local):
            continue
        result.setdefault(address.lower(), address)
    return list(result.values())


def _status_near(address: str, lines: list[str]) -> tuple[str, str]:
    """The first status code on a line naming the address or in the few lines after it."""
    lowered = address.lower()
    for index, line in enumerate(lines):
        if lowered not in line.lower():
            continue
        for offset, nearby in enumerate(lines[index: index + WINDOW + 1]):
            if offset and _names_other_address(nearby, lowered):
                break
            status = _first_code(nearby)
            if status:
                return status, short(nearby)
    return "", ""


def _names_other_address(line: str, address: str) -> bool:
    found = [a.lower() for a in ADDRESS.findall(line)]
    return bool(found) and address not in found and bool(_ALONE.match(line)
                                                         or _LEADING.match(line))


def _first_code(text: str) -> str:
    """The first 4.x.x/5.x.x code in `text`, else the class of an SMTP reply code, else ""."""
    code = BOUNCE_CODE.search(text)
    return code.group(0) if code else reply_code_status(text)


def _quote(text: str) -> str:
    return repr(short(text, 60))
