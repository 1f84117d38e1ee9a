"""Streaming multipart uploads for the file exchange: a request body in, `StagedFile`s out.

The body is fed, as it arrives, to python-multipart's streaming `MultipartParser`; every
file part goes straight into a staging file in the blob store's local spool
(`BlobStore.staging_file`; beside the blobs on disk, uploaded on `adopt` with S3) while its
SHA-256 is computed. Nothing is spooled anywhere else (no SpooledTemporaryFile, no
copy): a few batches of the body (`BATCH`, 1 MiB; `PIPELINE` + 2 at most) are in memory,
whatever the upload's size. The parser runs in a worker thread, one batch per hop, so disk
writes never block the event loop, and the body is read on while a batch is written.

Guarantees:
- The limits (bytes per file, files and bytes left in the area) are enforced *while*
  streaming: the part that crosses one raises `UploadRefused` at once.
- On any refusal, malformed or incomplete body, client disconnect or error, every staging
  file of the request is deleted before the exception leaves `receive_files`; after a
  refusal the rest of the body is read and dropped (up to `drain_limit` bytes), so the
  browser receives the answer page instead of a reset connection.
- File names are cleaned by `mail.attachment_names.clean_filename`, as a mail's are (last
  path component, no control, bidi or zero-width characters, "file" when nothing is left);
  the client's content type is kept only if it is well-formed (else
  application/octet-stream).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
from anyio.streams.memory import MemoryObjectSendStream
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from gateway.files.exchange import StagedFile, UploadRefused
from gateway.mail.attachment_names import clean_filename
from gateway.store.blobs import BlobStore

BATCH = 1024 * 1024            # bytes of the body handed to the parser per thread hop
PIPELINE = 2                   # batches queued between reading and parsing
MAX_FIELD = 64 * 1024          # a non-file form field (the form has none; tolerate a few)
MAX_PARTS = 1000
_MEDIA_TYPE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}")


@dataclass(frozen=True)
class UploadLimits:
    max_file_size: int
    files_left: int
    bytes_left: int
    max_files: int              # the configured limits, for the refusal message
    max_total_size: int
    field: str = "files"


def clean_content_type(raw: bytes | None) -> str:
    value, _ = parse_options_header(raw or b"")
    text = value.decode("latin-1").strip().lower()
    return text if _MEDIA_TYPE.fullmatch(text) else "application/octet-stream"


@dataclass
class _FilePart:
    handle: IO[bytes]
    filename: str
    content_type: str
    digest: Any = field(default_factory=hashlib.sha256)
    size: int = 0


class _Receiver:
    """python-multipart's callbacks: headers per part, data into staging files."""

    def __init__(self, blobs: BlobStore, limits: UploadLimits, boundary: bytes) -> None:
        self.blobs, self.limits = blobs, limits
        self.staged: list[StagedFile] = []
        self.finished = False
        self.received = 0                  # file bytes of this request
        self.parts = 0
        self._headers: dict[bytes, bytes] = {}
        self._field, self._value = b"", b""
        self._file: _FilePart | None = None
        self._other = 0                    # bytes of the current non-file part, or -1: skip
        self.parser = MultipartParser(boundary, {
            "on_part_begin": self._part_begin, "on_header_field": self._header_field,
            "on_header_value": self._header_value, "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished, "on_part_data": self._data,
            "on_part_end": self._part_end, "on_end": self._end})

    def write(self, data: bytes) -> None:
        try:
            self.parser.write(data)
        except MultipartParseError:
            raise UploadRefused("incomplete") from None

    # -- callbacks ---------------------------------------------------------------------------

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise UploadRefused("incomplete")
        self._headers, self._file, self._other = {}, None, 0

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._field.strip().lower()] = self._value.strip()
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        _, params = parse_options_header(self._headers.get(b"content-disposition", b"")
                                         .decode("latin-1"))
        if params.get(b"name", b"").decode("latin-1") != self.limits.field \
                or b"filename" not in params:
            return                          # another field: counted, dropped
        if not params[b"filename"]:
            self._other = -1                # an empty file input (no file chosen)
            return
        if len(self.staged) + 1 > self.limits.files_left:
            raise UploadRefused("too-many-files", self.limits.max_files)
        self._file = _FilePart(self.blobs.staging_file(), clean_filename(
            params[b"filename"].decode("utf-8", "replace"), "file"),
                               clean_content_type(self._headers.get(b"content-type")))

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._file is None:
            if self._other >= 0:
                self._other += end - start
                if self._other > MAX_FIELD:
                    raise UploadRefused("incomplete")
            return
        part, chunk = self._file, memoryview(data)[start:end]
        part.size += len(chunk)
        self.received += len(chunk)
        if part.size > self.limits.max_file_size:
            raise UploadRefused("file-too-large", self.limits.max_file_size)
        if self.received > self.limits.bytes_left:
            raise UploadRefused("area-full", self.limits.max_total_size)
        part.digest.update(chunk)
        part.handle.write(chunk)

    def _part_end(self) -> None:
        part, self._file = self._file, None
        if part is None:
            return
        part.handle.flush()
        os.fsync(part.handle.fileno())     # durable before any row refers to it
        part.handle.close()
        self.staged.append(StagedFile(Path(part.handle.name), part.filename, part.content_type,
                                      part.size, part.digest.hexdigest()))

    def _end(self) -> None:
        self.finished = True

    # -- clean-up ------------------------------------------------------------------------------

    def discard(self) -> None:
        """Delete every staging file of this request (the open one included)."""
        if self._file is not None:
            self._file.handle.close()
            Path(self._file.handle.name).unlink(missing_ok=True)
            self._file = None
        discard_staged(self.staged)
        self.staged = []


