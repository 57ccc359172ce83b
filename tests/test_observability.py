"""Metrics, logs and probes as an SRE sees them: exact counters, redacted logs, honest readiness."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from clerk_sync import Context, Event, Plugin
from clerk_sync.observability.metrics import Metrics
from clerk_sync.storage.embedded import EmbeddedThread
from clerk_sync.testing import TEST_SECRET, envelope, new_svix_id, signed_headers
from tests.conftest import Runner
from tests.processes import free_port


def flaky_plugin() -> Plugin:
    plugin = Plugin("flaky")

    @plugin.on("user.created")
    async def handle(event: Event, ctx: Context[None]) -> None:
        if event.data.get("fail"):
            raise RuntimeError("told to fail")

    return plugin


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of one metric family as {sorted labels: value}."""
    found: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def user(n: int, **extra: Any) -> bytes:
    return envelope("user.created", {"id": f"user_{n}", "object": "user", **extra})


async def test_metrics_count_every_outcome_exactly(running: Runner) -> None:
    """After a known mix of deliveries each outcome counter has exactly the expected value."""
    async with running(plugins=[flaky_plugin()], clerk_sync_max_body_bytes=4096) as r:
        for n in range(3):
            await r.post(user(n))
        again = new_svix_id()
        for _ in range(3):  # one processed, two duplicates
            await r.post(user(9), msg_id=again)
        await r.post(envelope("waitlistEntry.created", {"id": "wle_1"}))
        await r.post(b"not json")
        await r.post(user(10, fail=True))
        await r.post(user(11), secret="whsec_" + "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==")
        await r.post(user(12), timestamp=int(time.time()) - 3600)
        await r.post(b"{" + b" " * 5000 + b"}")
        await r.post(user(13), headers={"content-type": "application/json"})
        text = (await (await r.client.get("/metrics")).get_data()).decode()
    counts = samples(text, "clerk_sync_webhooks_total")
    expected = {
        ("user.created", "processed"): 4,
        ("user.created", "duplicate"): 2,
        ("waitlistEntry.created", "ignored"): 1,
        ("unknown", "rejected"): 1,
        ("user.created", "failed"): 1,
        ("unknown", "invalid_signature"): 2,
        ("unknown", "too_large"): 1,
        ("unknown", "bad_request"): 1,
    }
    got = {(dict(k)["event_type"], dict(k)["outcome"]): v for k, v in counts.items() if v}
    assert got == expected
    failures = samples(text, "clerk_sync_handler_failures_total")
    assert failures == {(("event_type", "user.created"), ("plugin", "flaky")): 1.0}
    handler_runs = samples(text, "clerk_sync_handler_duration_seconds_count")
    assert handler_runs == {(("event_type", "user.created"), ("plugin", "flaky")): 5.0}
    assert (
        samples(text, "clerk_sync_webhook_duration_seconds_count")[
            (("event_type", "user.created"),)
        ]
        == 7.0
    )
    assert samples(text, "clerk_sync_delivery_lag_seconds_count")[()] == 8.0
    assert samples(text, "clerk_sync_mongodb_up")[()] == 1.0
    assert samples(text, "clerk_sync_plugin_info") == {
        (("plugin", "flaky"), ("status", "loaded"), ("version", "")): 1.0
    }


async def test_delivery_lag_counts_a_duplicate_whose_outcome_is_still_queued(
    running: Runner,
) -> None:
    """Lag is arrival minus envelope time for every verified arrival: a redelivery answered
    from the group commit's queue (outcome not yet written) counts like one read from MongoDB."""
    async with running(plugins=[flaky_plugin()], clerk_sync_outcome_flush_seconds=1) as r:
        await r.hold_outcomes()
        again = new_svix_id()
        answers = [(await r.post(user(1), msg_id=again, settle=False))[0] for _ in range(3)]
        text = (await (await r.client.get("/metrics")).get_data()).decode()
    assert answers == [200, 200, 200]
    counts = samples(text, "clerk_sync_webhooks_total")
    assert counts[(("event_type", "user.created"), ("outcome", "duplicate"))] == 2.0
    assert samples(text, "clerk_sync_delivery_lag_seconds_count")[()] == 3.0


async def test_unknown_event_type_is_counted_as_unknown(running: Runner) -> None:
    """Label values stay bounded: a type Clerk may add later is counted under `unknown`."""
    async with running(plugins=[flaky_plugin()]) as r:
        status, _ = await r.post(envelope("brandNew.thing", {"id": "x"}))
        text = (await (await r.client.get("/metrics")).get_data()).decode()
    assert status == 200
    counts = samples(text, "clerk_sync_webhooks_total")
    assert counts[(("event_type", "unknown"), ("outcome", "ignored"))] == 1.0


PERSONAL = {
    "email": "maya.private@northwind.example",
    "second": "ops+alerts@example.org",
    "phone": "+15555550123",
}


