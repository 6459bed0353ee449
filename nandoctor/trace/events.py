"""The floating-point events of a user's program, caught through NumPy's error callback.

NumPy calls the callback once per operation that raised a flag, after it finished, with only the
flag's name. The callback (:class:`Recorder`) finds the innermost frame of the user's own files,
counts the event there, and at the first event whose statement really produced a non-finite
value, reads the op and its operands back from the source (:mod:`.evaluate`). Underflow is only
counted, on a path kept as short as possible: a program may raise millions of them.

A program may set its own error handling (``np.seterr``, ``np.errstate``, ``np.seterrcall``):
while it is traced those calls are answered by :class:`UserErrorState`, which remembers what the
program asked for and applies it after recording (warn, raise, call, print, log or ignore), so the
program behaves as it would and nandoctor still sees every event. Libraries' internal error
handling (``np.linalg``, array printing) uses NumPy's own ``errstate`` and is left alone.
"""

from __future__ import annotations

import ast
import contextlib
import contextvars
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from nandoctor.trace import npstate
from nandoctor.trace.frames import (
    _USER_CODE,
    display_path,
    frame_column,
    innermost_loop,
    is_user_code,
    outer_loops,
    statement_at,
    statement_source,
    user_frames,
)

KINDS = {
    "overflow": "overflow",
    "invalid value": "invalid",
    "divide by zero": "divide_by_zero",
    "underflow": "underflow",
}
NUMPY_KEYS = {
    "overflow": "over",
    "invalid": "invalid",
    "divide_by_zero": "divide",
    "underflow": "under",
}
MESSAGES = {
    "overflow": "overflow",
    "invalid": "invalid value",
    "divide_by_zero": "divide by zero",
    "underflow": "underflow",
}
FLAGS = {"divide_by_zero": 1, "overflow": 2, "underflow": 4, "invalid": 8}  # NumPy's FPE bits
UNDERFLOW_CAP = 100_000  # underflow events counted before counting stops (each costs ~1 us)
ALWAYS_EXAMINE = 8  # events examined at each place before sampling only powers of two


# found_by of a NaN the second pass met in a process the program started (events unwatched)
IN_CHILD = "second pass, in a child process"
# found_by of a NaN or Inf known only from the program's output: printed, held nowhere trace saw
PRINTED = "printed output"


@dataclass
class Frame:
    file: str
    line: int
    function: str
    source: str

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "source": self.source,
        }


