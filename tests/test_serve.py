"""`clerk-sync serve` as users run it: embedded store, a real HTTP server, data kept on disk."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from pymongo import MongoClient

from clerk_sync.testing import TEST_SECRET, sample, signed_headers
from tests.processes import ServerProcess, await_outcomes


def test_serve_with_embedded_store_processes_sample_and_keeps_data(tmp_path: Path) -> None:
    """The signed sample user.created is stored, recorded processed, and survives a restart."""
    env = {
        "CLERK_WEBHOOK_SIGNING_SECRET": TEST_SECRET,
        "CLERK_SYNC_DATA_DIR": str(tmp_path / "data"),
        "MONGODB_URL": "",
    }
    body = sample("user.created")
    headers = signed_headers(body)
    with ServerProcess(env, cwd=tmp_path, dev=True) as server:
        answer = httpx.post(server.url + "/webhooks/clerk", content=body, headers=headers)
        store = next(e for e in server.events() if e.get("event") == "embedded_store")
        client: MongoClient[dict[str, object]] = MongoClient(store["url"])
        user = client.clerk_sync.users.find_one({"clerk_id": json.loads(body)["data"]["id"]})
        await_outcomes(client.clerk_sync, [headers["svix-id"]])
        event = client.clerk_sync.webhook_events.find_one({"_id": headers["svix-id"]})
        client.close()
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "processed", "svix_id": headers["svix-id"]}
    assert "development" in store["note"]
    assert user is not None
    assert user["email"] == "maya.okafor@northwind.example"
    assert event is not None
    assert event["status"] == "processed"
    assert (tmp_path / "data" / "clerk-sync.sqlite3").exists()

    with ServerProcess({**env, "CLERK_SYNC_DEV": "1"}, cwd=tmp_path) as again:
        repeat = httpx.post(again.url + "/webhooks/clerk", content=body, headers=headers)
    assert repeat.json() == {"status": "duplicate", "svix_id": headers["svix-id"]}


def test_webhook_answer_has_content_length_and_json(tmp_path: Path, mongodb_url: str) -> None:
    """Over real HTTP the webhook answer is JSON with a Content-Length (no chunked encoding)."""
    env = {"CLERK_WEBHOOK_SIGNING_SECRET": TEST_SECRET, "MONGODB_URL": mongodb_url}
    with ServerProcess(env, cwd=tmp_path) as server:
        answer = httpx.post(server.url + "/webhooks/clerk", content=b"{}", headers={})
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/json"
    assert int(answer.headers["content-length"]) == len(answer.content)
    assert "transfer-encoding" not in answer.headers
