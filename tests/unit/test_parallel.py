"""pmap: results in input order; a dying worker loses its own item; errors propagate."""

import os
import signal
import sys
import time

import pytest

from nandoctor.parallel import WorkerLost, pmap

fork_only = pytest.mark.skipif(sys.platform != "linux", reason="the test's functions need fork")


def square_or_die(x):
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    if x == 5:
        raise ValueError("five")
    return x * x


@fork_only
def test_a_killed_worker_loses_its_item_only_and_reports_keep_input_order():
    seen = []
    got = pmap(square_or_die, [1, 2, 3, 4], 2, seen.append, lost=lambda x, why: (x, why))
    assert got[:2] == [1, 4] and got[3] == 16
    assert got[2][0] == 3 and "killed by SIGKILL" in got[2][1]
    assert seen == got


@fork_only
def test_without_a_lost_handler_the_others_finish_then_it_raises():
    with pytest.raises(WorkerLost, match="SIGKILL"):
        pmap(square_or_die, [3, 4], 2)


@fork_only
def test_an_exception_in_a_worker_propagates():
    with pytest.raises(ValueError, match="five"):
        pmap(square_or_die, [1, 5, 2], 2)


def first_waits_for_second(args):
    """Item 0 returns only once the parent has taken item 1's result (its on_arrival wrote the
    marker): waiting for item 1's worker to exit was not enough, since a parent slow to poll
    could then find both results waiting and take item 0's first."""
    index, marker = args
    if index == 1:
        return index
    while not marker.exists() or marker.read_text() != "1":
        time.sleep(0.01)
    return index


@fork_only
def test_on_arrival_reports_each_result_as_it_finishes_on_done_keeps_input_order(tmp_path):
    arrived, done = [], []
    marker = tmp_path / "arrived"  # the last index the parent took
    got = pmap(
        first_waits_for_second,
        [(0, marker), (1, marker)],
        2,
        done.append,
        on_arrival=lambda i, r: arrived.append((i, r)) or marker.write_text(str(i)),
    )
    assert got == done == [0, 1]
    assert arrived == [(1, 1), (0, 0)]


def test_on_arrival_without_workers_follows_the_input_order():
    arrived = []
    assert pmap(abs, [-1, -2], jobs=1, on_arrival=lambda i, r: arrived.append((i, r))) == [1, 2]
    assert arrived == [(0, 1), (1, 2)]
