"""Value types of the configuration: each checks one kind of value and says, in words an
admin understands, what is wrong with it. Used by `settings`; pure.
"""

from __future__ import annotations

import ipaddress
import re
from email.utils import parseaddr
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BeforeValidator

from gateway.tickets.business_time import parse_duration, parse_hours

_SIZE_UNITS = {"": 1, "B": 1, "K": 1024, "KB": 1024, "KIB": 1024, "M": 1024**2, "MB": 1024**2,
               "MIB": 1024**2, "G": 1024**3, "GB": 1024**3, "GIB": 1024**3}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_ID = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


def _parse_size(value: Any) -> int:
    """`50MB`, `512K`, `1GiB` or a plain number of bytes; units are binary (1 MB = 1024² B)."""
    if isinstance(value, bool):
        raise ValueError("must be a size such as 50MB")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError("must be positive")
        return value
    if not isinstance(value, str):
        raise ValueError("must be a size such as 50MB")
    match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", value)
    if not match or match.group(2).upper() not in _SIZE_UNITS:
        raise ValueError(f"{value!r} is not a size; write e.g. 50MB, 512KB or 1GB")
    size = int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]
    if size <= 0:
        raise ValueError("must be positive")
    return size


MAX_FILE_SIZE = 2**31 - 1   # integer columns hold file sizes on every database


def _check_file_size(value: int) -> int:
    if value > MAX_FILE_SIZE:
        raise ValueError(f"{value} bytes is too large: at most {MAX_FILE_SIZE} "
                         "(2 GiB less one byte)")
    return value


def _check_listen(value: str) -> str:
    """`host:port`, `[v6]:port`, or "" for off."""
    if value == "":
        return value
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{value!r} is not host:port (or \"\" to turn it off)")
    return value


def _check_network(value: str) -> str:
    """An IP address or a CIDR network: `192.0.2.7`, `10.0.0.0/8`, `::1/128`. Host bits
    may be set (`127.0.0.1/8` is 127.0.0.0/8), as in Postfix's mynetworks."""
    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or network "
                         "(e.g. \"192.0.2.7\", \"10.0.0.0/8\", \"::1/128\")") from None
    return value.strip()


def _check_env_name(value: str) -> str:
    if value and not _ENV_NAME.match(value):
        raise ValueError(f"{value!r} is not an environment variable name")
    return value


def _check_address(value: str) -> str:
    """A bare address `local@domain`."""
    if value.count("@") != 1 or value.startswith("@") or value.endswith("@") or " " in value:
        raise ValueError(f"{value!r} is not a mail address")
    return value


def _check_mailbox(value: str) -> str:
    """`Display Name <local@domain>` or a bare address."""
    _, address = parseaddr(value)
    try:
        if not address or "\r" in value or "\n" in value:
            raise ValueError
        _check_address(address)
    except ValueError:
        raise ValueError(f"{value!r} is not a mail address "
                         "(e.g. \"Service Desk <sd@example.com>\")") from None
    return value


def _check_id(value: str) -> str:
    if not _ID.match(value):
        raise ValueError(f"{value!r} is not an id: use lower-case letters, digits, '.', '_', '-'")
    return value


def _check_timezone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a known time zone (e.g. UTC, Europe/Berlin)") from None
    return value


def _check_transport(value: str) -> str:
    if value.startswith("maildir:") and len(value) > len("maildir:"):
        return value
    if re.fullmatch(r"smtps?://[^/:\s]+(:\d+)?/?", value):
        return value
    raise ValueError(f"{value!r} is not a transport: use \"maildir:PATH\" or \"smtp://host:port\"")


def _check_database_url(value: str) -> str:
    if not (value.startswith("sqlite:///") or value.startswith("postgresql")):
        raise ValueError(f"{value!r}: use sqlite:///PATH or postgresql+psycopg://USER@HOST/DB")
    if re.match(r"^[a-z+]+://[^/@]*:[^/@]*@", value):
        raise ValueError("contains a password: name an environment variable in password_env "
                         "instead")
    return value


