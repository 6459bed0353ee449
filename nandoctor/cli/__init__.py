"""The command line: one small module per command, wired here into one ``click`` group.

Exit codes: 0 every value finite (check: every spec passed), 1 a non-finite value appeared
(check: a spec failed), 2 usage error or invalid spec, with a message and no traceback.
"""

from __future__ import annotations

import click

from nandoctor import __version__
from nandoctor.cli.common import CONTEXT
from nandoctor.errors import UsageProblem, WorkerLost

# Command modules are imported when their command runs (or help lists them): ``nandoctor trace``
# must start as fast as ``python`` itself, since its start-up counts against a short script.
LAZY_COMMANDS = {
    name: f"nandoctor.cli.{name}" for name in ("run", "sweep", "check", "fix", "schema", "trace")
}


class LazyCommands(dict):
    """``Group.commands`` with each command's module imported on first access."""

    def __init__(self, modules: dict[str, str]):
        super().__init__(dict.fromkeys(modules))
        self.modules = modules

    def _load(self, name: str):
        if dict.get(self, name) is None and name in self.modules:
            import importlib

            self[name] = getattr(importlib.import_module(self.modules[name]), name)
        return dict.get(self, name)

    def get(self, name, default=None):
        return self._load(name) if name in self else default

    def __getitem__(self, name):
        if name not in self:
            raise KeyError(name)
        return self._load(name)

    def values(self):
        return [self._load(n) for n in self]

    def items(self):
        return [(n, self._load(n)) for n in self]


class Commands(click.Group):
    """The group that turns a :class:`UsageProblem` raised anywhere into its message and exit 2."""

    def invoke(self, ctx: click.Context):
        from nandoctor.interrupt import Interrupted, ignore_further, signals_interrupt

        with signals_interrupt():  # raising until caught below; ignored while the message prints
            try:
                return super().invoke(ctx)
            except UsageProblem as problem:
                click.echo(problem.message, err=True)
                ctx.exit(problem.exit_code)
            except WorkerLost as lost:
                click.echo(f"nandoctor: a worker process died: {lost}", err=True)
                ctx.exit(2)
            except Interrupted as stop:
                ignore_further()
                click.echo(f"nandoctor: {stop}; stopped, nothing half-written", err=True)
                ctx.exit(stop.exit_code)


@click.group(cls=Commands, context_settings=CONTEXT)
@click.version_option(__version__, "--version", prog_name="nandoctor")
def main() -> None:
    """nandoctor: find where, when and why a NumPy network's training went NaN.

    \b
    Examples:
      nandoctor run configs/relu_high_lr.yaml
      nandoctor run spec.yaml --set train.learning_rate=0.01 --format json
      nandoctor schema > spec.schema.json
    """
    ctx = click.get_current_context()
    if ctx.invoked_subcommand == "trace":
        # the user's own program runs as python would, with its own BLAS threads, and with
        # python's signals while it runs (trace.runner.python_signals); the second runs and the
        # diagnosis are stopped like the other commands' work (Interrupted, 130/143)
        return
    from nandoctor.cli.common import printable_streams
    from nandoctor.parallel import single_threaded_blas

    printable_streams()
    freeze_objects_at_exit()

    # One BLAS thread everywhere, so run, sweep, check and fix compute the same bits.
    ctx.with_resource(single_threaded_blas())


def freeze_objects_at_exit() -> None:
    """Let the interpreter end without scanning every object for cycles.

    As python exits, its garbage collector walks every container object still alive -- tens of
    thousands from pydantic, NumPy, click and nandoctor -- each time it collects while clearing
    the modules: 35 to 50 ms of a short run's 0.3 s. Frozen at exit (``gc.freeze``), they are
    left to the operating system; everything else shutdown does still happens (exit handlers,
    objects freed as their last reference goes), and our own files are closed before we exit
    (``report.output``). Not for ``trace``: the user's program ends as python would end it.
    Registered once however many commands one process runs (the tests run thousands)."""
    import atexit
    import gc

    atexit.unregister(gc.freeze)
    atexit.register(gc.freeze)


main.commands = LazyCommands(LAZY_COMMANDS)
