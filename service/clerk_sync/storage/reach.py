"""Whether MongoDB has been out of reach, as the driver sees it.

A handler that times out while MongoDB cannot be reached has failed because of the outage, not
because of its code: the delivery is then answered 503 with Retry-After like any other step that
found MongoDB down. The driver raises no error for it (the handler is cancelled while the driver
still waits for a server), so the pipeline asks this object instead.

Two sources, because each alone misses a case: the client's current topology (read when a
handler starts and when it fails: is there a writable server right now?), and the failed checks
of the driver's server monitors, which count each loss in between. The monitors call the
listener from their own threads as soon as a check fails; while a command waits for a server,
the driver checks about every half second.

Why heartbeat events and not topology events: a topology (or server) listener makes the driver
start an event thread, and closing the client then waits up to a second for that thread, which
stalled every shut-down of the app by about half a second (docs/reliability.md, bug 5).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pymongo.monitoring import (
    ServerHeartbeatFailedEvent,
    ServerHeartbeatListener,
    ServerHeartbeatStartedEvent,
    ServerHeartbeatSucceededEvent,
)
from pymongo.server_type import SERVER_TYPE
from pymongo.topology_description import TopologyDescription

type Describe = Callable[[], TopologyDescription]

# members the topology knows as unable to take writes: losing one loses no writable server
NOT_WRITABLE = frozenset(
    {SERVER_TYPE.RSSecondary, SERVER_TYPE.RSArbiter, SERVER_TYPE.RSOther, SERVER_TYPE.RSGhost}
)


@dataclass(frozen=True, slots=True)
class Mark:
    """The state when a handler started, to compare with when it ends."""

    lost: int
    down: bool


class Reachability(ServerHeartbeatListener):
    """Whether one client has, or had since a mark, no writable MongoDB server.

    The event callbacks run in the driver's monitor threads and only assign plain attributes."""

    def __init__(self) -> None:
        self.lost = 0  # failed checks of a server that could take writes, as the monitors tell it
        self._describe: Describe | None = None

    def watch(self, describe: Describe) -> None:
        """Read the client's current topology through `describe` (the client's property)."""
        self._describe = describe

    @property
    def down(self) -> bool:
        """No writable server in the client's current topology (none once it is closed)."""
        if self._describe is None:
            return True
        return not self._describe().has_writable_server()

    def mark(self) -> Mark:
        return Mark(self.lost, self.down)

    def lost_since(self, mark: Mark) -> bool:
        """Whether MongoDB was out of reach at any moment since `mark` was taken."""
        return mark.down or self.lost != mark.lost or self.down

    def failed(self, event: ServerHeartbeatFailedEvent) -> None:
        """A monitor's check failed. A loss unless the topology still knows that server as a
        member that takes no writes (a secondary, an arbiter): the topology is updated after
        this call, so a primary (or standalone) still shows as one, and a server that a failed
        command has already marked unknown shows as unknown; both count."""
        known = None
        if self._describe is not None:
            known = self._describe().server_descriptions().get(event.connection_id)
        if known is None or known.server_type not in NOT_WRITABLE:
            self.lost += 1

    def started(self, event: ServerHeartbeatStartedEvent) -> None:
        """A check starting tells nothing about reachability (the listener interface needs it)."""

    def succeeded(self, event: ServerHeartbeatSucceededEvent) -> None:
        """A check that succeeds ends no loss counted earlier: the marks compare counts."""
