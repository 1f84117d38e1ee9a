"""Benchmark: file-exchange upload throughput through a real `ticketgw serve`, against
writing the same bytes to disk in the same run; and the server's peak memory for a 1 GiB
upload.

What is measured, per backend (SQLite in a temp dir, PostgreSQL in a fresh database):
- upload:   POST /files/{token} of one file of `--size-mb` MiB as multipart/form-data, the
            body generated on the fly and streamed by httpx (1 MiB chunks, Content-Length
            given) to `python -m gateway serve` on 127.0.0.1; the clock runs from the first
            byte until the `303` is back, i.e. until the file is hashed, fsynced, renamed into
            the blob store, its rows, ticket article and staff notification are committed.
- disk:     the same bytes (generated the same way) written in 1 MiB chunks to a new file in
            the same data directory, then fsync — the baseline: what the disk allows.
Rounds alternate (disk, upload, disk, upload, …); the table shows medians in MiB/s and their
ratio, and the CPU time per MiB of the serve process (utime + stime from /proc) and of this
client (generating and sending the body). Every upload goes into a new area of the same
ticket; the script checks that the database holds every file with the size and SHA-256 the
client computed.

Memory (`--memory-mb`, default 1024): on the same server after the rounds, VmHWM of the
serve process is reset (`echo 5 > /proc/PID/clear_refs`), one file of that size is uploaded,
and the peak growth over the RSS before is reported.

Run:  .venv/bin/python bench/files.py [--backends sqlite,postgresql] [--size-mb 256]
      [--rounds 5] [--memory-mb 1024] [--pg-admin-url URL]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scratch import scratch_database  # bench/scratch.py: the run's own database

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
MIB = 1024 * 1024
BOUNDARY = "tgw-bench-files-4d1b"
TICKETGW = [sys.executable, "-m", "gateway"]
CONFIG = """\
[database]
url = "{url}"

[storage]
data_dir = "data"

[inbound]
smtp = ""

[outbound]
transport = "maildir:outbox"

[web]
listen = "127.0.0.1:{port}"
base_url = "http://127.0.0.1:{port}"

[files]
max_file_size = "2047MB"
max_total_size = "4GB"

[[queue]]
id = "servicedesk"
from = "Service Desk <support@support.example.com>"
staff = ["anna.agent@example.com"]