@dataclass
class FirstNonFinite:
    """The first non-finite value the program created (``first_nonfinite`` in docs/output.md)."""

    file: str
    line: int
    function: str
    source: str
    op: str
    kind: str  # overflow | invalid | divide_by_zero | silent
    value: str | None  # nan | inf | -inf
    stack: list[Frame]
    operands: list[tuple[str, dict]] = field(default_factory=list)
    variables: dict[str, dict] = field(default_factory=dict)  # the operands' variables' numbers
    iteration: int | None = None
    iteration_note: str | None = None  # why the iteration is unknown, when it is
    loop: dict | None = None  # {"file", "line"} of the innermost enclosing loop
    variable: str | None = None  # silent only: the variable that first held it
    found_by: str = "callback"  # callback | second pass | IN_CHILD | end of run | PRINTED
    fingerprint: str | None = None  # to check that a re-run reached the same state
    placeholders: list[dict] = field(default_factory=list)  # silent: NaN/Inf written before it
    # made from finite operands by an op that raises no NumPy flag: which kind of op it is
    # ("Python float arithmetic", "np.einsum"); found by the line-traced second run
    no_flag: str | None = None
    # silent: computed only from these variables, which held the program's own placeholders
    computed_from: list[str] = field(default_factory=list)
    # made without a flag: (pass, largest operand) of the loop around it, from the second run
    growth: list[tuple[int, float]] = field(default_factory=list, repr=False)
    # the NumPy ufunc that raised the flag, as NumPy names it ("divide", "scalar divide"): inside
    # a library function (np.corrcoef), the op that really made the value
    ufunc: str | None = field(default=None, repr=False)
    # the 0-based column of the op, when its line holds several statements: which one made it
    column: int | None = field(default=None, repr=False)
    # (entry, largest operand) of each entry of the innermost loop, from the second run: over the
    # passes of the loop around it (the epochs around a batch loop)
    entry_growth: list[tuple[int, float]] = field(default_factory=list, repr=False)
    # silent: an Inf parsed from text (``float(cfg["clip"])``) that then spread into a value
    # computed from it: that value's ``variable``, ``file``, ``line``, ``source``, ``value``
    spread: dict | None = None

    def to_json(self) -> dict:
        out = {
            "file": self.file,
            "line": self.line,
            "function": self.function,
            "source": self.source,
            "op": self.op,
            "kind": self.kind,
            "value": self.value,
            "iteration": self.iteration,
            "loop": self.loop,
            "stack": [f.to_json() for f in self.stack],
            "operands": [{"expr": e, **n} for e, n in self.operands],
            "variables": self.variables,
        }
        if self.iteration is None and self.iteration_note:
            out["iteration_note"] = self.iteration_note
        if self.variable:
            out["variable"] = self.variable
        if self.no_flag:
            out["no_flag"] = self.no_flag
        if self.computed_from:
            out["computed_from"] = self.computed_from
        if self.spread:
            out["spread"] = self.spread
        out["found_by"] = self.found_by
        return out

    @classmethod
    def from_json(cls, d: dict) -> FirstNonFinite:
        operands = [(o["expr"], {k: v for k, v in o.items() if k != "expr"}) for o in d["operands"]]
        return cls(
            file=d["file"],
            line=d["line"],
            function=d["function"],
            source=d["source"],
            op=d["op"],
            kind=d["kind"],
            value=d["value"],
            stack=[Frame(**f) for f in d["stack"]],
            operands=operands,
            variables=d.get("variables", {}),
            iteration=d["iteration"],
            iteration_note=d.get("iteration_note"),
            loop=d["loop"],
            variable=d.get("variable"),
            found_by=d.get("found_by", "callback"),
            no_flag=d.get("no_flag"),
            computed_from=d.get("computed_from", d.get("from", [])),
            spread=d.get("spread"),
        )


@dataclass
class Site:
    """One kind of event at one user line, and how often it happened."""

    file: str
    line: int
    kind: str
    count: int = 0
    absorbed: int = 0  # events examined whose statement still produced a finite result
    aborted: int = 0  # events the program's own error handling turned into an exception
    op: str | None = None  # of the first absorbed event: the op that raised the flag,
    value: str | None = None  # the value it made (nan, inf, -inf),
    absorber: str | None = None  # the op that made the statement finite again,
    silenced: bool = False  # and whether the program had asked NumPy to ignore this kind
    # the line of the later statement that absorbed it, when the statement kept it in a variable
    absorbed_at: int | None = None
    integer: bool = False  # the op's result was integers: it made no NaN or Inf at all
    # the 0-based column where its statement starts, when the line holds several statements
    # (``g = w * c; w = w + g``): each is a site of its own, counted and examined apart
    column: int | None = None

    def to_json(self) -> dict:
        out = {
            "file": display_path(self.file),
            "line": self.line,
            "kind": self.kind,
            "count": self.count,
        }
        if self.column is not None:
            out["column"] = self.column + 1
        return out


class NonFiniteError(FloatingPointError):
    """Raised by ``nandoctor.watch(raise_on_nonfinite=True)`` at the first non-finite value."""

    def __init__(self, first: FirstNonFinite, result=None):
        self.first = first
        self.result = result
        where = f"{first.file}:{first.line}"
        when = f" (iteration {first.iteration})" if first.iteration else ""
        super().__init__(
            f"{first.value or 'non-finite'} from {first.op} at {where}{when}: {first.source}"
        )


