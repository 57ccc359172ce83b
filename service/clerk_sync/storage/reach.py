"""Whether MongoDB has been out of reach, as the driver sees it.

A handler that times out while MongoDB cannot be reached has failed because of the outage, not
because of its code: the delivery is then answered 503 with Retry-After like any other step that
found MongoDB down. The driver raises no error for it (the handler is cancelled while the driver
still waits for a server), so the pipeline asks this object instead.

Two sources, because each alone misses a case: the client's current topology (read when a
handler starts and when it fails: is there a writable server right now?), and the driver's
topology events, which count each loss of the server in between. Events reach listeners through
the driver's event thread up to a second late, so they only cover losses during a handler's run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pymongo.monitoring import (
    TopologyClosedEvent,
    TopologyDescriptionChangedEvent,
    TopologyListener,
    TopologyOpenedEvent,
)
from pymongo.topology_description import TopologyDescription

type Describe = Callable[[], TopologyDescription]


@dataclass(frozen=True, slots=True)
class Mark:
    """The state when a handler started, to compare with when it ends."""

    lost: int
    down: bool


class Reachability(TopologyListener):
    """Whether one client has, or had since a mark, no writable MongoDB server.

    The event callbacks run in the driver's threads and only assign plain attributes."""

    def __init__(self) -> None:
        self.lost = 0  # times a writable server went away, as the events tell it
        self.open = True  # False once the client is closed, until it is used (and opened) again
        self._describe: Describe | None = None

    def watch(self, describe: Describe) -> None:
        """Read the client's current topology through `describe` (the client's property)."""
        self._describe = describe

    @property
    def down(self) -> bool:
        """No writable server in the client's current topology (or no client to ask)."""
        if not self.open or self._describe is None:
            return True
        return not self._describe().has_writable_server()

    def mark(self) -> Mark:
        return Mark(self.lost, self.down)

    def lost_since(self, mark: Mark) -> bool:
        """Whether MongoDB was out of reach at any moment since `mark` was taken."""
        return mark.down or self.lost != mark.lost or self.down

    def opened(self, event: TopologyOpenedEvent) -> None:
        self.open = True

    def description_changed(self, event: TopologyDescriptionChangedEvent) -> None:
        writable = event.new_description.has_writable_server()
        if event.previous_description.has_writable_server() and not writable:
            self.lost += 1

    def closed(self, event: TopologyClosedEvent) -> None:
        self.open = False
        self.lost += 1