def _check_ip_network(value: str) -> str:
    """An IP address or a network in CIDR form, written the way uvicorn compares it: a
    value it could not read would be trusted as a literal name and never match, silently."""
    text = value.strip()
    try:
        return str(ipaddress.ip_network(text) if "/" in text else ipaddress.ip_address(text))
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or network (e.g. \"127.0.0.1\", "
                         "\"10.0.0.0/8\", \"::1\")") from None
    raise ValueError(f"{value!r} has host bits set: write {str(network)!r}")


def _check_system_id(value: str) -> str:
    if not re.fullmatch(r"\d\d", value):
        raise ValueError(f"{value!r} must be exactly two digits, e.g. \"10\"")
    return value


def _check_base_url(value: str) -> str:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{value!r} must be an absolute http(s) URL")
    return value


def _check_blob_location(value: str) -> str:
    """"" (the local directory) or s3://BUCKET[/PREFIX], BUCKET as S3 names them (3-63
    characters: lower-case letters, digits, dots and hyphens)."""
    if value and not re.fullmatch(
            r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[A-Za-z0-9!_.*'()/-]*)?", value):
        raise ValueError(f"{value!r}: use s3://BUCKET/PREFIX for S3-compatible object "
                         "storage, or leave it empty for DATA_DIR/attachments")
    return value


def _check_s3_endpoint(value: str) -> str:
    if value and not re.fullmatch(r"https?://[^/\s]+/?", value):
        raise ValueError(f"{value!r}: use http(s)://HOST:PORT of the S3 server "
                         "(empty: AWS itself)")
    return value


def _check_imap_url(value: str) -> str:
    if not re.match(r"^imaps?://", value):
        raise ValueError(f"{value!r} must start with imap:// or imaps://")
    return value


def _check_after(value: str) -> str:
    if value not in ("seen", "delete") and not re.fullmatch(r"move:.+", value):
        raise ValueError(f"{value!r}: use \"seen\", \"delete\" or \"move:FOLDER\"")
    return value


def _check_duration(value: str) -> str:
    parse_duration(value)       # raises ValueError with the admin's words
    return value


def _check_hours(value: str) -> str:
    """Working hours (`mon-fri 08:00-17:00`), or "" for around the clock."""
    if value.strip():
        parse_hours(value)
    return value


def _check_priority(value: int) -> int:
    if not 1 <= value <= 5:
        raise ValueError(f"{value} is not a priority (1 to 5)")
    return value


Size = Annotated[int, BeforeValidator(_parse_size)]
Priority = Annotated[int, AfterValidator(_check_priority)]
Duration = Annotated[str, AfterValidator(_check_duration)]      # 30m, 4h, 1h 30m, 3d
BusinessHours = Annotated[str, AfterValidator(_check_hours)]
FileSize = Annotated[int, BeforeValidator(_parse_size), AfterValidator(_check_file_size)]
Listen = Annotated[str, AfterValidator(_check_listen)]
Network = Annotated[str, AfterValidator(_check_network)]
EnvName = Annotated[str, AfterValidator(_check_env_name)]
Address = Annotated[str, AfterValidator(_check_address)]
# one address or a list of them: `"lead@example.com"` or `["a@example.com", "b@example.com"]`
Addresses = Annotated[list[Address], BeforeValidator(lambda v: [v] if isinstance(v, str) else v)]
Mailbox = Annotated[str, AfterValidator(_check_mailbox)]
Identifier = Annotated[str, AfterValidator(_check_id)]
Language = Literal["de", "en"]
Labels = dict[Language, str]
DatabaseUrl = Annotated[str, AfterValidator(_check_database_url)]
SystemId = Annotated[str, AfterValidator(_check_system_id)]
TimeZone = Annotated[str, AfterValidator(_check_timezone)]
Transport = Annotated[str, AfterValidator(_check_transport)]
BaseUrl = Annotated[str, AfterValidator(_check_base_url)]
ImapUrl = Annotated[str, AfterValidator(_check_imap_url)]
BlobLocation = Annotated[str, AfterValidator(_check_blob_location)]
S3Endpoint = Annotated[str, AfterValidator(_check_s3_endpoint)]
AfterImport = Annotated[str, AfterValidator(_check_after)]
IpNetwork = Annotated[str, AfterValidator(_check_ip_network)]
