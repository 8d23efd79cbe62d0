"""Running sends concurrently: one asyncio loop (uvloop) in a thread of its own.

Every send is a coroutine, whatever carries it. An HTTP engine that blocks
(requests, urllib3) and the few Redis calls a send may make (a breaker whose
known state is stale, a paced slot) run in the loop's executor, a thread pool
sized to the concurrency, so the loop itself never waits on a socket.
Results come back on a thread-safe queue read by the consumer's loop: waiting
for "any send ended" is one blocking queue read, not a waiter per send.
"""

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import uvloop

log = logging.getLogger(__name__)

LINGER = 0.005  # seconds to let more sends end once one has
SPARE_THREADS = 4  # executor threads beyond one per send, for Redis calls while every send blocks


class Sends:
    """`count` send coroutines on one loop; submit items, collect (item, result) pairs."""

    def __init__(self, count: int, work: Callable[..., Awaitable], on_error: Callable):
        self.work = work
        self.on_error = on_error
        self.done: queue.SimpleQueue = queue.SimpleQueue()
        self.executor = ThreadPoolExecutor(max_workers=count + SPARE_THREADS, thread_name_prefix="blocking")
        self.loop = uvloop.new_event_loop()
        self.loop.set_default_executor(self.executor)
        self.todo: asyncio.Queue = asyncio.Queue()  # bound to the loop that first uses it: ours
        started = threading.Event()
        self.thread = threading.Thread(target=self.run, args=(count, started), name="sends", daemon=True)
        self.thread.start()
        started.wait()

    def submit(self, items: list) -> None:
        """Hand items to the sends: one wake-up of the loop for all of them."""
        if items:
            self.loop.call_soon_threadsafe(self.put_all, items)

    def put_all(self, items: list) -> None:
        for item in items:
            self.todo.put_nowait(item)

    def results(self, timeout: float) -> list[tuple]:
        """Every (item, result) ready now, waiting up to `timeout` for the
        first one and then LINGER for those ending right after it: the caller
        wakes once per handful of sends, not once per send, and the two
        threads do not trade the GIL at every answer."""
        ready = []
        try:
            if timeout > 0:
                ready.append(self.done.get(timeout=timeout))
                time.sleep(LINGER)
            while True:
                ready.append(self.done.get_nowait())
        except queue.Empty:
            return ready

    def take_unstarted(self) -> list:
        """Withdraw what no send has picked up yet (for a shutdown)."""

        async def drain():
            unstarted = []
            while not self.todo.empty():
                unstarted.append(self.todo.get_nowait())
            return unstarted

        return asyncio.run_coroutine_threadsafe(drain(), self.loop).result()

    def stop(self) -> None:
        """End the loop; sends still running are abandoned (their leases cover them)."""
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.executor.shutdown(wait=False, cancel_futures=True)

    def run(self, count: int, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
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
                # A bug in a send must not kill a worker and strand the job.
                log.error("a send raised instead of returning an outcome", exc_info=exc)
                result = self.on_error(item, exc)
            self.done.put((item, result))
