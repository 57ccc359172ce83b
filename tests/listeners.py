"""A pymongo command listener for tests that check what the driver sent to the server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymongo import monitoring


@dataclass
class UpdateCommands(monitoring.CommandListener):
    """The statements of every `update` command the client sent, one list per command."""

    commands: list[list[dict[str, Any]]] = field(default_factory=list)

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if event.command_name == "update":
            self.commands.append(list(event.command["updates"]))

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        return None

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        return None

    def sizes(self) -> list[int]:
        """How many statements each command carried."""
        return [len(statements) for statements in self.commands]

    def updates(self) -> list[Any]:
        """The update document (`u`) of every statement, in the order sent."""
        return [statement["u"] for statements in self.commands for statement in statements]
