"""A pymongo command listener for tests that check what the driver sent to the server."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from motor.motor_asyncio import AsyncIOMotorClient
from pymongo import monitoring

from clerk_sync.storage.store import DeliveryLog

#: the driver's own commands, which no test counts
HOUSEKEEPING = frozenset({"ping", "endSessions", "hello", "isMaster", "createIndexes"})


@dataclass
class Commands(monitoring.CommandListener):
    """The commands the client sent, housekeeping left out: their names, and the statements of
    each `update` command."""

    names: list[str] = field(default_factory=list)
    statements: list[list[dict[str, Any]]] = field(default_factory=list)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name in HOUSEKEEPING:
            return
        self.names.append(event.command_name)
        if event.command_name == "update":
            self.statements.append(list(event.command["updates"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None

    def take(self) -> Counter[str]:
        """The commands sent since the last `take`, by name (the statements are kept)."""
        seen, self.names = Counter(self.names), []
        return seen

    def clear(self) -> None:
        self.names, self.statements = [], []

    def sizes(self) -> list[int]:
        """How many statements each `update` command carried."""
        return [len(statements) for statements in self.statements]

    def documents(self) -> list[Any]:
        """The update document (`u`) of every statement, in the order sent."""
        return [statement["u"] for statements in self.statements for statement in statements]


@asynccontextmanager
async def listened_log(url: str, database: str) -> AsyncIterator[tuple[DeliveryLog, Commands]]:
    """A delivery log on an empty `webhook_events` of `database`, and what its client sends
    from then on."""
    commands = Commands()
    client: AsyncIOMotorClient[dict[str, Any]] = AsyncIOMotorClient(
        url, tz_aware=True, event_listeners=[commands]
    )
    try:
        collection = client[database]["webhook_events"]
        await collection.delete_many({})
        commands.clear()
        yield DeliveryLog(collection), commands
    finally:
        client.close()
