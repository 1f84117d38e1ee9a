"""The blob store in S3-compatible object storage (AWS S3, MinIO, Ceph RGW, SeaweedFS, ...):
objects `<prefix>ab/cd/<sha256>` in one bucket, so several hosts share the files.

In: a bucket, a key prefix and a boto3 S3 client (credentials come from boto3's own chain:
AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile or an instance role; never from our
configuration file). The key layout is the local directory's, so `aws s3 sync
DATA_DIR/attachments s3://bucket/prefix --exclude '.incoming-*'` moves an installation over.

Guarantees (beyond `blobs.BlobStore`'s):
- Incoming content is spooled to a local staging file while it is hashed (the key is the
  digest, known only at the end), then uploaded by boto3's managed transfer: one PUT for a
  small file, a multipart upload in `PART_SIZE` parts for a larger one. S3 makes an object
  visible only when its PUT or CompleteMultipartUpload succeeds, so a blob is complete
  under its key or absent; a failed multipart upload is aborted (one cut short by a crash
  is left to the bucket's lifecycle rule, see docs/admin.md). When the key exists already,
  nothing is uploaded.
- `adopt` returns only after the upload completed: the caller commits the referencing row
  afterwards.
- Memory stays flat: uploads read the staging file part by part (at most `CONCURRENCY`
  parts in flight), downloads stream the response body `CHUNK` by `CHUNK`.
- Every error of the client (unreachable endpoint, refused credentials, a 5xx) raises
  `BlobStoreError` (an `OSError`); a missing object raises `FileNotFoundError`.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from boto3.exceptions import S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.exceptions import BotoCoreError, ClientError

from gateway.store.blobs import CHUNK, BlobStore, BlobStoreError, check_digest

PART_SIZE = 8 * 1024 * 1024     # S3 wants at least 5 MiB per part but the last
CONCURRENCY = 4                 # parts uploaded at once (threads, each holding one part)
_MISSING = ("404", "NoSuchKey", "NotFound")


class S3BlobStore(BlobStore):
    durable_staging = False     # the upload makes a blob durable, not the staging file

    # `client`: boto3's S3 client (Any: its type lives in a stub package the runtime lacks)
    def __init__(self, client: Any, bucket: str, prefix: str, spool: Path) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.spool = spool
        self._transfer = TransferConfig(multipart_threshold=PART_SIZE,
                                        multipart_chunksize=PART_SIZE,
                                        max_concurrency=CONCURRENCY)

    def key_for(self, sha256: str) -> str:
        check_digest(sha256)
        return f"{self.prefix}{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def exists(self, sha256: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                return False
            raise _failed("look up", sha256, exc) from exc
        except BotoCoreError as exc:
            raise _failed("look up", sha256, exc) from exc
        return True

    def adopt(self, staged: Path, sha256: str) -> None:
        """Upload a complete staging file as blob `sha256` unless that object exists, then
        remove the staging file. Returns only once the object is stored."""
        if not self.exists(sha256):
            try:
                self.client.upload_file(str(staged), self.bucket, self.key_for(sha256),
                                        Config=self._transfer)
            except (BotoCoreError, ClientError, S3UploadFailedError) as exc:
                raise _failed("upload", sha256, exc) from exc
        staged.unlink()

    def open(self, sha256: str) -> BinaryIO:
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except ClientError as exc:
            if _error_code(exc) in _MISSING:
                raise FileNotFoundError(f"blob {sha256} is not in s3://{self.bucket}/"
                                        f"{self.prefix}") from None
            raise _failed("download", sha256, exc) from exc
        except BotoCoreError as exc:
            raise _failed("download", sha256, exc) from exc
        return io.BufferedReader(_BodyReader(response["Body"], sha256), buffer_size=CHUNK)

    def remove(self, sha256: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key_for(sha256))
        except (BotoCoreError, ClientError) as exc:
            raise _failed("delete", sha256, exc) from exc

    def stored_before(self, cutoff: datetime) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self.prefix)
        try:
            for page in pages:
                for item in page.get("Contents", []):
                    name = item["Key"][len(self.prefix):]
                    digest = name.rsplit("/", 1)[-1]
                    if name != f"{digest[:2]}/{digest[2:4]}/{digest}" or len(digest) != 64:
                        continue         # not one of ours (another tool's object)
                    if item["LastModified"] < cutoff:
                        yield digest
        except (BotoCoreError, ClientError) as exc:
            raise _failed("list", "*", exc) from exc


class _BodyReader(io.RawIOBase):
    """A response body as a raw binary stream: each read asks the socket for at most the
    buffer's size, so nothing beyond one chunk is held."""

    def __init__(self, body: Any, sha256: str) -> None:
        self._body = body
        self._sha256 = sha256

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._body.read(len(view))
        except (BotoCoreError, ClientError) as exc:
            raise _failed("download", self._sha256, exc) from exc
        view[:len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _failed(action: str, sha256: str, exc: Exception) -> BlobStoreError:
    return BlobStoreError(f"object storage: could not {action} blob {sha256}: "
                          f"{type(exc).__name__}: {exc}")
