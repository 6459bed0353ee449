"""pmap: results in input order; a dying worker loses its own item; errors propagate."""

import os
import signal
import sys

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