class UserErrorState:
    """What the traced program asked NumPy to do on each kind of event, applied after recording.

    Kept per context, as NumPy 2 keeps its own: a thread starts from the state tracing began
    with (NumPy's defaults), a ``contextvars.copy_context().run(f)`` sees its own changes only,
    and one thread's ``np.seterr`` never reaches another."""

    def __init__(self):
        self._initial = (dict(npstate.geterr()), npstate.geterrcall())
        self._state: contextvars.ContextVar = contextvars.ContextVar("nandoctor_user_errstate")

    def _get(self) -> tuple[dict, object]:
        return self._state.get(self._initial)

    def modes_getter(self) -> Callable[[], dict]:
        """A cheap function of no argument giving :attr:`modes` in the running context, for the
        underflow fast path (no property, no method lookup per event)."""
        get, initial = self._state.get, self._initial
        return lambda: get(initial)[0]

    @property
    def modes(self) -> dict:  # over/under/divide/invalid -> mode (read only: set with seterr)
        return self._get()[0]

    @property
    def call(self):
        return self._get()[1]

    def seterr(self, all=None, divide=None, over=None, under=None, invalid=None):
        old, call = self._get()
        modes = dict(old)
        for key, mode in (
            ("divide", divide),
            ("over", over),
            ("under", under),
            ("invalid", invalid),
        ):
            mode = mode if mode is not None else all
            if mode is not None:
                if mode not in ("ignore", "warn", "raise", "call", "print", "log"):
                    raise ValueError(f"invalid error mode {mode!r}")
                modes[key] = mode
        self._state.set((modes, call))  # a new dict: a copied context keeps the one it had
        return dict(old)

    def geterr(self):
        return dict(self.modes)

    def seterrcall(self, func):
        with npstate.errstate():  # NumPy checks what it is given, in its own words
            npstate.seterrcall(func)
        modes, old = self._get()
        self._state.set((modes, func))
        return old

    def geterrcall(self):
        return self.call

    def errstate_class(self):
        state = self

        class errstate(contextlib.ContextDecorator):  # noqa: N801 - numpy's name
            def __init__(
                self, *, call=None, all=None, divide=None, over=None, under=None, invalid=None
            ):
                self._call, self._set = call, {"all": all, "divide": divide, "over": over}
                self._set |= {"under": under, "invalid": invalid}
                self._call_given = call is not None

            def __enter__(self):
                self._old = state.seterr(**self._set)
                if self._call_given:
                    self._old_call = state.seterrcall(self._call)

            def __exit__(self, *exc):
                state.seterr(**self._old)
                if self._call_given:
                    state.seterrcall(self._old_call)

        return errstate

    def apply(self, kind: str, ufunc: str, stacklevel: int) -> None:
        """Do what NumPy would have done, with NumPy's own words ("... encountered in exp").

        ``stacklevel`` (for ``warnings.warn``, from here) names the frame that ran the ufunc:
        NumPy warns from the innermost Python frame, a library's as well as the user's."""
        mode = self.modes[NUMPY_KEYS[kind]]
        if mode == "ignore":
            return
        message = f"{MESSAGES[kind]} encountered in {ufunc}"
        if mode == "warn":
            warnings.warn(message, RuntimeWarning, stacklevel=stacklevel + 1)
        elif mode == "raise":
            raise FloatingPointError(message)
        elif mode == "call" and self.call is None:  # as NumPy words it (two spaces too)
            raise NameError(
                f"python callback specified for {MESSAGES[kind]} (in  {ufunc}) but no function "
                "found."
            )
        elif mode == "log" and self.call is None:
            raise NameError(
                f"log specified for {MESSAGES[kind]} (in {ufunc}) but no object with write "
                "method found."
            )
        elif mode == "call":
            self.call(MESSAGES[kind], FLAGS[kind])
        elif mode == "log":
            self.call.write(f"Warning: {message}\n")
        elif mode == "print":
            print(f"Warning: {message}", file=sys.stderr)

    @contextlib.contextmanager
    def patched(self):
        """Answer the program's ``np.seterr``/``np.errstate``/... with this object while tracing."""
        names = ("seterr", "geterr", "seterrcall", "geterrcall", "errstate")
        saved = {n: getattr(np, n) for n in names}
        replacements = {n: getattr(self, n) for n in names[:-1]} | {
            "errstate": self.errstate_class()
        }
        for n, fn in replacements.items():
            setattr(np, n, fn)
        try:
            yield self
        finally:
            for n, fn in saved.items():
                setattr(np, n, fn)


