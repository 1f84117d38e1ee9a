"""Commands staff write at the top of a mail, and whether to trust the sender. Pure.

Commands, one per line before any other text (blank lines between them are fine):
  #state <new|open|pending|closed>    #priority <1-5 or a name>
  #internal                           #assign <staff address or name>
  #files [DAYS]                       (a file-exchange link mailed to the customer)
The command lines are removed from the text; everything after them is the answer. A line
that looks like a command but cannot be understood becomes a `CommandError` (the staff member
is told why) and the rest of the mail still counts.

Trust (RFC 8601): commands are executed only for mail from a configured staff address, and,
when the config names the border MTA's authserv-id, only if that MTA's
`Authentication-Results` header shows `dmarc=pass` for the From domain or `dkim=pass` with
`header.d` of that domain. Only a header carrying our authserv-id counts: headers from
elsewhere can be forged by anyone (§5: the border MTA removes forged ones with its id).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from gateway.errors import InvalidInput
from gateway.tickets.ticket import State, parse_priority, parse_state

_COMMAND = re.compile(r"^\s*#([a-zA-Z]+)\b\s*(.*?)\s*$")
KNOWN = ("state", "priority", "internal", "assign", "files")
MAX_FILES_DAYS = 365


@dataclass(frozen=True)
class Command:
    name: str                # state | priority | internal | assign | files
    value: str               # normalised: a State value, "1".."5", "", the assignee, days


@dataclass(frozen=True)
class CommandError:
    line: str
    reason: str


@dataclass(frozen=True)
class StaffMail:
    commands: tuple[Command, ...]
    errors: tuple[CommandError, ...]
    text: str                # the mail's text without the command lines

    @property
    def internal(self) -> bool:
        return any(c.name == "internal" for c in self.commands)


def parse_commands(text: str) -> StaffMail:
    """Split leading command lines from the answer text."""
    lines = text.splitlines()
    commands: list[Command] = []
    errors: list[CommandError] = []
    position = 0
    for position, line in enumerate(lines):   # noqa: B007 - position is used after the loop
        if not line.strip():
            continue
        match = _COMMAND.match(line)
        if not match:
            break
        name, argument = match.group(1).lower(), match.group(2)
        try:
            commands.append(_command(name, argument))
        except InvalidInput as exc:
            errors.append(CommandError(line.strip(), str(exc)))
    else:
        position = len(lines)
    rest = "\n".join(lines[position:]).strip("\n")
    return StaffMail(tuple(commands), tuple(errors), rest)


def _command(name: str, argument: str) -> Command:
    if name == "state":
        return Command("state", parse_state(argument).value)
    if name == "priority":
        return Command("priority", str(parse_priority(argument)))
    if name == "internal":
        if argument:
            raise InvalidInput("#internal takes no value")
        return Command("internal", "")
    if name == "assign":
        if not argument:
            raise InvalidInput("#assign needs a staff address or name")
        return Command("assign", argument)
    if name == "files":
        if argument and not (argument.isdigit() and 1 <= int(argument) <= MAX_FILES_DAYS):
            raise InvalidInput(f"#files takes the days the link is valid, 1 to "
                               f"{MAX_FILES_DAYS} (or nothing for the configured default)")
        return Command("files", str(int(argument)) if argument else "")
    raise InvalidInput(f"unknown command #{name}; known: "
                       + ", ".join(f"#{k}" for k in KNOWN))


def closing_state(commands: Sequence[Command]) -> State | None:
    """The last #state command's state, if any."""
    states = [State(c.value) for c in commands if c.name == "state"]
    return states[-1] if states else None


# -- trust --------------------------------------------------------------------------------------

_RESULT = re.compile(r"\b(dmarc|dkim)\s*=\s*(\w+)([^;]*)", re.IGNORECASE)
_PROPERTY = re.compile(r"\bheader\.(from|d|i)\s*=\s*\"?@?([^\s;\"]+)", re.IGNORECASE)


def authenticated(results_headers: Sequence[str], sender: str, authserv_id: str) -> bool:
    """True when our border MTA (authserv-id) vouches for the sender's domain."""
    domain = sender.rpartition("@")[2].lower()
    if not domain:
        return False
    for header in results_headers:
        server = re.sub(r"\([^)]*\)", " ", header).strip().split(";", 1)[0].split()
        if not server or server[0].lower() != authserv_id.lower():
            continue                          # another server's header: not trusted
        for method, result, properties in _RESULT.findall(header):
            if result.lower() != "pass":
                continue
            for key, value in _PROPERTY.findall(properties):
                value = value.lower().rstrip(".")
                if value.rpartition("@")[2] == domain and (
                        (method.lower() == "dmarc" and key.lower() == "from")
                        or (method.lower() == "dkim" and key.lower() in ("d", "i"))):
                    return True
        return False                          # only the topmost header of ours counts
    return False
