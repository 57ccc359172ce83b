"""clerk-sync mounted in a FastAPI app: Clerk's webhooks go to /clerk/webhooks/clerk.

Run it with `uvicorn --factory fastapi_mount:create_api` from this folder, with the settings of
docs/configuration.md in the environment (MONGODB_URL, CLERK_WEBHOOK_SIGNING_SECRET).
Starlette does not pass lifespan events on to a mounted app, so the host's lifespan runs the
clerk-sync app's start-up (MongoDB, indexes) and shut-down.
"""

from __future__ import annotations

from fastapi import FastAPI

from clerk_sync import Settings, create_app, lifespan


def create_api(settings: Settings | None = None) -> FastAPI:
    clerk_app = create_app(settings)
    api = FastAPI(lifespan=lambda _: lifespan(clerk_app))
    api.mount("/clerk", clerk_app)  # type: ignore[arg-type]  # Quart types ASGI scopes narrowly

    @api.get("/")
    async def home() -> dict[str, str]:
        return {"app": "northwind"}

    return api
