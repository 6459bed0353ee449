"""Run a spec: prepare it, train every replica until its budget ends or it goes non-finite."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from nandoctor.engine.setup import PreparedRun, prepare
from nandoctor.engine.trainer import State, Trainer
from nandoctor.instrument.events import FPEvent, NonFinite
from nandoctor.interrupt import Interrupted, StoppedTraining

if TYPE_CHECKING:
    from nandoctor.spec.models import Spec


@dataclass
class Outcome:
    """What one replica's run produced: the numbers every diagnosis is made from."""

    spec: Spec
    learning_rate: float
    steps_budget: int
    steps_run: int
    loss: np.ndarray  # (steps_run,)
    history: dict[str, np.ndarray] | None  # name -> (steps_run, layers), see History.replica
    first_nonfinite: NonFinite | None
    events: list[FPEvent]
    prepared: PreparedRun
    snapshots: list[State] = field(default_factory=list)
    history_start: int = 1  # the step of the first row of ``history`` and ``loss``
    loss_initial: float = float("nan")  # step 1's loss, whatever the window holds
    summary: dict[str, np.ndarray] | None = None  # the whole run downsampled (History.summary)
    threads: int = 1  # BLAS threads it trained with (nandoctor.parallel.threads_for)
    scaling: dict | None = None  # loss scaling's skipped steps and scales (Trainer.SkipLog.of)
    # the weights it ended with, in ``prepared.slots`` order without the replica axis (the
    # master weights under mixed precision); None when it went non-finite (its row was dropped)
    final_params: list[np.ndarray] | None = None
    resumed: bool = False  # it started from a snapshot, not from ``prepared.init_params``

    @property
    def finite(self) -> bool:
        return self.first_nonfinite is None


SNAPSHOTS_KEPT = 3


def snapshot_interval(budget: int) -> int:
    """Steps between snapshots: about 20 per run, at most 25 steps apart."""
    return max(1, min(25, budget // 20))


def train(
    spec: Spec,
    lrs=None,
    instrument: bool = True,
    on_step: Callable[[int], None] | None = None,
    prepared: PreparedRun | None = None,
    start: State | None = None,
    until: int | None = None,
    snapshots: bool = True,
) -> list[Outcome]:
    """Train ``spec`` once per learning rate in ``lrs`` (default: the spec's), instrumented.

    ``start`` resumes from a snapshot (a replay) and
    ``until`` stops after that step. Returns one :class:`Outcome` per rate, in order; each keeps
    the last few snapshots, the latest taken shortly before a failure (unless ``snapshots`` is
    False: a sweep never replays).
    """
    from nandoctor.parallel import blas_threads, threads_for

    prepared = prepared or prepare(spec)
    threads = threads_for(spec, prepared.x.shape)
    with blas_threads(threads):
        outcomes = _train(spec, lrs, instrument, on_step, prepared, start, until, snapshots)
    for o in outcomes:
        o.threads = threads
    return outcomes


def _train(spec, lrs, instrument, on_step, prepared, start, until, snapshots) -> list[Outcome]:
    trainer = Trainer(prepared, lrs, instrument=instrument, spec=spec)
    if start is not None:
        trainer.state = start.copy()
    budget = spec.train.steps
    last = min(budget, until or budget)
    every = snapshot_interval(budget)
    kept: list[State] = []
    if prepared.first_nonfinite is None:
        try:
            with trainer.watch.install():
                while trainer.state.step < last and len(trainer.state.alive):
                    if snapshots and trainer.state.step % every == 0:
                        kept = [*kept[-SNAPSHOTS_KEPT + 1 :], trainer.state.copy()]
                    trainer.step()
                    if on_step:
                        on_step(trainer.state.step)
        except Interrupted as stop:
            if stop.training is None:  # the innermost run says where it stood
                stop.training = stopped_at(trainer, last)
            raise
    outcomes = [_outcome(trainer, spec, prepared, r, budget) for r in range(len(trainer.lrs))]
    for o in outcomes:
        o.snapshots = kept
        o.resumed = start is not None
    return outcomes


def stopped_at(trainer: Trainer, last: int) -> StoppedTraining:
    """Where ``trainer`` stood: its last completed step, and that step's loss when it trains a
    single replica (a batched run's losses are one per rate)."""
    step, losses = trainer.reached
    loss = None
    if losses is not None and len(trainer.lrs) == 1 and len(losses) == 1:
        value = float(np.asarray(losses).reshape(-1)[0])
        loss = value if np.isfinite(value) else None
    return StoppedTraining(step, last, loss)


def _outcome(trainer: Trainer, spec, prepared: PreparedRun, r: int, budget: int) -> Outcome:
    first = prepared.first_nonfinite or trainer.watch.first_nonfinite.get(r)
    steps_run = 0 if prepared.first_nonfinite else (first.step if first else trainer.state.step)
    hist = summary = None
    if trainer.history is not None:
        hist = trainer.history.replica(r)
        kept = hist.pop("step") <= steps_run
        hist = {k: v[kept] for k, v in hist.items()}
        start = max(1, steps_run - len(hist["loss"]) + 1)
        loss, initial = hist["loss"], trainer.history.initial_loss(r)
        summary = trainer.history.summary(r) if steps_run else None
    else:
        start, loss = 1, np.array([row[r] for row in trainer.losses])[:steps_run]
        initial = loss[0] if len(loss) else np.nan
    events = list(prepared.events.values()) + list(getattr(trainer.watch, "events", {}).values())
    row = np.flatnonzero(trainer.state.alive == r)  # its row of the params, if it is still alive
    final = None
    if first is None and len(row) and not prepared.first_nonfinite:
        final = [p[row[0]].copy() for p in trainer.state.params]  # one copy, at the end
    return Outcome(
        final_params=final,
        scaling=trainer.skips.of(r) if trainer.skips is not None else None,
        spec=spec,
        learning_rate=float(trainer.lrs[r]),
        steps_budget=budget,
        steps_run=steps_run,
        loss=loss,
        history=hist,
        first_nonfinite=first,
        events=events,
        prepared=prepared,
        history_start=start,
        loss_initial=float(initial),
        summary=summary,
    )
