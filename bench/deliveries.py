"""The benchmark's deliveries: Clerk user.created / user.updated envelopes with 5 % duplicates.

A plan is deterministic for a seed, so both servers get exactly the same deliveries. Each new user
starts with user.created; later deliveries update users created at least `GAP` deliveries earlier
(fewer in a short plan) with a newer `updated_at`, so even 64 senders rarely race on one user; a
duplicate resends an earlier delivery (same `svix-id` and body, signed again) that has been
answered by then. Signing happens in the load generator, just before sending.
"""

from __future__ import annotations

import bisect
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from clerk_sync.testing import sample

DUPLICATE_SHARE = 0.05
UPDATE_SHARE = 0.5
GAP = 128


@dataclass(frozen=True, slots=True)
class Delivery:
    svix_id: str
    event_type: str
    body: bytes


class _Users:
    """The users of one plan: their Clerk objects and the position each was created at."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.created_at: list[int] = []
        self.objects: list[dict[str, Any]] = []
        self.templates = {
            kind: json.loads(sample(f"user.{kind}")) for kind in ("created", "updated")
        }

    def create(self, position: int, now_ms: int) -> dict[str, Any]:
        number = len(self.objects)
        envelope = self.templates["created"]
        data = dict(envelope["data"])
        data["id"] = f"user_{self.prefix}{number:07d}"
        data["external_id"] = f"acct_{self.prefix}{number}"
        data["created_at"] = data["updated_at"] = now_ms + position
        self.objects.append(data)
        self.created_at.append(position)
        return data

    def update(self, number: int, position: int, now_ms: int) -> dict[str, Any]:
        data = dict(self.templates["updated"]["data"])
        previous = self.objects[number]
        data.update(id=previous["id"], external_id=previous["external_id"])
        data["created_at"] = previous["created_at"]
        data["updated_at"] = now_ms + position + 1
        data["first_name"] = f"Maya{position}"
        self.objects[number] = data
        return data


def make_plan(count: int, *, seed: int, now_ms: int) -> list[Delivery]:
    """`count` deliveries: new users, updates of users created earlier, and ~5 % duplicates."""
    rng = random.Random(seed)
    users = _Users(prefix=f"b{seed}x")
    gap = min(GAP, count // 2)
    duplicates = set(rng.sample(range(gap, count), round(count * DUPLICATE_SHARE)))
    plan: list[Delivery] = []
    for position in range(count):
        if position in duplicates:
            plan.append(plan[rng.randrange(0, position - gap + 1)])
            continue
        ready = bisect.bisect_right(users.created_at, position - gap)
        if ready and rng.random() < UPDATE_SHARE:
            data, kind = users.update(rng.randrange(ready), position, now_ms), "user.updated"
        else:
            data, kind = users.create(position, now_ms), "user.created"
        envelope = {**users.templates[kind.split(".")[1]], "data": data, "timestamp": now_ms}
        svix_id = f"msg_bench{seed}x{position:07d}"
        plan.append(Delivery(svix_id, kind, orjson.dumps(envelope)))
    return plan


def write_plan(plan: list[Delivery], path: Path) -> Path:
    """One JSON line per delivery, for the load generator."""
    lines = (
        orjson.dumps({"id": d.svix_id, "type": d.event_type, "body": d.body.decode()}) for d in plan
    )
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def read_plan(path: Path) -> list[Delivery]:
    plan = []
    for line in path.read_bytes().splitlines():
        item = orjson.loads(line)
        plan.append(Delivery(item["id"], item["type"], item["body"].encode()))
    return plan