class Recorder:
    """NumPy's error callback: counts every event at its user line, examines the first real one.

    ``on_first(first, frames)`` is called once, at the first event whose statement produced a
    non-finite value (it may raise, e.g. :class:`NonFiniteError`, or stop a re-run).
    """

    def __init__(
        self,
        on_first: Callable | None = None,
        user_state: UserErrorState | None = None,
        on_stopped: Callable | None = None,
    ):
        self.sites: dict[tuple, Site] = {}
        self.underflow: dict[tuple, int] = {}
        self.underflow_capped = False  # counting stopped at UNDERFLOW_CAP: counts are lower bounds
        self.first: FirstNonFinite | None = None
        # the first op whose flag the program's own handling turned into an exception (np.seterr
        # 'raise', a warnings filter 'error'): what it would have made, read from its operands
        self.stopped_by: FirstNonFinite | None = None
        self.plan: dict | None = None  # what a re-run needs to find the first event's loop again
        self.stop_plan: dict | None = None  # the same for ``stopped_by``
        self.on_stopped = on_stopped  # called as on_first at the op the program's handling stopped
        self.first_silenced = False  # the program had set 'ignore' for the first value's error
        self.first_site: Site | None = None  # the site of the first value's event
        self.on_first = on_first
        self.user_state = user_state or UserErrorState()
        self.own_errors: list[str] = []  # nandoctor's own failures while recording (a bug)
        self._busy = False

    # -- the callback: keep the underflow path short
    def callback(self) -> _Log:
        """What NumPy calls: in its "log" mode, ``write("Warning: overflow encountered in exp\\n")``
        (unlike "call" mode this names the ufunc, which the program's own warnings need). The
        ``write`` is a closure over the state, the cheapest thing to call."""
        getframe, user_code, counts = sys._getframe, _USER_CODE, self.underflow
        slow, left = self._event, [UNDERFLOW_CAP]
        modes = self.user_state.modes_getter()  # the program's modes in the running context

        def on_fp_error(message: str) -> None:
            if message[9] == "u":  # "Warning: underflow encountered in ..."
                frame = getframe(1)
                code = frame.f_code
                if user_code.get(code) and modes()["under"] == "ignore":
                    key = (code, frame.f_lineno)
                    counts[key] = counts.get(key, 0) + 1
                    left[0] -= 1
                    if not left[0]:  # enough to tell where; stop paying for each one
                        self.underflow_capped = True
                        npstate.seterr(under="ignore")
                    return
            try:
                slow(message)
            except BaseException as e:  # the program's own raise/error: keep our frames out
                raise e.with_traceback(None)  # noqa: B904 - the same exception

        return _Log(on_fp_error)

    def _event(self, message: str) -> None:
        if self._busy:
            return
        what, _, ufunc = message[9:].rstrip("\n").partition(" encountered in ")
        kind = KINDS.get(what, what)
        frame = sys._getframe(2)
        while frame is not None and not is_user_code(frame.f_code):
            frame = frame.f_back
        if kind == "underflow" and frame is not None:
            key = (frame.f_code, frame.f_lineno)
            self.underflow[key] = self.underflow.get(key, 0) + 1
        watched = kind != "underflow" and frame is not None
        try:  # first what the program asked for: a raise aborts the statement, nothing is kept
            self.user_state.apply(kind, ufunc, 3)
        except BaseException:
            if watched:
                self._recording(frame, kind, aborted=True, ufunc=ufunc)
            raise
        if watched:
            self._recording(frame, kind, aborted=False, ufunc=ufunc)

    def _recording(self, frame, kind: str, aborted: bool, ufunc: str | None = None) -> None:
        """Record the event, from inside the program's NumPy op: nandoctor's own failure here
        must never become the program's, so it is kept as a note, not raised."""
        self._busy = True
        show = warnings._showwarnmsg  # re-evaluating np.mean([]) must not warn the program again
        warnings._showwarnmsg = _quiet
        try:
            with npstate.errstate(all="ignore"):
                try:
                    found = self._record(frame, kind, aborted, ufunc)
                except Exception as e:  # a bug of ours: reported, never the program's
                    self.own_errors.append(f"{type(e).__name__}: {e}")
                    found = False
                if found and self.on_first is not None:  # may raise, on purpose
                    self._busy = False
                    self.on_first(self.first, frame)
                elif found is None and self.on_stopped is not None:
                    self._busy = False
                    self.on_stopped(self.stopped_by, frame)
        finally:
            self._busy = False
            warnings._showwarnmsg = show

    def _record(self, frame, kind: str, aborted: bool = False, ufunc: str | None = None) -> bool:
        """Count the event and examine it; True when it is the first non-finite value kept, None
        when it is the op the program's own error handling stopped (``aborted``: it raised, so
        the statement kept no value)."""
        filename, line = frame.f_code.co_filename, frame.f_lineno
        column = frame_column(frame)  # None unless the line holds several statements
        stmt = statement_at(filename, line, column) if column is not None else None
        start = stmt.col_offset if stmt is not None else None
        key = (filename, line, start, kind)
        site = self.sites.get(key)
        if site is None:
            site = self.sites[key] = Site(filename, line, kind, column=start)
        site.count += 1
        site.aborted += aborted
        if self.first is not None:
            return False
        stops = aborted and self.stopped_by is None  # the op the program's own handling stopped
        if not stops and (aborted or not _worth_examining(site.count)):
            return False
        from nandoctor.trace.evaluate import absorbed_later, read_line

        if stmt is None:
            stmt = statement_at(filename, line)
        reading = read_line(frame, stmt, kind)
        if stops:
            self.stopped_by = first_from_frame(frame, kind, reading, ufunc)
            self.stop_plan = rerun_plan(frame, reading.node or _in_place(stmt))
            return None
        if not reading.absorbed and reading.reproduced:  # kept in a variable: read after?
            reading.later = absorbed_later(frame, stmt, reading)
            if reading.later is not None:
                reading.absorbed, reading.absorber = True, reading.later[0]
        if reading.absorbed:
            site.absorbed += 1
            if site.op is None:
                site.op, site.value, site.absorber = reading.op, reading.value, reading.absorber
                site.integer = reading.integer
                site.absorbed_at = reading.later[1] if reading.later else None
                site.silenced = self.user_state.modes[NUMPY_KEYS[kind]] == "ignore"
            return False
        if not reading.reproduced and not reading.names:
            reading.names = _out_array(frame, _in_place(stmt))
        self.first = first_from_frame(frame, kind, reading, ufunc)
        self.first_site = site
        self.first_silenced = self.user_state.modes[NUMPY_KEYS[kind]] == "ignore"
        self.plan = rerun_plan(frame, reading.node or _in_place(stmt))
        return True

    @contextlib.contextmanager
    def armed(self):
        """Record every event of the code run inside (over, invalid, divide; underflow counted)."""
        callback = self.callback()
        with self.user_state.patched(), _threads_armed(callback):
            old = npstate.seterr(all="log")
            old_call = npstate.seterrcall(callback)
            try:
                yield self
            finally:
                npstate.seterr(**old)
                npstate.seterrcall(old_call)

    def events(self) -> list[Site]:
        under = [
            Site(c.co_filename, line, "underflow", n) for (c, line), n in self.underflow.items()
        ]
        return sorted([*self.sites.values(), *under], key=lambda s: (-s.count, s.file, s.line))


