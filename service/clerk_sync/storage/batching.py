"""Natural batching of concurrent store commands: claims (`claims`) and projection writes
(`projection.upsert_if_newer`) use it alike.

A lone request goes out at once, on its own command; requests that arrive while one is in
flight wait for it to return and then go out together, as one command. So a lone caller never
waits for a timer, and at one sender nothing changes; under load the commands are shared.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from bson.errors import BSONError
from pymongo.errors import PyMongoError

from clerk_sync.errors import StoreUnavailable


class Batcher[Item, Result]:
    """Sends a lone item with `one`; items that arrive meanwhile go out together with `many`,
    which answers per item a result or the error that item alone met. One per target (a
    collection), used from one event loop."""

    def __init__(
        self,
        one: Callable[[Item], Awaitable[Result]],
        many: Callable[[Sequence[Item]], Awaitable[list[Result | BaseException]]],
    ) -> None:
        self._one, self._many = one, many
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._busy = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        if self._busy:
            future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
            self._waiting.append((item, future))
            return await future
        self._busy = True
        try:
            return await self._one(item)
        finally:
            self._next()

    def _next(self) -> None:
        """Send whatever waited for the command that just returned, or become idle."""
        if not self._waiting:
            self._busy = False
            return
        batch, self._waiting = self._waiting, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        items = [item for item, _ in batch]
        results: list[Result | BaseException]
        try:
            if len(items) == 1:
                results = [await outcome(self._one(items[0]))]
            else:
                results = await self._many(items)
        except (PyMongoError, StoreUnavailable) as error:
            results = [error] * len(batch)
        except BaseException as error:  # cancelled, or a bug: no waiter may hang
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            raise
        finally:
            self._next()
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # its caller went away; what was written stands
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


async def outcome[Result](pending: Awaitable[Result]) -> Result | BaseException:
    """What `pending` gives, or the store or encoding error it raised (that item's alone)."""
    try:
        return await pending
    except (PyMongoError, StoreUnavailable, BSONError, OverflowError) as error:
        return error
