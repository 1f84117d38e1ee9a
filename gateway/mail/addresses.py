"""Mail address helpers (pure).

RFC 5321 §2.4: the local part of an address may be case-sensitive, the domain is not. So an
address is matched by `address_key`: the local part exactly as written, the domain lower-cased.
`addresses_in` finds the bare addresses in header values (for matching, not display: the
parser's `MailAddress`es keep the display names); it never raises.

`parse_address_list` reads an address header (From, Reply-To, To, ...) the way the parser
hands it on: without recursion (the stdlib's `getaddresses` recurses per nested comment or
group, so a header of thousands of "(" raised `RecursionError`), in linear time, and it says
when the value is not a clean RFC 5322 address list. `AddressList.single` is the one sender
of a From, Sender or Reply-To, or None when the header does not name exactly one address
unambiguously: two addresses, an unbalanced quote, comment or "<", an address-like display
name outside the angle brackets, two "@"s. Whoever reads such a header (an MTA, a mail
client, the stdlib of another Python version) may see a different address in it than we do
(CVE-2023-27043: `max@acme.example"@evil.example` read as max@acme.example), so it credits
nobody.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.utils import getaddresses, parseaddr
from typing import NamedTuple

from gateway.errors import InvalidInput

ADDRESS = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def address_key(address: str) -> str:
    """The form addresses are compared in: `Local@Example.COM` -> `Local@example.com`."""
    local, at, domain = address.strip().rpartition("@")
    if not at:
        return address.strip()
    return f"{local}@{domain.lower()}"


def validate_address(address: str) -> str:
    """A bare `local@domain` address, stripped; `InvalidInput` otherwise."""
    value = address.strip()
    _, parsed = parseaddr(value)
    local, at, domain = value.rpartition("@")
    if (parsed != value or not at or not local or not domain or "." not in domain
            or any(c.isspace() for c in value)):
        raise InvalidInput(f"{address!r} is not a valid mail address")
    return value


def addresses_in(values: Iterable[str]) -> tuple[str, ...]:
    """The `local@domain` addresses in address header values, in order, without repeats."""
    result: list[str] = []
    for value in values:
        for address in _addresses_of(str(value)):
            if address not in result:
                result.append(address)
    return tuple(result)


@functools.lru_cache(maxsize=512)
def _addresses_of(value: str) -> tuple[str, ...]:
    """One header value's addresses. Cached: the loop rules read the same From, Sender and
    To values several times per mail, and `getaddresses` costs ~20-60 µs each time."""
    try:
        pairs = getaddresses([value])
    except Exception:
        pairs = [("", m) for m in ADDRESS.findall(value[:2000])]
    return tuple(a for a in (address.strip() for _, address in pairs) if "@" in a)


# ---------------------------------------------------------------- address headers


@dataclass(frozen=True)
class HeaderMailbox:
    """One mailbox of an address header, as written: `display` still RFC 2047 encoded
    (quotes removed), `address` the addr-spec without angle brackets ("" for `<>`)."""

    display: str
    address: str


@dataclass(frozen=True)
class AddressList:
    """An address header read: its mailboxes (best effort) and what makes it not a clean
    RFC 5322 address list ("" when it is one)."""

    mailboxes: tuple[HeaderMailbox, ...]
    problem: str = ""

    def single(self) -> HeaderMailbox | None:
        """The one mailbox, when the header names exactly one address and nothing about it
        is ambiguous; else None (see the module's docstring)."""
        if self.problem or len(self.mailboxes) != 1 or not self.mailboxes[0].address:
            return None
        return self.mailboxes[0]

    def why_not_single(self) -> str:
        """Why `single` is None, for the parser's defects ("" when it is not)."""
        if self.problem:
            return self.problem
        if not self.mailboxes:
            return "no address"
        if len(self.mailboxes) > 1:
            return f"{len(self.mailboxes)} addresses"
        return "" if self.mailboxes[0].address else "no address"


class _Token(NamedTuple):
    kind: str          # atom | quoted | comment | literal | one of the specials <>@,:;
    text: str          # atoms and literals as written; quoted strings and comments unquoted
    spaced: bool       # whitespace (or a comment) before it


# a run of whitespace, a special, or an atom (dots included: "Max M. Muster", "a.b@c.d")
_SIMPLE = re.compile(r'([ \t\r\n]+)|([<>@,:;])|[^ \t\r\n()<>@,:;"\[\]]+')
_UNQUOTE = re.compile(r"\\(.)", re.DOTALL)


def parse_address_list(value: str) -> AddressList:
    """Read an address header's value (unfolded; RFC 2047 words are left as they are).
    Never raises; linear in the length of `value`; no recursion."""
    tokens, problem = _tokenize(value)
    elements, split_problem = _elements(tokens)
    problem = problem or split_problem
    mailboxes: list[HeaderMailbox] = []
    for element in elements:
        mailbox, element_problem = _mailbox(element)
        problem = problem or element_problem
        if mailbox is not None:
            mailboxes.append(mailbox)
    return AddressList(tuple(mailboxes), problem)


def _tokenize(value: str) -> tuple[list[_Token], str]:
    tokens: list[_Token] = []
    problem = ""
    spaced = False
    position, end = 0, len(value)
    simple = _SIMPLE.match
    while position < end:
        match = simple(value, position)
        if match is not None:
            position = match.end()
            if match.group(1) is not None:
                spaced = True
                continue
            kind = match.group(2) or "atom"
            tokens.append(_Token(kind, match.group(), spaced))
            spaced = False
            continue
        char = value[position]
        if char == "(":
            close = _comment_end(value, position)
            if close < 0:
                problem = problem or "an unclosed comment"
                close = end
            tokens.append(_Token("comment", _unquote(value[position + 1:close]), spaced))
            position, spaced = close + 1, True
            continue
        if char == '"':
            close = _quote_end(value, position)
            if close < 0:
                problem = problem or "an unclosed quote"
                close = end
            tokens.append(_Token("quoted", _unquote(value[position + 1:close]), spaced))
        elif char == "[":
            close = value.find("]", position)
            if close < 0:
                problem = problem or "an unclosed ["
                close = end
            tokens.append(_Token("literal", value[position:close + 1], spaced))
        else:                                         # ")" or "]" without its opening
            problem = problem or f"an unbalanced {char!r}"
            close = position
        position, spaced = close + 1, False
    return tokens, problem


def _comment_end(value: str, start: int) -> int:
    """The index of the ")" that closes the comment opened at `start` (comments nest:
    counted, not recursed into), or -1."""
    depth, position = 0, start
    while position < len(value):
        char = value[position]
        if char == "\\":
            position += 2
            continue
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return position
        position += 1
    return -1


def _quote_end(value: str, start: int) -> int:
    position = start + 1
    while position < len(value):
        char = value[position]
        if char == "\\":
            position += 2
            continue
        if char == '"':
            return position
        position += 1
    return -1


def _unquote(text: str) -> str:
    return _UNQUOTE.sub(r"\1", text) if "\\" in text else text


def _elements(tokens: list[_Token]) -> tuple[list[list[_Token]], str]:
    """The mailboxes' token lists: split at the commas, group names and ";" dropped. A
    group inside a group is not RFC 5322 (only counted, never recursed into)."""
    elements: list[list[_Token]] = []
    current: list[_Token] = []
    problem = ""
    groups = 0
    in_angle = False
    for token in tokens:
        kind = token.kind
        if in_angle:
            current.append(token)
            in_angle = kind != ">"
            if kind == "<":
                problem = problem or "a \"<\" inside <...>"
        elif kind == "<":
            current.append(token)
            in_angle = True
        elif kind == ":":
            if groups:
                problem = problem or "a group inside a group"
            elif any(t.kind not in ("atom", "quoted", "comment") for t in current):
                problem = problem or "a group name that is not a phrase"
            groups += 1
            current = []
        elif kind == ";":
            if groups:
                groups -= 1
            else:
                problem = problem or "a \";\" outside a group"
            elements.append(current)
            current = []
        elif kind == ",":
            elements.append(current)
            current = []
        else:
            current.append(token)
    if in_angle:
        problem = problem or "an unclosed \"<\""
    if groups:
        problem = problem or "an unclosed group"
    elements.append(current)
    return [e for e in elements if any(t.kind != "comment" for t in e)], problem


def _mailbox(element: list[_Token]) -> tuple[HeaderMailbox | None, str]:
    """One mailbox: `phrase <addr-spec>` or `addr-spec (comment)`; and what is wrong with
    it ("" when nothing)."""
    words = [t for t in element if t.kind != "comment"]
    comment = next((t.text for t in element if t.kind == "comment"), "")
    kinds = [t.kind for t in words]
    if "<" in kinds:
        opening = kinds.index("<")
        closing = kinds.index(">", opening) if ">" in kinds[opening:] else len(words)
        phrase, inner, after = words[:opening], words[opening + 1:closing], words[closing + 1:]
        address, problem = _addr_spec(_without_route(inner))
        display = _phrase(phrase)
        if after:
            problem = problem or "text after \">\""
        # "max@acme.example <max@acme.example>" names one address; "a@x <b@y>" names two
        if any(t.kind not in ("atom", "quoted") for t in phrase) \
                and "".join(t.text for t in phrase).lower() != address.lower():
            problem = problem or f"{display!r} before <{address}> is not a name"
        return HeaderMailbox(display, address), problem
    if ">" in kinds:
        return HeaderMailbox("", _phrase(words)), "a \">\" without \"<\""
    if "@" not in kinds:
        # a word that is no address ("xxx", "Muller" of an unquoted "Muller, Max <...>")
        return HeaderMailbox("", _phrase(words)), "text that is not an address"
    at = kinds.index("@")
    start = at - 1 if at and words[at - 1].kind in ("atom", "quoted") else at
    while start > 0 and words[start - 1].kind in ("atom", "quoted") \
            and not words[start].spaced:          # obs-local-part: "a"."b" or a."b"
        start -= 1
    if any(t.kind not in ("atom", "quoted") for t in words[:start]):
        return HeaderMailbox("", _phrase(words)), "text before the address that is not a name"
    # "John Doe john@example.com" (no angle brackets): the words before it are the name;
    # but "max . muster@x" is one address to other readers (RFC 5322 §4.4 obs-local-part)
    address, problem = _addr_spec(words[start:])
    if start and (words[start - 1].text.endswith(".") or words[start].text.startswith(".")):
        problem = problem or "a space inside the address"
    return HeaderMailbox(_phrase(words[:start]) or comment, address), problem


def _without_route(inner: list[_Token]) -> list[_Token]:
    """RFC 5322 §4.4 obs-angle-addr: `<@relay1,@relay2:user@example.com>`."""
    colons = [i for i, t in enumerate(inner) if t.kind == ":"]
    return inner[colons[-1] + 1:] if colons else inner


def _addr_spec(words: list[_Token]) -> tuple[str, str]:
    """`local@domain` from its tokens, and what is wrong with it ("" when nothing)."""
    if not words:
        return "", ""                                 # <>: the null address
    ats = [i for i, t in enumerate(words) if t.kind == "@"]
    local, domain = (words[:ats[0]], words[ats[0] + 1:]) if ats else (words, [])
    text = "".join(_local_word(t) for t in local) + ("@" if ats else "") + "".join(
        t.text for t in domain)
    if len(ats) != 1:
        return text, "no \"@\" in the address" if not ats else "several \"@\" in one address"
    if not local or any(t.kind not in ("atom", "quoted") for t in local):
        return text, "no local part before \"@\""
    if any(t.spaced for t in local[1:]) or any(t.spaced for t in domain[1:]):
        return text, "a space inside the address"
    if any(t.kind == "quoted" and "@" in t.text for t in local):
        return text, "an \"@\" inside the quoted local part"
    if len(domain) != 1 or domain[0].kind not in ("atom", "literal"):
        return text, "no domain after \"@\""
    return text, ""


def _local_word(token: _Token) -> str:
    if token.kind != "quoted":
        return token.text
    return '"' + token.text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _phrase(words: list[_Token]) -> str:
    """A display name: its words, quoted ones unquoted, a space where the header had one."""
    return "".join((" " if t.spaced and i else "") + t.text
                   for i, t in enumerate(t for t in words if t.kind != "comment"))