def _quiet(message) -> None:
    """Shows no warning: the one the re-evaluation of a line would repeat."""


class _Log:
    """NumPy's "log" error handler: an object with a ``write`` method."""

    __slots__ = ("write",)

    def __init__(self, write: Callable[[str], None]):
        self.write = write


@contextlib.contextmanager
def _threads_armed(callback):
    """Threads started meanwhile record too: NumPy 2 keeps the error state per context, so a
    new thread would start with NumPy's defaults (no callback)."""
    import threading

    start = threading.Thread.start

    def armed_start(thread, *args, **kwargs):
        run = thread.run

        def armed_run():
            with npstate.errstate(all="log", call=callback):
                run()

        thread.run = armed_run
        return start(thread, *args, **kwargs)

    threading.Thread.start = armed_start
    try:
        yield
    finally:
        threading.Thread.start = start


def _worth_examining(count: int) -> bool:
    return count <= ALWAYS_EXAMINE or (count & (count - 1)) == 0


def _loop_json(loop, frames=(), loop_frame=None) -> dict | None:
    """``first_nonfinite.loop``: where the innermost enclosing loop is, whether its body
    updates a variable by a step (``loops.updates_a_variable``: what a growth is blamed on), and
    the loops around it (``outer``, innermost first) with their passes where their loop
    variables tell them."""
    if loop is None:
        return None
    from nandoctor.trace.loops import iteration_from_target, updates_a_variable

    out = {"file": display_path(loop.file), "line": loop.line, "updates": updates_a_variable(loop)}
    around = outer_loops(list(frames), loop_frame, loop) if loop_frame is not None else []
    if around:
        out["outer"] = [
            {
                "file": display_path(other.file),
                "line": other.line,
                "iteration": iteration_from_target(frame, other),
                "updates": updates_a_variable(other),
            }
            for frame, other in around
        ]
    return out


