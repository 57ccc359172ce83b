"""The peer: the Clerk webhook route a user would write from a tutorial, to compare against.

Quart on hypercorn, `svix.Webhook(secret).verify(body, headers)`, then insert, update or delete the
user by Clerk id with motor. No delivery log, no duplicate detection, no ordering guard, no
metrics or per-delivery log line: one MongoDB command per delivery. Run it as a user would:

    CLERK_WEBHOOK_SIGNING_SECRET=whsec_... MONGODB_URL=mongodb://... \\
        hypercorn --bind 127.0.0.1:8001 'bench.peer:create_app()'

With `CLERK_SYNC_BENCH_COMMAND_COUNTS=path` its MongoDB commands are counted like the service's.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient
from quart import Quart, request
from svix.webhooks import Webhook, WebhookVerificationError

from bench.monitor import count_commands_from_env


def _primary_email(data: dict[str, Any]) -> str | None:
    for address in data.get("email_addresses") or []:
        if address.get("id") == data.get("primary_email_address_id"):
            email: str | None = address.get("email_address")
            return email
    return None


def _user_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "clerk_id": data["id"],
        "email": _primary_email(data),
        "username": data.get("username"),
        "first_name": data.get("first_name"),
        "last_name": data.get("last_name"),
        "image_url": data.get("image_url"),
        "updated_at": datetime.fromtimestamp(data["updated_at"] / 1000, tz=UTC),
    }


def create_app() -> Quart:
    count_commands_from_env()
    secret = os.environ["CLERK_WEBHOOK_SIGNING_SECRET"]
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(os.environ["MONGODB_URL"])
    users = client[os.environ.get("MONGODB_DB", "peer")]["users"]
    app = Quart(__name__)

    @app.before_serving
    async def indexes() -> None:
        await users.create_index("clerk_id", unique=True)

    @app.post("/webhooks/clerk")
    async def clerk_webhook() -> Any:
        body = await request.get_data()
        try:
            Webhook(secret).verify(body, dict(request.headers))
        except WebhookVerificationError:
            return {"error": "invalid signature"}, 400
        event = json.loads(body)
        data = event["data"]
        if event["type"] in ("user.created", "user.updated"):
            fields = _user_fields(data)
            await users.update_one({"clerk_id": data["id"]}, {"$set": fields}, upsert=True)
        elif event["type"] == "user.deleted":
            await users.delete_one({"clerk_id": data["id"]})
        return {"status": "ok"}

    return app
