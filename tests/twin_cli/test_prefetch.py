"""twin_kit.Prefetch: an iterator run ahead in a background thread (what lets `twin record` simulate the next
episodes while the last one is written)."""
import threading

import pytest

from twin_kit import Prefetch


def test_items_arrive_in_order_and_the_producer_runs_ahead():
    made = []
    second_made = threading.Event()

    def source():
        for i in range(5):
            made.append(i)
            if i == 1:
                second_made.set()
            yield i

    with Prefetch(source(), depth=2) as it:
        assert next(it) == 0
        # the consumer has taken one item only; the producer makes the next one meanwhile
        assert second_made.wait(5.0)
        assert list(it) == [1, 2, 3, 4]
    assert made == [0, 1, 2, 3, 4]


def test_an_exception_in_the_producer_reaches_the_consumer_after_the_items_before_it():
    def source():
        yield 1
        raise ValueError("broken episode")

    it = Prefetch(source())
    assert next(it) == 1
    with pytest.raises(ValueError, match="broken episode"):
        next(it)


def test_close_stops_the_producer_and_closes_its_source_in_its_own_thread():
    closed_in = []

    def source():
        try:
            i = 0
            while True:
                yield i
                i += 1
        finally:
            closed_in.append(threading.current_thread().name)

    it = Prefetch(source(), depth=1, name="producer")
    assert next(it) == 0
    it.close(timeout=5.0)
    assert closed_in == ["producer"]
    assert not it._thread.is_alive()
