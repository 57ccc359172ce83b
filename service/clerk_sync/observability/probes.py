"""What the operational endpoints answer (`/livez`, `/readyz`, `/plugins`), as pydantic models.

They shape those answers and are their part of `/openapi.json`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

#: the reason `/readyz` gives while no signing secret is set: every webhook would answer 503
NO_SECRET = "CLERK_WEBHOOK_SIGNING_SECRET: not set, every webhook is refused with 503"  # noqa: S105


class _Answer(BaseModel):
    model_config = ConfigDict(frozen=True)


class Live(_Answer):
    status: Literal["ok"]


class Ready(_Answer):
    status: Literal["ready"]
    plugins_failed: list[str]


class NotReady(_Answer):
    status: Literal["not_ready"]
    reasons: list[str]


class Plugin(_Answer):
    """One discovered plugin, as `clerk-sync plugins --json` lists it too."""

    name: str
    version: str | None
    distribution: str | None
    subscriptions: list[str]
    reconciles: list[str]
    status: Literal["loaded", "failed", "disabled"]
    error: str | None


class Plugins(_Answer):
    plugins: list[Plugin]
