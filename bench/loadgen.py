"""The load generator: N concurrent senders posting signed deliveries over raw HTTP/1.1.

    python -m bench.loadgen --port 8000 --plan plan.jsonl --concurrency 16

Runs in its own process. It signs every delivery of the plan, opens one keep-alive connection per
sender, prints `ready` and waits for a line on stdin (so the caller can read the servers' CPU
counters right before the load starts), then sends the whole plan and prints one JSON line: the
count, wall time, latency percentiles and HTTP status counts. A request is built once as bytes
and a response is read with one `readuntil` and one `readexactly`, so the sender stays cheap
next to the servers it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from bench.deliveries import read_plan
from clerk_sync.testing import TEST_SECRET, sign

PATH = "/webhooks/clerk"


def build_requests(plan_path: Path, host: str, port: int, secret: str) -> list[bytes]:
    """Every delivery of the plan as a complete signed HTTP/1.1 request."""
    now = int(time.time())
    requests = []
    for delivery in read_plan(plan_path):
        signature = sign(delivery.body, secret=secret, msg_id=delivery.svix_id, timestamp=now)
        head = (
            f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(delivery.body)}\r\n"
            f"svix-id: {delivery.svix_id}\r\nsvix-timestamp: {now}\r\n"
            f"svix-signature: {signature}\r\n\r\n"
        )
        requests.append(head.encode() + delivery.body)
    return requests


class Sender:
    """One keep-alive connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def send(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None or self.writer.is_closing():
            await self.connect()
        assert self.reader is not None
        assert self.writer is not None
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lowered = head.lower()
        start = lowered.find(b"\r\ncontent-length:")
        if start < 0:
            raise RuntimeError(f"response without content-length: {head!r}")
        end = lowered.index(b"\r\n", start + 2)
        body = await self.reader.readexactly(int(head[start + 17 : end]))
        if b"\r\nconnection: close" in lowered:
            self.writer.close()
        return status, body

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def _drive(
    sender: Sender, requests: Iterator[bytes], latencies: list[float], statuses: Counter[int]
) -> list[str]:
    problems = []
    for request in requests:
        started = time.perf_counter()
        try:
            status, body = await sender.send(request)
        except (OSError, asyncio.IncompleteReadError, ValueError, RuntimeError) as error:
            statuses[0] += 1
            problems.append(f"{type(error).__name__}: {error}")
            await sender.close()
            sender.writer = None
            continue
        latencies.append(time.perf_counter() - started)
        statuses[status] += 1
        if status >= 300 and len(problems) < 3:
            problems.append(f"{status}: {body[:200].decode(errors='replace')}")
    return problems


def percentile(sorted_values: list[float], share: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(share * len(sorted_values) + 0.5))
    return sorted_values[min(rank, len(sorted_values)) - 1]


async def run(host: str, port: int, requests: list[bytes], concurrency: int) -> dict[str, object]:
    senders = [Sender(host, port) for _ in range(concurrency)]
    await asyncio.gather(*(s.connect() for s in senders))
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    shared = iter(requests)
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    started = time.perf_counter()
    problems = await asyncio.gather(*(_drive(s, shared, latencies, statuses) for s in senders))
    wall = time.perf_counter() - started
    await asyncio.gather(*(s.close() for s in senders))
    latencies.sort()
    return {
        "count": len(requests),
        "concurrency": concurrency,
        "wall_s": wall,
        "rate": len(requests) / wall,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p95_ms": percentile(latencies, 0.95) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan"),
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "problems": [p for group in problems for p in group][:5],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="clerk-sync benchmark load generator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--plan", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--secret", default=TEST_SECRET)
    args = parser.parse_args(argv)
    requests = build_requests(args.plan, args.host, args.port, args.secret)
    result = asyncio.run(run(args.host, args.port, requests, args.concurrency))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
