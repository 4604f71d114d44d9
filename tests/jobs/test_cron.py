"""Cron validation, time zones and the scheduler driven by a manual clock (missed-run policy)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from nekzus.errors import Invalid
from nekzus.jobs import CronScheduler, ManualClock, next_fire, validate_cron
from tests.jobs.helpers import Tasks
from tests.waiting import until


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "* * * *",
        "* * * * * *",
        "61 * * * *",
        "* * 32 * *",
        "x * * * *",
        "*/5 " + "1," * 60 + "1 * * *",
        "0 0 31 2 *",
    ],
)
def test_invalid_expressions(expr: str) -> None:
    with pytest.raises(Invalid) as info:
        validate_cron(expr)
    assert info.value.code in ("INVALID_CRON", "MISSING_CRON")


def test_valid_and_next_fire_in_zone() -> None:
    assert validate_cron("  0   2 * * 1-5 ") == "0 2 * * 1-5"
    after = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert next_fire("0 2 * * *", after, UTC) == datetime(2030, 1, 2, 2, 0, tzinfo=UTC)
    berlin = next_fire("0 2 * * *", after, ZoneInfo("Europe/Berlin"))
    assert berlin == datetime(2030, 1, 2, 1, 0, tzinfo=UTC)


def test_scheduler_fires_on_time_and_missed_run_once() -> None:
    async def main() -> None:
        clock = ManualClock(datetime(2030, 1, 1, 0, 0, 30, tzinfo=UTC))
        tasks = Tasks()
        fired: list[tuple[str, datetime]] = []
        got = asyncio.Event()

        async def fire_a(when: datetime) -> None:
            fired.append(("a", when))
            got.set()

        async def fire_missed(when: datetime) -> None:
            fired.append(("missed", when))
            got.set()

        sched = CronScheduler(clock=clock, zone=UTC, spawn=tasks.spawn)
        due = sched.add("a", "* * * * *", fire_a)
        assert due == datetime(2030, 1, 1, 0, 1, tzinfo=UTC)
        # Missed three days of hourly runs while "down": fires exactly once, then continues after now.
        sched.add("missed", "0 * * * *", fire_missed, due=datetime(2029, 12, 29, tzinfo=UTC))
        sched.start()
        await asyncio.wait_for(got.wait(), 2)
        got.clear()
        assert fired == [("missed", datetime(2029, 12, 29, tzinfo=UTC))]
        assert sched.due("missed") == datetime(2030, 1, 1, 1, 0, tzinfo=UTC)
        clock.advance(30)  # 00:01:00 -> "a" is due
        await asyncio.wait_for(got.wait(), 2)
        got.clear()
        assert fired[-1] == ("a", datetime(2030, 1, 1, 0, 1, tzinfo=UTC))
        assert sched.due("a") == datetime(2030, 1, 1, 0, 2, tzinfo=UTC)
        clock.advance(3600)  # both due again; a's missed minutes collapse into one run
        await until(lambda: [n for n, _ in fired].count("missed") == 2, timeout=2, what="the hourly run")
        await until(lambda: [n for n, _ in fired].count("a") == 2, timeout=2, what="a's collapsed run")
        sched.remove("a")
        # Past the next hour: "missed" firing again proves the loop woke and ticked through every
        # minute "a" would have been due in; "a", removed, did not fire.
        clock.advance(3600)
        await until(lambda: [n for n, _ in fired].count("missed") == 3, timeout=2, what="the next hour")
        assert [n for n, _ in fired].count("a") == 2
        await sched.stop()
        await tasks.close()

    asyncio.run(main())


def test_slow_run_does_not_block_others() -> None:
    async def main() -> None:
        clock = ManualClock(datetime(2030, 1, 1, 0, 0, 59, tzinfo=UTC))
        tasks = Tasks()
        quick = asyncio.Event()

        async def slow(_when: datetime) -> None:
            await asyncio.sleep(30)  # a run that outlasts the test: it must not hold up the others

        async def fast(_when: datetime) -> None:
            quick.set()

        sched = CronScheduler(clock=clock, zone=UTC, spawn=tasks.spawn)
        sched.add("slow", "* * * * *", slow)
        sched.add("fast", "* * * * *", fast)
        sched.start()
        clock.advance(1)
        await asyncio.wait_for(quick.wait(), 2)
        await sched.stop()
        await tasks.close()

    asyncio.run(main())
