"""Running sends concurrently and handing back their results.

Two ways, one interface, picked by the sender: a fixed set of threads for a
blocking sender, one asyncio loop in one thread for a sender with
`is_async`. Both are cheaper than a ThreadPoolExecutor at thousands of sends
a second: no Future per send, and waiting for "any send ended" is one
blocking queue read, not a waiter installed on every send in flight.
"""

import asyncio
import logging
import queue
import threading
from typing import Awaitable, Callable

import uvloop

log = logging.getLogger(__name__)

STOP = object()


class Sends:
    """Results come back on a thread-safe queue, read by the consumer's loop."""

    def __init__(self, on_error: Callable):
        self.on_error = on_error
        self.done: queue.SimpleQueue = queue.SimpleQueue()

    def results(self, timeout: float) -> list[tuple]:
        """Every (item, result) ready now, waiting up to `timeout` for the first one."""
        ready = []
        try:
            ready.append(self.done.get(timeout=timeout) if timeout > 0 else self.done.get_nowait())
            while True:
                ready.append(self.done.get_nowait())
        except queue.Empty:
            return ready

    def failed(self, item, exc: Exception):
        # A bug in a sender must not kill a worker and strand the job.
        log.error("a send raised instead of returning an outcome", exc_info=exc)
        return self.on_error(item, exc)


class ThreadSends(Sends):
    def __init__(self, count: int, work: Callable, on_error: Callable):
        super().__init__(on_error)
        self.work = work
        self.todo: queue.SimpleQueue = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self.run, name=f"send-{n}", daemon=True) for n in range(count)]
        for thread in self.threads:
            thread.start()

    def submit(self, item) -> None:
        self.todo.put(item)

    def take_unstarted(self) -> list:
        """Withdraw what no thread has picked up yet (for a shutdown)."""
        unstarted = []
        try:
            while True:
                unstarted.append(self.todo.get_nowait())
        except queue.Empty:
            return unstarted

    def stop(self) -> None:
        """Let the threads end after their current send; does not wait for them."""
        for _ in self.threads:
            self.todo.put(STOP)

    def run(self) -> None:
        while (item := self.todo.get()) is not STOP:
            try:
                result = self.work(item)
            except Exception as exc:
                result = self.failed(item, exc)
            self.done.put((item, result))


class AsyncSends(Sends):
    """`count` coroutines on one event loop (uvloop: less CPU per send than
    the standard loop), in a thread of its own."""

    def __init__(self, count: int, work: Callable[..., Awaitable], on_error: Callable):
        super().__init__(on_error)
        self.work = work
        self.loop = uvloop.new_event_loop()
        self.todo: asyncio.Queue | None = None
        started = threading.Event()
        self.thread = threading.Thread(target=self.run, args=(count, started), name="sends", daemon=True)
        self.thread.start()
        started.wait()

    def submit(self, item) -> None:
        self.loop.call_soon_threadsafe(self.todo.put_nowait, item)

    def take_unstarted(self) -> list:
        async def drain():
            unstarted = []
            while not self.todo.empty():
                unstarted.append(self.todo.get_nowait())
            return unstarted
        return asyncio.run_coroutine_threadsafe(drain(), self.loop).result()

    def stop(self) -> None:
        """End the loop; sends still running are abandoned (their leases cover them)."""
        self.loop.call_soon_threadsafe(self.loop.stop)

    def run(self, count: int, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.todo = asyncio.Queue()
        workers = [self.loop.create_task(self.worker()) for _ in range(count)]
        started.set()
        self.loop.run_forever()
        for task in workers:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*workers, return_exceptions=True))
        self.loop.close()

    async def worker(self) -> None:
        while True:
            item = await self.todo.get()
            try:
                result = await self.work(item)
            except Exception as exc:
                result = self.failed(item, exc)
            self.done.put((item, result))


def sends_for(sender, count: int, work: Callable, work_async: Callable, on_error: Callable) -> Sends:
    if sender.is_async:
        return AsyncSends(count, work_async, on_error)
    return ThreadSends(count, work, on_error)
