"""What every command shares: consoles, the spec loader, option decorators, progress, output."""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, NoReturn

import click

from nandoctor.errors import UsageProblem

if TYPE_CHECKING:
    from rich.console import Console

    from nandoctor.spec.models import Spec

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _width(stream=None) -> int | None:
    """Rich's own width on a terminal; elsewhere $COLUMNS or 120 (not the 80 of a dumb pipe)."""
    if (stream or sys.stdout).isatty():
        return None
    try:
        return max(int(os.environ.get("COLUMNS", 120)), 60)
    except ValueError:
        return 120


# What a symbol becomes on a terminal that cannot show it (a non-UTF-8 locale, an ASCII pipe).
ASCII_FOR = {
    **dict.fromkeys("✗✘", "x"),
    **dict.fromkeys("✓✔", "v"),
    **dict.fromkeys("─━═", "-"),
    **dict.fromkeys("│┃║", "|"),
    **dict.fromkeys("┌┐└┘├┤┬┴┼╭╮╰╯", "+"),
    **dict(zip("▁▂▃▄▅▆▇█", "_.,-=+*#", strict=True)),
    "→": "->",
    "←": "<-",
    "×": "x",
    "λ": "lambda",
    "…": "...",
    "≤": "<=",
    "≥": ">=",
    "≈": "~",
    "∞": "inf",
    "±": "+/-",
    "•": "*",
    "·": ".",
    "–": "-",
    "—": "--",
    "⚠": "!",
    "↑": "^",
    "↓": "v",
}


def _ascii_fallback(err: UnicodeError) -> tuple[str, int]:
    """An encoding error handler: known symbols become ASCII look-alikes, anything else ``?``."""
    if not isinstance(err, UnicodeEncodeError):
        raise err
    text = err.object[err.start : err.end]
    return "".join(ASCII_FOR.get(ch, "?") for ch in text), err.end


codecs.register_error("nandoctor-ascii", _ascii_fallback)


def printable_streams() -> None:
    """On a terminal or pipe whose encoding is not UTF-8, write what it cannot show as ASCII
    rather than fail with ``UnicodeEncodeError`` half-way through a report."""
    for stream in (sys.stdout, sys.stderr):
        encoding = (getattr(stream, "encoding", None) or "utf-8").lower().replace("-", "")
        if not encoding.startswith("utf") and hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="nandoctor-ascii")


def stdout_console() -> Console:
    from rich.console import Console  # imported on use: `nandoctor trace` never needs rich

    return Console(highlight=False, width=_width(), no_color="NO_COLOR" in os.environ or None)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(
        stderr=True,
        highlight=False,
        width=_width(sys.stderr),
        no_color="NO_COLOR" in os.environ or None,
    )


def fail_usage(message: str) -> NoReturn:
    """End the command with ``message`` on stderr and exit 2 (invalid spec or data, bad usage)."""
    raise UsageProblem(message)


def load(path: str, overrides=(), steps: int | None = None) -> Spec:
    """Load a spec for a command (a :class:`SpecError` is a ``UsageProblem``: exit 2)."""
    from nandoctor.spec.models import load_spec

    return load_spec(path, overrides).capped(steps)


def interactive() -> bool:
    """Progress bars draw only when stderr is a terminal."""
    return sys.stderr.isatty()