def first_from_frame(frame, kind: str, reading, ufunc: str | None = None) -> FirstNonFinite:
    frames = user_frames(frame)
    stack = _stack(frames)
    loop_frame, loop = innermost_loop(frames)
    _placeholder_origins(frames[0], reading.operands)
    first = FirstNonFinite(
        file=stack[0].file,
        line=stack[0].line,
        function=stack[0].function,
        source=stack[0].source,
        op=reading.op,
        kind=kind,
        value=reading.value or likely_value(kind, reading.op),
        stack=stack,
        operands=reading.operands,
        variables=reading.names,
        loop=_loop_json(loop, frames, loop_frame),
        ufunc=ufunc,
        column=frame_column(frames[0]),
    )
    if loop is not None:
        from nandoctor.trace.loops import iteration_from_target

        first.iteration = iteration_from_target(loop_frame, loop)
    first.fingerprint = fingerprint(frame, first)
    return first


def _placeholder_origins(frame, operands: list[tuple[str, dict]]) -> None:
    """Mark each operand already holding NaN/Inf that the program wrote from its own constant."""
    from nandoctor.trace.silent import placeholder_origin

    code = frame.f_code
    for expr, numbers in operands:
        if numbers.get("nonfinite") and expr.isidentifier():
            origin = placeholder_origin(code.co_filename, code.co_firstlineno, frame.f_lineno, expr)
            if origin is not None:
                numbers["placeholder"] = origin


def likely_value(kind: str, op: str) -> str:
    """What the op made, when the line could not be re-evaluated: log(0) is -inf."""
    if kind == "invalid":
        return "nan"
    return "-inf" if kind == "divide_by_zero" and op.startswith("log") else "inf"


def _stack(frames, line: int | None = None, column: int | None = None) -> list[Frame]:
    stack = [
        Frame(
            display_path(f.f_code.co_filename),
            f.f_lineno,
            f.f_code.co_name,
            statement_source(f.f_code.co_filename, f.f_lineno, frame_column(f)),
        )
        for f in frames
    ]
    if line is not None and stack:
        top = frames[0].f_code.co_filename
        source = statement_source(top, line, column)
        stack[0] = Frame(stack[0].file, line, stack[0].function, source)
    return stack