def chatty_plugin() -> Plugin:
    plugin = Plugin("chatty")

    @plugin.on("user.created")
    async def log_everything(event: Event, ctx: Context[None]) -> None:
        ctx.log.info("raw_event", payload=event.raw, data=event.data)
        ctx.log.info(f"user {PERSONAL['email']} phone {PERSONAL['phone']}")
        ctx.log.warning("settings", secret=ctx.app_settings.clerk_webhook_signing_secret)
        ctx.log.info("free text", note=f"signing with {TEST_SECRET} and {PERSONAL['second']}")

    return plugin


async def test_logs_never_contain_addresses_numbers_or_secrets(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    """Whatever a plugin logs, e-mail addresses, phone numbers and secrets are redacted."""
    data = {
        "id": "user_pii",
        "object": "user",
        "primary_email_address_id": "idn_1",
        "email_addresses": [{"id": "idn_1", "email_address": PERSONAL["email"]}],
        "phone_numbers": [{"id": "idn_2", "phone_number": PERSONAL["phone"]}],
        "first_name": "Maya",
    }
    body = envelope("user.created", data)
    headers = signed_headers(body)
    async with running(plugins=[chatty_plugin()]) as r:
        status, _ = await r.post(body, headers=headers)
    output = capsys.readouterr().out
    assert status == 200
    for value in (*PERSONAL.values(), TEST_SECRET, TEST_SECRET.removeprefix("whsec_")):
        assert value not in output
    assert headers["svix-signature"].removeprefix("v1,") not in output
    lines = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
    raw = next(line for line in lines if line["event"] == "raw_event")
    assert raw["svix_id"] == headers["svix-id"]
    assert raw["event_type"] == "user.created"
    assert raw["plugin"] == "chatty"
    assert raw["data"]["first_name"] == "Maya", "what is not personal stays readable"


async def test_one_summary_line_per_delivery(
    running: Runner, capsys: pytest.CaptureFixture[str]
) -> None:
    body = user(1, fail=True)
    headers = signed_headers(body)
    async with running(plugins=[flaky_plugin()]) as r:
        await r.post(body, headers=headers)
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    summaries = [x for x in lines if x["event"] == "webhook"]
    assert len(summaries) == 1
    summary = summaries[0]
    assert summary["svix_id"] == headers["svix-id"]
    assert summary["event_type"] == "user.created"
    assert summary["outcome"] == "failed"
    assert summary["handlers"] == {"flaky:handle": "failed"}
    assert isinstance(summary["duration_ms"], float)


async def test_readyz_follows_mongodb_down_and_back_without_restart(running: Runner) -> None:
    """/readyz answers 503 on the first probe after MongoDB goes away, 200 once it is back."""
    port = free_port()
    store = EmbeddedThread(port=port)
    url = store.start()
    try:
        async with running(mongodb_url=url) as r:
            assert (await r.client.get("/readyz")).status_code == 200
            store.stop()
            started = time.monotonic()
            down = await r.client.get("/readyz")
            waited = time.monotonic() - started
            body = await down.get_json()
            metrics = (await (await r.client.get("/metrics")).get_data()).decode()
            store = EmbeddedThread(port=port)
            store.start()
            for _ in range(60):
                back = await r.client.get("/readyz")
                if back.status_code == 200:
                    break
                await asyncio.sleep(0.25)
    finally:
        store.stop()
    assert down.status_code == 503
    assert waited < 2.0
    assert body["reasons"] == ["mongodb: no answer to ping within 1 s"]
    assert samples(metrics, "clerk_sync_mongodb_up")[()] == 0.0
    assert back.status_code == 200


async def test_livez_answers_while_mongodb_is_down(running: Runner) -> None:
    async with running(mongodb_url="mongodb://127.0.0.1:9/?directConnection=true") as r:
        live = await r.client.get("/livez")
        ready = await r.client.get("/readyz")
    assert (live.status_code, ready.status_code) == (200, 503)


def test_a_worker_starting_beside_another_skips_its_unsized_file_and_merges_the_rest(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With `--workers N` each worker creates its metrics file, and it exists at 0 bytes for a
    moment before it is sized; a worker building its metrics (or a scrape) in that moment
    merges the other files and leaves that one out, instead of failing on it."""
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "counter_424242.db").write_bytes(b"")  # created by a worker, not yet sized
    other = MmapedDict(str(tmp_path / "counter_515151.db"))
    key = mmap_key(
        "clerk_sync_webhooks",
        "clerk_sync_webhooks_total",
        ["event_type", "outcome"],
        ["user.created", "processed"],
        "Webhook deliveries by event type and outcome.",
    )
    other.write_value(key, 3.0, 0.0)
    other.close()

    text = Metrics().render()[0].decode()

    labels = (("event_type", "user.created"), ("outcome", "processed"))
    assert samples(text, "clerk_sync_webhooks_total") == {labels: 3.0}
