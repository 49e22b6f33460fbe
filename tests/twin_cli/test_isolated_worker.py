"""A native call in a killable child: a hang or a crash costs a retry in a new process, never a hung caller."""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

from tests.support import slow_calls
from twin_kit import IsolatedWorker, WorkerTimeout


@pytest.fixture
def worker():
    w = IsolatedWorker("test-worker")
    yield w
    w.close()


def test_calls_run_in_one_persistent_child(worker):
    a, pid_a = worker.call(slow_calls.child_pid, (3,), timeout=60)
    b, pid_b = worker.call(slow_calls.child_pid, (4,), timeout=60)
    assert (a, b) == (6, 8)
    assert pid_a == pid_b != os.getpid()


def test_a_hung_call_is_killed_and_retried_in_a_new_child(worker, tmp_path):
    _, first = worker.call(slow_calls.child_pid, (1,), timeout=60)
    t0 = time.monotonic()
    pid = worker.call(slow_calls.hang_first_time, (str(tmp_path / "marker"),), timeout=3)
    assert pid != first  # the hung child was replaced
    assert time.monotonic() - t0 < 60


def test_a_call_that_always_hangs_fails_in_one_line(worker):
    with pytest.raises(WorkerTimeout, match=r"hang_always took longer than 1 s in each of 2 attempts"):
        worker.call(slow_calls.hang_always, (), timeout=1, attempts=2)
    assert worker.call(slow_calls.child_pid, (5,), timeout=60)[0] == 10  # and the worker still serves


def test_a_dead_child_is_replaced(worker):
    with pytest.raises(WorkerTimeout, match="lost its worker process"):
        worker.call(slow_calls.die, (), timeout=60, attempts=2)


def test_the_call_s_own_error_is_raised_and_the_child_kept(worker):
    _, pid = worker.call(slow_calls.child_pid, (1,), timeout=60)
    with pytest.raises(ValueError, match="bad frames"):
        worker.call(slow_calls.refuse, ("bad frames",), timeout=60)
    assert worker.call(slow_calls.child_pid, (1,), timeout=60)[1] == pid


def test_video_clips_encode_through_the_worker(tmp_path):
    from policies.datasets.video import VideoEncoding, decode_frames, encode_video

    frames = np.random.default_rng(0).integers(0, 255, (6, 32, 48, 3), dtype=np.uint8)
    encode_video(frames, 10, tmp_path / "clip.mp4", VideoEncoding().resolved())
    back = decode_frames(tmp_path / "clip.mp4", np.arange(6) / 10)
    assert back.shape == frames.shape
