"""Commands staff write at the top of a mail. Pure.

In: the new text of a staff member's mail (above the quoted history). Out: a `StaffMail`:
the commands, the errors, and the text without the command block. Never raises.

The command block is every line at the top of the mail that begins with `#` (blank lines
between them are fine); the text starts at the first other line. Commands, one per line:
  #state <new|open|pending|closed>    #priority <1-5 or a name>
  #internal                           #assign <staff address or name>
  #files [DAYS]                       (a file-exchange link mailed to the customer)
  #cc add <address>                   #cc remove <address>   (the ticket's participants)
  #take                               (assign the ticket to the staff member who writes)
Fail safe: a line of the block that is not a valid command (`#internl`, `#state done`,
`# state closed`) becomes a `CommandError`, and the pipeline then carries out nothing of the
mail: no command runs, nothing goes to the customer, the mail is kept as an internal note
and the staff member is told what was wrong. `#internal` anywhere in the text, not only in
the block, keeps the text from the customer too.

Whether the sender may command at all is decided before this runs, by routing (the staff
reply address, a configured staff From, `routing/authentication.py`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.utils import parseaddr

from gateway.errors import InvalidInput
from gateway.tickets.ticket import State, parse_priority, parse_state

_BLOCK_LINE = re.compile(r"^\s*#")
_COMMAND = re.compile(r"^\s*#([a-zA-Z]+)\b\s*(.*?)\s*$")
_INTERNAL = re.compile(r"#internal\b", re.IGNORECASE)
KNOWN = ("state", "priority", "internal", "assign", "files", "cc", "take")
MAX_FILES_DAYS = 365


@dataclass(frozen=True)
class Command:
    name: str                # state | priority | internal | assign | files | cc | take
    value: str               # normalised: a State value, "1".."5", "", the assignee, days,
                             # "add ADDRESS" / "remove ADDRESS"


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
        """`#internal` in the block, or anywhere in the text: nothing goes to the customer."""
        return any(c.name == "internal" for c in self.commands) \
            or _INTERNAL.search(self.text) is not None


def parse_commands(text: str) -> StaffMail:
    """Split the command block at the top from the answer text."""
    lines = text.splitlines()
    commands: list[Command] = []
    errors: list[CommandError] = []
    position = 0
    for position, line in enumerate(lines):   # noqa: B007 - position is used after the loop
        if not line.strip():
            continue
        if not _BLOCK_LINE.match(line):
            break
        match = _COMMAND.match(line)
        if not match:
            errors.append(CommandError(line.strip(), "not a command: a command is # and its "
                                       "name, e.g. #state closed; known: " + _known()))
            continue
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
    if name == "take":
        if argument:
            raise InvalidInput("#take takes no value; to assign someone else: #assign ADDRESS")
        return Command("take", "")
    if name == "files":
        if argument and not (argument.isdigit() and 1 <= int(argument) <= MAX_FILES_DAYS):
            raise InvalidInput(f"#files takes the days the link is valid, 1 to "
                               f"{MAX_FILES_DAYS} (or nothing for the configured default)")
        return Command("files", str(int(argument)) if argument else "")
    if name == "cc":
        return Command("cc", _cc(argument))
    raise InvalidInput(f"unknown command #{name}; known: {_known()}")


def _cc(argument: str) -> str:
    """`add ADDR` / `remove ADDR` (an address in <> is fine), normalised to "add ADDR"."""
    action, _, rest = argument.partition(" ")
    address = parseaddr(rest.strip())[1]
    if action.lower() not in ("add", "remove") or "@" not in address or " " in address:
        raise InvalidInput("#cc takes add or remove and one mail address, e.g. "
                           "#cc add max@example.com")
    return f"{action.lower()} {address}"


def _known() -> str:
    return ", ".join(f"#{k}" for k in KNOWN)


def closing_state(commands: Sequence[Command]) -> State | None:
    """The last #state command's state, if any."""
    states = [State(c.value) for c in commands if c.name == "state"]
    return states[-1] if states else None