@contextmanager
def step_progress(total: int, label: str, enabled: bool) -> Iterator[Callable[[int], None] | None]:
    """A transient progress bar on stderr (a TTY only); yields an ``advance(done)`` callback
    (``advance(done, total)`` also changes the total, e.g. to count cluster units)."""
    if not enabled or not interactive():
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=stderr_console(),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total)
        drawn = 0  # the count drawn last

        def advance(done: int, new_total: int | None = None) -> None:
            # A redraw costs more than a small network's step: about 500 per bar at most.
            nonlocal drawn, total
            if new_total is not None:
                total = new_total
            elif done - drawn < max(1, total // 500) and done < total:
                return
            drawn = done
            bar.update(task, completed=done, total=new_total)

        yield advance


@contextmanager
def count_progress(total: int, label: str, enabled: bool) -> Iterator[Callable[..., None]]:
    """Like :func:`step_progress`, for work counted in finished items: yields ``done(*_)``."""
    with step_progress(total, label, enabled) as advance:
        finished = 0

        def done(*_ignored) -> None:
            nonlocal finished
            finished += 1
            if advance:
                advance(finished)

        yield done


def emit(rendering, output: str | None = None, *, option: str = "-o") -> None:
    """Show one rendering (a string or a rich renderable) on stdout, or write it to ``output``."""
    from nandoctor.report.output import as_text, write_text

    if output is None:
        if isinstance(rendering, str):
            click.echo(rendering, nl=not rendering.endswith("\n"))
        else:
            stdout_console().print(rendering)
        return
    text = as_text(rendering)
    try:
        write_text(output, text if text.endswith("\n") else text + "\n")
    except OSError as e:
        fail_usage(f"{option} {output}: {e.strerror}")


steps_option = click.option(
    "--steps", type=click.IntRange(min=1), help="Cap the spec's step budget."
)
set_option = click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a spec key (dotted, typed by the schema), e.g. train.learning_rate=0.05.",
)


def jobs_option(help: str = "Worker processes for the re-runs.") -> Callable:
    return click.option("--jobs", "-j", type=click.IntRange(min=1), help=help)


def _set_threads(ctx, param, value):
    from nandoctor.parallel import set_threads

    set_threads(value)
    return value


threads_option = click.option(
    "--threads",
    type=click.IntRange(min=1),
    expose_value=False,
    callback=_set_threads,
    help="BLAS threads per run (default: chosen per spec from its shapes and the cores; "
    "recorded in the JSON, used by every re-run).",
)


cluster_option = click.option(
    "--cluster",
    metavar="ADDRESS|local",
    envvar="DASK_SCHEDULER_ADDRESS",
    help="Send the work units to the Dask scheduler at ADDRESS (e.g. tcp://10.0.0.5:8786;"
    " default $DASK_SCHEDULER_ADDRESS), or to a new local Dask cluster of --jobs workers with"
    " 'local'. Needs nandoctor[dask].",
)


def format_option(registry: dict, default: str = "text") -> Callable:
    """``--format`` offering exactly the keys of a renderer registry."""
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(registry)),
        default=default,
        show_default=True,
        help="Output format.",
    )


# ---------------------------------------------------------------- pictures (--html, --plot, ...)
def _plot_target(_ctx, _param, value):
    if value is not None:
        from nandoctor.report.plot import check_target

        check_target(value)
    return value


def _tensorboard_target(_ctx, _param, value):
    if value is not None:
        from nandoctor.report.tensorboard import check_logdir

        check_logdir(value)
    return value


html_option = click.option(
    "--html",
    type=click.Path(dir_okay=False),
    help="Also write a self-contained HTML report with charts (no network needed to view it).",
)
plot_option = click.option(
    "--plot",
    type=click.Path(dir_okay=False),
    callback=_plot_target,
    metavar="FILE.png|.svg",
    help="Also draw the main charts as one image (needs: pip install 'nandoctor[plot]').",
)
tensorboard_option = click.option(
    "--tensorboard",
    type=click.Path(),  # not file_okay=False: check_logdir's message says how to fix it
    callback=_tensorboard_target,
    metavar="DIR",
    help="Also write the per-step history as a new TensorBoard event file in DIR, made when"
    " missing (needs 'nandoctor[tensorboard]').",
)
verify_full_option = click.option(
    "--verify-full",
    is_flag=True,
    help="Verify each fix over the spec's whole step budget (default: 10x the failure step,"
    " at least 1000 steps).",
)