def first_silent(
    frame, line: int, variable: str, found: tuple, passes=None, made: dict | None = None
) -> FirstNonFinite:
    """The first non-finite value no flagged operation created: the line that put it in
    ``variable``; ``passes(frame, loop)``: the pass a loop is in, counted by the run (for a loop
    whose variable is not a counter: ``for row in rows``); ``made``: the op of that line that
    made it from finite operands without a flag (``silent.created_by``), when one did."""
    kind, count, size, *kinds = found  # how many of each kind, when known
    frames = user_frames(frame)
    from nandoctor.trace.silent import statement_assigning

    stmt = statement_assigning(frame.f_code.co_filename, line, variable)
    column = stmt.col_offset if stmt is not None and stmt.lineno == line else None
    stack = _stack(frames, line, column)
    loop_frame, loop = innermost_loop(frames, line)  # the frame already stands on the next line
    first = FirstNonFinite(
        file=stack[0].file,
        line=line,
        function=stack[0].function,
        source=stack[0].source,
        op="assign",
        kind="silent",
        value=kind,
        stack=stack,
        operands=[(variable, {"nonfinite": count, "size": size, **(kinds[0] if kinds else {})})],
        loop=_loop_json(loop, frames, loop_frame),
        variable=variable,
        found_by="second pass",
    )
    if loop is not None:
        from nandoctor.trace.loops import iteration_from_target

        first.iteration = iteration_from_target(loop_frame, loop)
        if first.iteration is None and passes is not None:
            first.iteration = passes(loop_frame, loop)
    if made is not None and made.get("unread"):  # a call not re-run: which op, unknown
        first.op, first.operands = made["op"], made["operands"]
        first.no_flag = f"a call nandoctor does not re-run (`{made['op']}`)"
    elif made is not None:
        first.op, first.value = made["op"], made["value"]
        first.kind = "invalid" if made["value"] == "nan" else "overflow"
        first.operands, first.variables = made["operands"], made["names"]
        if made.get("flagged"):  # it does raise one: unwatched where it ran (a child process)
            first.kind = made["flagged"][0]
        else:
            first.no_flag = "Python float arithmetic" if made["python"] else f"np.{made['op']}"
    return first


def _in_place(stmt) -> ast.AST | None:
    """The op of an in-place statement (``acc *= c``; ``np.multiply(acc, c, out=acc)``), which
    is not reproduced once its target holds the result: the second run measures it from the
    line's start, where the target is still the operand. None for any other statement."""
    if isinstance(stmt, ast.AugAssign):
        return stmt
    call = getattr(stmt, "value", None)
    if isinstance(call, ast.Call) and any(k.arg == "out" for k in call.keywords):
        return call
    return None


def _out_array(frame, node) -> dict[str, dict]:
    """The numbers (after the op: its dtype, and what it made) of the ``out=`` array of an
    in-place call (``np.exp(Z, out=Z)``), whose operand the op overwrote."""
    from nandoctor.trace.evaluate import FrameEvaluator, describe

    out = [k.value for k in getattr(node, "keywords", ()) if k.arg == "out"]
    if not out:
        return {}
    try:
        numbers = describe(FrameEvaluator(frame).eval(out[0]))
    except Exception:
        return {}
    return {ast.unparse(out[0]): numbers} if numbers else {}


def rerun_plan(frame, node) -> dict:
    """The code objects (by file, name, first line) of the loop and of the failing line."""
    loop_frame, loop = innermost_loop(user_frames(frame))

    def key(code) -> list:
        return [code.co_filename, code.co_name, code.co_firstlineno]

    plan = {"op_code": key(frame.f_code), "op_line": frame.f_lineno, "op_pos": None}
    if node is not None:
        plan["op_pos"] = [node.lineno, node.col_offset, node.end_lineno, node.end_col_offset]
        plan["op_file"] = frame.f_code.co_filename
    if loop is not None:
        plan |= {"loop_code": key(loop_frame.f_code), "loop_line": loop.line, "loop_end": loop.end}
    return plan


def fingerprint(frame, first: FirstNonFinite) -> str:
    """A digest of the failing frame's numbers: equal only if a re-run reached the same state."""
    import hashlib

    digest = hashlib.blake2b(digest_size=12)
    digest.update(f"{first.file}:{first.line}:{first.kind}".encode())
    for name in sorted(frame.f_locals):
        value = frame.f_locals[name]
        if isinstance(value, np.ndarray) and value.dtype.kind in "fc" and value.size <= 10_000_000:
            digest.update(name.encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        elif isinstance(value, float):
            digest.update(f"{name}={value!r}".encode())
    return digest.hexdigest()
