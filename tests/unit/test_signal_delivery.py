"""signals_interrupt: a signal raises Interrupted even where CPython loses the handler's exception
(in compile(), in a finaliser); once it is on its way out, further signals are ignored."""

import random
import signal
import sys
import time

import pytest

from nandoctor.interrupt import REDELIVER_SECONDS, Interrupted, signals_interrupt

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
WAIT = 10.0  # seconds a lost Interrupted may take to come back on a busy machine


@pytest.fixture(autouse=True)
def own_handlers():
    """After an interrupt the context leaves SIGINT and SIGTERM ignored (the process is on its
    way out): put pytest's back."""
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)}
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    for s, handler in saved.items():
        signal.signal(s, handler)


def spin(seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.005)


class SignalsWhenCollected:
    """Its finaliser receives the signal: the handler's exception is raised there, and lost."""

    def __del__(self):
        signal.raise_signal(signal.SIGTERM)


def test_an_interrupted_lost_in_a_finaliser_is_raised_again(capfd):
    began = time.monotonic()
    with pytest.raises(Interrupted) as stop, signals_interrupt():
        SignalsWhenCollected()  # collected at once: its __del__ swallows the first Interrupted
        spin(WAIT)
    assert stop.value.exit_code == 143
    assert time.monotonic() - began < WAIT
    assert "Exception ignored" not in capfd.readouterr().err  # lost quietly, then re-raised


def test_an_interrupted_lost_in_compile_is_raised_again():
    # compile() folds constants like 2**31 with integer arithmetic that runs pending signal
    # handlers, and drops any exception but KeyboardInterrupt (CPython 3.11): a signal timed to
    # arrive while it works is lost there more often than not. A timer signal (SIGALRM) goes to
    # the same handler as SIGINT, to time it within the compile.
    source = "\n".join(f"LIMIT_{i} = 2**{64 + i % 512} - 1" for i in range(3000)).encode()
    began = time.perf_counter()
    compile(source, "many.py", "exec")
    takes = time.perf_counter() - began
    for _ in range(12):
        with pytest.raises(Interrupted) as stop, signals_interrupt():
            signal.signal(signal.SIGALRM, signal.getsignal(signal.SIGINT))
            signal.setitimer(signal.ITIMER_REAL, random.uniform(0.1, 0.9) * takes)
            compile(source, "many.py", "exec", dont_inherit=True)
            spin(WAIT)
        assert stop.value.signum == signal.SIGALRM
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as it was before


def test_once_on_its_way_out_further_signals_are_ignored():
    handled = []
    with pytest.raises(Interrupted), signals_interrupt():
        try:
            signal.raise_signal(signal.SIGINT)
            spin(WAIT)
        finally:  # the cleanup: neither a second Ctrl-C nor the watchdog interrupts it
            signal.raise_signal(signal.SIGINT)
            spin(3 * REDELIVER_SECONDS)
            handled.append("cleanup finished")
    assert handled == ["cleanup finished"]
    # the command is over: a signal now is ignored, as on the way out of the process
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN


def test_without_a_signal_the_handlers_are_restored():
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    unraisable = sys.unraisablehook
    with signals_interrupt():
        pass
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert sys.unraisablehook is unraisable
