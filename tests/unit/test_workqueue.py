import asyncio
import itertools

from modeldeploy.workqueue import Key, WorkQueue


async def wait_until(predicate, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def test_events_for_a_busy_key_collapse_into_one_more_run() -> None:
    async def scenario():
        runs: list[Key] = []
        release = asyncio.Event()

        async def handler(key):
            runs.append(key)
            if len(runs) == 1:
                await release.wait()
            return

        queue = WorkQueue(handler, workers=2)
        queue.start()
        queue.add(("ns", "a"))
        await wait_until(lambda: len(runs) == 1)
        for _ in range(5):
            queue.add(("ns", "a"))  # arrives while the first run is busy
        release.set()
        await wait_until(lambda: len(runs) == 2)
        await asyncio.sleep(0.05)
        await queue.stop()
        return runs

    assert asyncio.run(scenario()) == [("ns", "a"), ("ns", "a")]


def test_one_key_never_runs_twice_at_once_but_keys_run_in_parallel() -> None:
    async def scenario():
        active: dict[Key, int] = {}
        peak = {"same": 0, "total": 0}
        done = []

        async def handler(key):
            active[key] = active.get(key, 0) + 1
            peak["same"] = max(peak["same"], active[key])
            peak["total"] = max(peak["total"], sum(active.values()))
            await asyncio.sleep(0.02)
            active[key] -= 1
            done.append(key)
            return

        queue = WorkQueue(handler, workers=4)
        queue.start()
        for _ in range(3):
            for name in ("a", "b", "c"):
                queue.add(("ns", name))
        await wait_until(lambda: len(done) >= 3 and queue.depth() == 0 and not any(active.values()))
        await queue.stop()
        return peak

    peak = asyncio.run(scenario())
    assert peak["same"] == 1
    assert peak["total"] > 1


def test_failures_are_retried_with_growing_delays_until_success() -> None:
    async def scenario():
        times: list[float] = []
        loop = asyncio.get_running_loop()

        async def handler(key):
            times.append(loop.time())
            if len(times) < 4:
                raise RuntimeError("API down")
            return

        queue = WorkQueue(handler, base_delay=0.02)
        queue.start()
        queue.add(("ns", "a"))
        await wait_until(lambda: len(times) == 4)
        await asyncio.sleep(0.1)
        await queue.stop()
        return times

    times = asyncio.run(scenario())
    assert len(times) == 4, "no retries after success"
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert gaps[0] >= 0.02
    assert gaps[1] >= 0.04
    assert gaps[2] >= 0.08


def test_a_requested_delay_schedules_another_run() -> None:
    async def scenario():
        runs = []

        async def handler(key):
            runs.append(key)
            return 0.01 if len(runs) < 3 else None

        queue = WorkQueue(handler)
        queue.start()
        queue.add(("ns", "a"))
        await wait_until(lambda: len(runs) == 3)
        await asyncio.sleep(0.05)
        await queue.stop()
        return runs

    assert len(asyncio.run(scenario())) == 3


def test_forget_cancels_pending_retries() -> None:
    async def scenario():
        runs = []

        async def handler(key):
            runs.append(key)
            raise RuntimeError("boom")

        queue = WorkQueue(handler, base_delay=0.05)
        queue.start()
        queue.add(("ns", "gone"))
        await wait_until(lambda: len(runs) == 1)
        await asyncio.sleep(0.01)
        queue.forget(("ns", "gone"))
        await asyncio.sleep(0.2)
        await queue.stop()
        return runs

    assert len(asyncio.run(scenario())) == 1