[[template]]
id = "incident"
group = "incident"
name = {{ de = "Störung", en = "Incident" }}
addresses = ["incident@support.example.com"]
queue = "servicedesk"
"""


def content(size: int, seed: int, digest: Any | None = None) -> Iterator[bytes]:
    """`size` bytes in 1 MiB chunks, different per seed and chunk (cheap to make)."""
    block = os.urandom(MIB)
    sent, counter = 0, 0
    while sent < size:
        piece = (seed.to_bytes(4, "big") + counter.to_bytes(8, "big") + block[12:])[
            :min(MIB, size - sent)]
        if digest is not None:
            digest.update(piece)
        counter += 1
        sent += len(piece)
        yield piece


def multipart(size: int, seed: int, digest: Any) -> tuple[int, Iterator[bytes]]:
    head = (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"files\"; "
            f"filename=\"bench-{seed}.bin\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()

    def body() -> Iterator[bytes]:
        yield head
        yield from content(size, seed, digest)
        yield tail

    return len(head) + size + len(tail), body()


def write_disk(path: Path, size: int, seed: int) -> float:
    began = time.perf_counter()
    with path.open("wb") as handle:
        for chunk in content(size, seed):
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    elapsed = time.perf_counter() - began
    path.unlink()
    return elapsed


def ticketgw(config: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TICKETGW_")}
    done = subprocess.run([*TICKETGW, "--config", str(config), *args], cwd=config.parent,
                          env=env, capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise SystemExit(f"ticketgw {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def new_area(config: Path, ticket: str, base: str) -> str:
    return ticketgw(config, "files", "new", "--ticket", ticket).strip().removeprefix(base)


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (/proc/PID/stat), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def upload(client: httpx.Client, path: str, size: int, seed: int) -> tuple[float, str]:
    digest = hashlib.sha256()
    length, body = multipart(size, seed, digest)
    began = time.perf_counter()
    response = client.post(path, content=body, headers={
        "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        "Content-Length": str(length)})
    elapsed = time.perf_counter() - began
    if response.status_code != 303:
        raise SystemExit(f"upload failed: {response.status_code} {response.text[:300]}")
    return elapsed, digest.hexdigest()


def memory(pid: int) -> dict[str, int]:
    status = Path(f"/proc/{pid}/status").read_text()
    return {k: int(v) * 1024 for k, v in re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", status,
                                                      re.M)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bench_backend(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    size = args.size_mb * MIB
    with tempfile.TemporaryDirectory(prefix="tgw-bench-files-", dir=args.tmp) as tmp_name, \
            scratch_database(backend, Path(tmp_name), args.pg_admin_url) as url:
        tmp = Path(tmp_name)
        port = free_port()
        config = tmp / "ticketgw.toml"
        config.write_text(CONFIG.format(url=url, port=port), encoding="utf-8")
        ticketgw(config, "db", "upgrade")
        ticketgw(config, "customer", "add", "bench", "bench@example.com")
        mail = tmp / "mail.eml"
        mail.write_bytes(b"From: bench@example.com\r\nTo: incident@support.example.com\r\n"
                         b"Subject: Bench files\r\nMessage-ID: <bench@example.com>\r\n\r\nx\r\n")
        ticketgw(config, "ingest", str(mail), "-r", "incident@support.example.com")
        ticket = json.loads(ticketgw(config, "ticket", "list", "--json"))[0]["number"]
        base = f"http://127.0.0.1:{port}"
        server = subprocess.Popen([*TICKETGW, "--config", str(config), "serve"], cwd=tmp,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        disk_dir = tmp / "data" / "disk-baseline"
        disk_dir.mkdir(parents=True)
        expected: dict[str, int] = {}
        try:
            with httpx.Client(base_url=base, timeout=900) as client:
                deadline = time.monotonic() + 60
                while True:
                    try:
                        client.get("/healthz")
                        break
                    except httpx.TransportError:
                        if time.monotonic() > deadline:
                            raise SystemExit("serve did not start") from None
                        time.sleep(0.2)
                _, sha = upload(client, new_area(config, ticket, base), 4 * MIB, 0)  # warm-up
                expected[sha] = 4 * MIB
                disk, sent, server_cpu, client_cpu = [], [], [], []
                for round_ in range(1, args.rounds + 1):
                    disk.append(size / MIB / write_disk(disk_dir / f"r{round_}", size, round_))
                    path = new_area(config, ticket, base)    # outside the clock
                    cpu = cpu_seconds(server.pid), time.process_time()
                    elapsed, sha = upload(client, path, size, 1000 + round_)
                    server_cpu.append((cpu_seconds(server.pid) - cpu[0]) / (size / MIB))
                    client_cpu.append((time.process_time() - cpu[1]) / (size / MIB))
                    expected[sha] = size
                    sent.append(size / MIB / elapsed)
                    print(f"{backend} round {round_}: disk {disk[-1]:.0f} MiB/s, "
                          f"upload {sent[-1]:.0f} MiB/s, CPU ms/MiB server "
                          f"{server_cpu[-1] * 1000:.1f} client {client_cpu[-1] * 1000:.1f}",
                          file=sys.stderr)
                peak = None
                if args.memory_mb:
                    path = new_area(config, ticket, base)
                    before = memory(server.pid)
                    reset = _reset_peak(server.pid)
                    _, sha = upload(client, path, args.memory_mb * MIB, 9999)
                    expected[sha] = args.memory_mb * MIB
                    after = memory(server.pid)
                    peak = (before["VmRSS"], after["VmHWM"], reset)
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        stored = json.loads(ticketgw(config, "files", "list", "--json"))
        found = {f["sha256"]: f["size"] for area in stored for f in area["files"]}
        if found != expected:
            raise SystemExit(f"{backend}: the database does not hold exactly the uploads")
    return {"disk": statistics.median(disk), "upload": statistics.median(sent), "peak": peak,
            "cpu": (statistics.median(server_cpu) * 1000, statistics.median(client_cpu) * 1000)}


def _reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--size-mb", type=int, default=256, help="MiB per upload (default 256)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--memory-mb", type=int, default=1024,
                        help="size of the upload whose peak memory is measured; 0 = skip")
    parser.add_argument("--tmp", default=None, help="where the temp dir goes (a real disk)")
    parser.add_argument("--pg-admin-url", default=PG_ADMIN_URL)
    args = parser.parse_args()
    print(f"| backend | disk MiB/s | upload MiB/s | ratio | CPU ms/MiB server / client "
          f"| serve RSS before | peak | growth |"
          f"  ({args.size_mb} MiB per upload, {args.rounds} rounds, medians; memory: one "
          f"{args.memory_mb} MiB upload)")
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    for backend in args.backends.split(","):
        result = bench_backend(backend.strip(), args)
        ratio = result["upload"] / result["disk"]
        memory_cells = "- | - | -"
        if result["peak"]:
            rss, peak, reset = result["peak"]
            memory_cells = (f"{rss / MIB:.0f} MiB | {peak / MIB:.0f} MiB | "
                            f"+{(peak - rss) / MIB:.0f} MiB" + ("" if reset else " (no reset)"))
        server_cpu, client_cpu = result["cpu"]
        print(f"| {backend} | {result['disk']:.0f} | {result['upload']:.0f} | {ratio:.2f} | "
              f"{server_cpu:.1f} / {client_cpu:.1f} | {memory_cells} |", flush=True)


if __name__ == "__main__":
    main()
