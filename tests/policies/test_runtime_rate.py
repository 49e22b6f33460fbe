"""policies.runtime.loop's clock: the fixed-rate schedule keeps its period and re-anchors after an overrun, and
the real-time priority is taken and given back (or refused in one line without it), and the garbage collector
leaves the objects alive at the loop's start alone while it runs."""
from __future__ import annotations

import gc
import os
import time

import numpy as np
import pytest

from policies.runtime.loop import Rate, frozen_gc, realtime

pytestmark = pytest.mark.realtime   # timing-sensitive: run alone, never beside another test (Makefile)


def test_the_schedule_keeps_its_period_and_re_anchors_after_an_overrun():
    rate = Rate(200.0)
    wakes = []
    for i in range(40):
        rate.wait()
        wakes.append(time.monotonic())
        if i == 20:
            time.sleep(0.012)          # a step that takes more than two periods
    gaps = np.diff(wakes)
    # the deadlines are 5 ms apart; the wake-ups follow them (bounds loose for a loaded machine)
    assert abs(np.median(gaps) - 0.005) < 0.0015, gaps
    assert rate.overruns >= 1 and gaps[20] > 0.01   # re-anchored ...
    assert gaps[21] > 0.003, gaps                    # ... so no burst of catch-up steps follows (those wake at once)


def test_real_time_priority_is_taken_and_given_back(capsys):
    before = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    with realtime(0) as granted:
        assert granted is False and os.sched_getscheduler(0) == before[0]
    with realtime(10) as granted:
        inside = os.sched_getscheduler(0), os.sched_getparam(0).sched_priority
    assert (os.sched_getscheduler(0), os.sched_getparam(0).sched_priority) == before
    if granted:     # root or CAP_SYS_NICE (a CI container is often root)
        assert inside == (os.SCHED_FIFO, 10)
    else:           # refused: said in one line, the loop goes on at normal priority
        assert inside == before and "real-time priority 10 refused" in capsys.readouterr().err


def test_the_loop_freezes_what_is_alive_and_gives_it_back():
    """Inside the block the collector skips every object alive at its start (a collection walks only new ones,
    however large the process); cycles made inside are still collected; afterwards nothing stays frozen."""
    class Node:
        pass

    assert gc.get_freeze_count() == 0
    with frozen_gc():
        frozen = gc.get_freeze_count()
        assert frozen > 1000 and not gc.get_objects(generation=2)   # this process's modules, functions, ...
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2   # the new cycle is found and freed
    assert gc.get_freeze_count() == 0 and len(gc.get_objects(generation=2)) > 0.9 * frozen   # back, less the freed
