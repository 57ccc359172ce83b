"""Limits on a real server: body size without buffering, header size, slow clients."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clerk_sync.cli.server import server_config
from tests.processes import ServerProcess
from tests.reliability.conftest import server_env

pytestmark = pytest.mark.reliability

MAX_BODY = 64 * 1024
OVERSIZE = 64 * 1024 * 1024  # 1024 x the limit
CHUNK = 64 * 1024
READ_TIMEOUT = server_config("127.0.0.1", 0, 1).read_timeout


def rss_kib(pid: int) -> dict[str, int]:
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0])
    return found


def status_of(response: bytes) -> int | None:
    parts = response.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and response.startswith(b"HTTP/") else None


def connect(port: int, timeout: float) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    return sock


def read_answer(sock: socket.socket) -> bytes:
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            part = sock.recv(65536)
            if not part:
                break
            data += part
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def send_chunked_oversize(port: int) -> tuple[int | None, int]:
    """Stream a chunked body (no Content-Length) far over the limit; return status, bytes sent."""
    sock = connect(port, 30)
    # plausible headers (a current timestamp), so that only the body's size can refuse it
    head = (
        b"POST /webhooks/clerk HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
        b"content-type: application/json\r\nsvix-id: msg_x\r\n"
        + f"svix-timestamp: {int(time.time())}\r\n".encode()
        + b"svix-signature: v1,AAAA\r\n\r\n"
    )
    chunk = f"{CHUNK:x}\r\n".encode() + b"a" * CHUNK + b"\r\n"
    sent = 0
    with sock:
        sock.sendall(head)
        try:
            while sent < OVERSIZE:
                sock.sendall(chunk)
                sent += CHUNK
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return status_of(read_answer(sock)), sent


def stalled_client(port: int, result: dict[str, Any]) -> None:
    """Send half a request and stall; record when (whether) the server hangs up."""
    sock = connect(port, READ_TIMEOUT * 2 + 10)
    started = time.monotonic()
    with sock:
        sock.sendall(b"POST /webhooks/clerk HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100\r\n")
        answer = read_answer(sock)
    result["seconds"] = time.monotonic() - started
    result["status"] = status_of(answer)


@pytest.fixture(scope="module")
def limited(plugin_dir: Path, mongodb_url: str) -> Iterator[ServerProcess]:
    env = server_env(plugin_dir, mongodb_url, "reliability_limits")
    env["CLERK_SYNC_MAX_BODY_BYTES"] = str(MAX_BODY)
    with ServerProcess(env) as server:
        yield server


def test_a_64k_header_is_refused_and_a_stalled_client_is_disconnected(
    limited: ServerProcess, figures: dict[str, Any]
) -> None:
    assert READ_TIMEOUT is not None
    assert READ_TIMEOUT <= 35, "the slow-client check would take too long; see docs/reliability.md"
    stall: dict[str, Any] = {}
    staller = threading.Thread(target=stalled_client, args=(limited.port, stall), daemon=True)
    staller.start()
    sock = connect(limited.port, 10)
    with sock:
        started = time.monotonic()
        sock.sendall(
            b"POST /webhooks/clerk HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\n"
            + b"svix-signature: v1,"
            + b"A" * 64 * 1024
            + b"\r\n\r\n{}"
        )
        header_status = status_of(read_answer(sock))
        header_seconds = time.monotonic() - started
    staller.join(READ_TIMEOUT + 15)
    figures["limits_headers_and_slow_clients"] = {
        "header_64k_status": header_status,
        "header_64k_seconds": round(header_seconds, 2),
        "read_timeout_configured": READ_TIMEOUT,
        "keep_alive_timeout_configured": server_config("127.0.0.1", 0, 1).keep_alive_timeout,
        "stalled_client_disconnected_after_seconds": round(stall.get("seconds", -1), 1),
        "stalled_client_status": stall.get("status"),
    }
    assert header_status in (400, 431), header_status
    assert header_seconds < 5
    assert not staller.is_alive(), "a stalled client was never disconnected"
    assert stall["seconds"] <= READ_TIMEOUT + 5


def test_an_oversize_chunked_body_is_refused_without_buffering_it(
    limited: ServerProcess, figures: dict[str, Any]
) -> None:
    assert limited.process is not None
    before = rss_kib(limited.process.pid)
    started = time.monotonic()
    body_status, sent = send_chunked_oversize(limited.port)
    took = time.monotonic() - started
    after = rss_kib(limited.process.pid)
    growth = after["VmHWM"] - before["VmRSS"]
    figures["limits_body"] = {
        "max_body_bytes": MAX_BODY,
        "chunked_body_bytes_offered": OVERSIZE,
        "chunked_body_bytes_accepted_by_server_before_answer": sent,
        "oversize_status": body_status,
        "seconds_to_answer": round(took, 2),
        "rss_before_kib": before["VmRSS"],
        "peak_rss_after_kib": after["VmHWM"],
        "peak_rss_growth_kib": growth,
    }
    assert body_status == 413, body_status
    assert growth < OVERSIZE // 1024 // 4, f"peak RSS grew by {growth} KiB"
