"""``nandoctor trace``: run the user's own NumPy program and find its first NaN or Inf."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from nandoctor.cli.common import CONTEXT, emit, fail_usage, html_option, printable_streams

FORMATS = ("text", "json")


@click.command(
    context_settings={**CONTEXT, "ignore_unknown_options": True, "allow_interspersed_args": False}
)
@click.option(
    "-m",
    "module",
    is_flag=True,
    help="Run the module named next (-m MODULE [ARGS]...), as python -m MODULE does.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="text",
    show_default=True,
    help="Output format (json: the program's own output goes to stderr).",
)
@html_option
@click.argument(
    "argv", nargs=-1, type=click.UNPROCESSED, metavar="SCRIPT.py|DIR|APP.zip|MODULE [ARGS]..."
)
def trace(module, fmt, html, argv):
    """Run a Python program as python would, and report where, when and why it first created
    a NaN or an Inf.

    Exit 0 when no non-finite value was created, 1 when one was, 2 for a usage error, 3 when
    the program itself failed without any non-finite value, 130/143 when stopped by Ctrl-C or
    SIGTERM (what was found so far on stderr). nandoctor's options come before the script;
    everything after it is the program's own arguments.

    \b
    Examples:
      nandoctor trace train.py --epochs 10
      nandoctor trace --format json -m mypkg.train > report.json
      nandoctor trace --html trace.html train.py
      nandoctor trace myapp/              # a folder or .zip with __main__.py
    """
    from nandoctor.trace.runner import Program
    from nandoctor.trace.session import trace_program

    # The module, like the script, is the first argument: options parsing stops there, so all
    # that follows is the program's own (`-m trainer --help` is the trainer's --help).
    if not argv:
        fail_usage("trace: give a SCRIPT.py to run, or -m MODULE")
    if not module:
        _refuse_special_file(argv[0])
    program = Program(argv[0], tuple(argv[1:]), module=module)
    if html:
        html = check_html(html, _program_files(argv[0], module))
    started_in = Path.cwd()  # the program may change directory; its paths are relative to here
    from nandoctor.interrupt import Interrupted

    try:
        result = trace_program(program, output_to_stderr_=fmt == "json")
    except Interrupted as stop:
        show_partial(stop)
        raise
    if html:
        from nandoctor.report.html import trace_page

        emit(trace_page(result.to_json(), base=started_in), html, option="--html")
    printable_streams()  # after the program: it ran with the streams exactly as python gives them
    from nandoctor.report.trace import RENDERERS  # after the program too: not its start-up time

    click.echo(RENDERERS[fmt](result), nl=False)  # not emit(): rich would cost start-up time
    sys.exit(result.exit_code)


def _program_files(target: str, module: bool) -> list[str]:
    """The program's own files an output must not replace: the script, a folder's
    ``__main__.py``, or a top-level module's source (found without importing anything)."""
    if not module:
        main_py = os.path.join(target, "__main__.py")
        return [target, main_py] if os.path.isdir(target) else [target]
    if "." in target:  # finding a submodule would import its packages: the program's code
        return []
    from importlib.machinery import PathFinder

    try:  # where python -m finds it: the current folder first
        found = PathFinder.find_spec(target, [os.getcwd(), *sys.path])
    except (ImportError, ValueError):
        return []
    return [found.origin] if found is not None and found.has_location and found.origin else []


def _refuse_special_file(script: str) -> None:
    """A device, pipe or socket as the SCRIPT would be read without end (``/dev/zero`` fills
    the memory): refuse it, as a spec or data file that is not a regular file is refused."""
    import stat

    try:
        mode = os.stat(script).st_mode
    except OSError:
        return  # missing or unreadable: the program's own check says so
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        fail_usage(
            f"SCRIPT {script}: is not a regular file; give a Python script, a folder or a .zip"
        )


def show_partial(stop) -> None:
    """On SIGINT or SIGTERM: what the program's run showed until then, on stderr (stdout gets
    nothing: any report there is a whole one), and a line saying it is partial."""
    so_far = getattr(stop, "so_far", None)
    if so_far is None:
        return
    printable_streams()
    from nandoctor.report.trace import text

    click.echo(text(so_far), nl=False, err=True)
    click.echo(
        f"\ninterrupted {stop.stage} — partial: the first flagged operation and the events of "
        "the program's run, not checked against what it kept, no second run finished (an "
        "iteration its loop variable did not tell is unknown); no report written",
        err=True,
    )


def check_html(html: str, inputs: list[str]) -> str:
    """Refuse, before the program runs, an --html target that is an input or unwritable; return
    it absolute, so a program that changes directory does not move the report."""
    from nandoctor.report.output import check_outputs

    check_outputs({"--html": html}, inputs)
    return str(Path(html).absolute())
