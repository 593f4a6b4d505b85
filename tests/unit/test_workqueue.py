import asyncio
import itertools

from modeldeploy.workqueue import CHANGED, NEW, RESYNC, Key, WorkQueue

YIELD_TO_THE_LOOP = 0  # lets the queue's tasks run between checks


async def wait_until(predicate, timeout=5.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        assert loop.time() < deadline, "condition not met in time"
        await asyncio.sleep(YIELD_TO_THE_LOOP)


def test_events_for_a_busy_key_collapse_into_one_more_run() -> None:
    async def scenario():
        runs: list[Key] = []
        release = asyncio.Event()

        async def handler(key):
            runs.append(key)
            if len(runs) == 1:
                await release.wait()

        queue = WorkQueue(handler, workers=2)
        queue.start()
        queue.add(("ns", "a"))
        await wait_until(lambda: len(runs) == 1)
        for _ in range(5):
            queue.add(("ns", "a"))  # arrives while the first run is busy
        release.set()
        await wait_until(queue.idle)
        await queue.stop()
        return runs

    assert asyncio.run(scenario()) == [("ns", "a"), ("ns", "a")]


def test_one_key_never_runs_twice_at_once_but_keys_run_in_parallel() -> None:
    async def scenario():
        active: dict[Key, int] = {}
        peak_same = 0
        all_three = asyncio.Event()

        async def handler(key):
            nonlocal peak_same
            active[key] = active.get(key, 0) + 1
            peak_same = max(peak_same, active[key])
            if sum(1 for v in active.values() if v) == 3:
                all_three.set()
            await asyncio.wait_for(all_three.wait(), timeout=5)
            active[key] -= 1

        queue = WorkQueue(handler, workers=4)
        queue.start()
        for _ in range(3):
            for name in ("a", "b", "c"):
                queue.add(("ns", name))
        await wait_until(queue.idle)
        await queue.stop()
        return peak_same, all_three.is_set()

    peak_same, ran_in_parallel = asyncio.run(scenario())
    assert peak_same == 1
    assert ran_in_parallel


def test_failures_are_retried_with_growing_delays_until_success() -> None:
    async def scenario():
        times: list[float] = []
        loop = asyncio.get_running_loop()

        async def handler(key):
            times.append(loop.time())
            if len(times) < 4:
                raise RuntimeError("API down")

        queue = WorkQueue(handler, base_delay=0.02)
        queue.start()
        queue.add(("ns", "a"))
        await wait_until(lambda: len(times) == 4 and queue.idle())
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
        await wait_until(lambda: len(runs) == 3 and queue.idle())
        await queue.stop()
        return runs

    assert len(asyncio.run(scenario())) == 3


def test_forget_cancels_pending_retries() -> None:
    async def scenario():
        runs = []

        async def handler(key):
            runs.append(key)
            raise RuntimeError("boom")

        queue = WorkQueue(handler, base_delay=60)
        queue.start()
        queue.add(("ns", "gone"))
        await wait_until(lambda: len(runs) == 1 and not queue.idle())
        queue.forget(("ns", "gone"))
        idle_after_forget = queue.idle()
        await queue.stop()
        return runs, idle_after_forget

    runs, idle = asyncio.run(scenario())
    assert runs == [("ns", "gone")]
    assert idle, "the 60 s retry timer was cancelled"


def test_changed_objects_go_before_resync_keys_and_a_key_moves_up_when_it_changes() -> None:
    async def scenario():
        runs: list[Key] = []

        async def handler(key):
            runs.append(key)

        queue = WorkQueue(handler, workers=1)
        for i in range(3):
            queue.add(("ns", f"listed-{i}"), RESYNC)  # a restart's listing: every object
        queue.add(("ns", "new"), NEW)  # then a new object
        queue.add(("ns", "listed-2"), CHANGED)  # and a listed one that changed
        queue.add(("ns", "listed-0"), RESYNC)  # already queued: stays where it is
        assert queue.depth() == 4
        assert queue.depths() == {CHANGED: 1, NEW: 1, RESYNC: 2}
        queue.start()  # keys added before the workers start wait for them
        await wait_until(queue.idle)
        await queue.stop()
        return runs

    assert asyncio.run(scenario()) == [("ns", "listed-2"), ("ns", "new"), ("ns", "listed-0"), ("ns", "listed-1")]


def test_in_a_bulk_create_an_object_whose_pods_became_ready_goes_before_the_next_new_ones() -> None:
    async def scenario():
        runs: list[Key] = []

        async def handler(key):
            runs.append(key)

        queue = WorkQueue(handler, workers=1)
        for i in range(3):
            queue.add(("ns", f"new-{i}"), NEW)  # a bulk create
        queue.add(("ns", "served"), CHANGED)  # an object created before: its Deployment became available
        queue.start()
        await wait_until(queue.idle)
        await queue.stop()
        return runs

    assert asyncio.run(scenario()) == [("ns", "served"), ("ns", "new-0"), ("ns", "new-1"), ("ns", "new-2")]


def test_a_change_during_a_run_queues_it_again_at_the_highest_priority_seen() -> None:
    async def scenario():
        runs: list[Key] = []
        release = asyncio.Event()

        async def handler(key):
            runs.append(key)
            if key == ("ns", "busy") and len(runs) == 1:
                await release.wait()

        queue = WorkQueue(handler, workers=1)
        queue.start()
        queue.add(("ns", "busy"), RESYNC)
        await wait_until(lambda: len(runs) == 1)
        queue.add(("ns", "idle-0"), RESYNC)
        queue.add(("ns", "busy"), RESYNC)
        queue.add(("ns", "busy"), CHANGED)  # changed while it ran
        release.set()
        await wait_until(queue.idle)
        await queue.stop()
        return runs

    assert asyncio.run(scenario()) == [("ns", "busy"), ("ns", "busy"), ("ns", "idle-0")]