def discard_staged(staged: list[StagedFile]) -> None:
    for item in staged:
        with contextlib.suppress(OSError):
            item.path.unlink(missing_ok=True)


def boundary_of(request: Request) -> bytes | None:
    kind, params = parse_options_header(request.headers.get("content-type", ""))
    boundary = params.get(b"boundary")
    return boundary if kind == b"multipart/form-data" and boundary else None


async def receive_files(request: Request, blobs: BlobStore, limits: UploadLimits, *,
                        drain_limit: int) -> list[StagedFile]:
    """Stream the request's file parts named `limits.field` into staging files.

    Two tasks overlap the network and the disk: this one reads the body and hands 1 MiB
    batches through a queue of `PIPELINE` batches to the parser task, which runs
    `_Receiver.write` in a worker thread. (Read and write in turn, the socket is idle
    while a batch is written: uvicorn stops reading 64 KiB ahead of the app.)"""
    boundary = boundary_of(request)
    if boundary is None:
        raise UploadRefused("incomplete")
    receiver = _Receiver(blobs, limits, boundary)
    refused: list[UploadRefused] = []
    sender, batches = anyio.create_memory_object_stream[bytes](max_buffer_size=PIPELINE)

    async def parse() -> None:
        async with batches:
            async for data in batches:
                if refused:
                    continue                   # the reader stops sending soon
                try:
                    await run_in_threadpool(receiver.write, data)
                except UploadRefused as exc:
                    refused.append(exc)
                    await run_in_threadpool(receiver.discard)

    try:
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(parse)
                async with sender:
                    await _read_body(request, sender, refused, drain_limit)
        except BaseExceptionGroup as group_error:   # one task failed: raise what it raised
            raise group_error.exceptions[0] from None
        if refused:
            raise refused[0]
        if not receiver.finished:
            raise UploadRefused("incomplete")
        return receiver.staged
    except BaseException:
        receiver.discard()                 # also on disconnect and cancellation
        raise


async def _read_body(request: Request, sender: MemoryObjectSendStream[bytes],
                     refused: list[UploadRefused], drain_limit: int) -> None:
    """The body in batches of `BATCH` bytes; after a refusal, read and drop the rest (up
    to `drain_limit`) so the browser receives the answer page, not a reset connection."""
    batch: list[bytes] = []
    pending = drained = 0
    async for chunk in request.stream():
        if refused:
            drained += len(chunk)
            if drained > drain_limit:
                return
            continue
        batch.append(chunk)
        pending += len(chunk)
        if pending >= BATCH:
            await sender.send(b"".join(batch))
            batch, pending = [], 0
    if batch and not refused:
        await sender.send(b"".join(batch))
