"""Run a script or module as ``python`` would: same ``sys.argv``, ``__main__``, ``sys.path[0]``.

The program's own exceptions and ``sys.exit`` are caught and kept as its outcome; its traceback
is shown without nandoctor's frames, as ``python`` would show it. The locals of the user's
functions that have returned by the end (``main()``'s, in the usual layout) are kept too
(:class:`FrameKeeper`), so that a NaN left there is seen like one left in the globals.
"""

from __future__ import annotations

import ast
import contextlib
import linecache
import os
import re
import runpy
import sys
import traceback
from dataclasses import dataclass, field
from functools import lru_cache

from nandoctor.errors import UsageProblem
from nandoctor.trace.frames import innermost_user_frame, is_user_code, paths_from

_REAL_EXIT = os._exit  # replaced while the traced program runs (see ending_as_python)


@dataclass(frozen=True)
class Program:
    """``python SCRIPT ARGS`` (``module`` False) or ``python -m MODULE ARGS`` (``module`` True)."""

    target: str
    args: tuple[str, ...] = ()
    module: bool = False

    @property
    def label(self) -> str:
        return f"-m {self.target}" if self.module else self.target

    def to_json(self) -> dict:
        return {"target": self.target, "args": list(self.args), "module": self.module}

    @classmethod
    def from_json(cls, d: dict) -> Program:
        return cls(d["target"], tuple(d["args"]), d["module"])

    def check(self) -> None:
        """Usage problems before anything runs: no such script or module."""
        if self.module and self.target.endswith(".py"):  # find_spec would import "a.b" to look
            raise UsageProblem(  # for "a.b.py": run the user's module, untraced, to say no
                f"-m {self.target}: give the module's name, without .py "
                f"(-m {self.target[:-3]}), or the script's path without -m"
            )
        if self.module:
            import importlib.util

            sys.path.insert(0, os.getcwd())
            try:
                spec = importlib.util.find_spec(self.target)
            except (ImportError, ValueError):
                spec = None
            finally:
                sys.path.pop(0)
            if spec is None:
                raise UsageProblem(f"-m {self.target}: no module named {self.target!r}")
            if spec.submodule_search_locations is not None and not _has_main(spec):
                raise UsageProblem(  # as python -m says it
                    f"-m {self.target}: No module named {self.target}.__main__; "
                    f"'{self.target}' is a package and cannot be directly executed"
                )
        elif not os.path.exists(self.target):
            raise UsageProblem(f"SCRIPT {self.target}: no such file")
        elif os.path.isdir(self.target) and not self.runs_a_folder:
            raise UsageProblem(f"SCRIPT {self.target}: is a directory with no __main__.py")

    @property
    def runs_a_folder(self) -> bool:
        """``python DIR`` or ``python APP.zip``: a folder or zip file run by its ``__main__.py``
        (the folder itself is then ``sys.path[0]``)."""
        if self.module:
            return False
        if os.path.isdir(self.target):
            return os.path.isfile(os.path.join(self.target, "__main__.py"))
        return _zip_with_main(self.target)


def _has_main(package) -> bool:
    """Whether the package of ``package`` (its spec) has a ``__main__`` module, as ``python -m``
    runs a package by; looked up in its folders, nothing of it imported."""
    from importlib.machinery import PathFinder

    locations = list(package.submodule_search_locations or [])
    try:
        return PathFinder.find_spec(f"{package.name}.__main__", locations) is not None
    except (ImportError, ValueError):
        return True  # unknown: let the run say it, as python would


def _zip_with_main(path: str) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            return "__main__.py" in z.namelist()
    except (OSError, zipfile.BadZipFile):
        return False


def _cache_zip_sources(path: str) -> None:
    """Put the source of every ``.py`` file of the zip file ``path`` in :mod:`linecache`, under
    the names its code objects carry (``APP.zip/helper.py``): the lines of a failing op are read
    by file name, and a file inside a zip cannot be opened by it."""
    import zipfile

    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            if name.endswith(".py"):
                text = z.read(name).decode("utf-8", errors="replace")
                full = os.path.join(path, name)
                linecache.cache[full] = (len(text), None, text.splitlines(True), full)


@dataclass
class Outcome:
    """How the program ended."""

    exit_code: int = 0
    exception: BaseException | None = None
    traceback_text: str | None = None  # the program's traceback, nandoctor's frames removed
    globals: dict = field(default_factory=dict)  # __main__'s globals at the end
    frames_locals: list[dict] = field(default_factory=list)  # locals of the raising frames
    returned_locals: list[tuple[str, dict]] = field(default_factory=list)  # (function, locals)
    printed_nonfinite: str | None = None  # the first line the program printed with nan or inf
    # the first printed line whose nan/inf is only a value given on the command line, echoed
    # (``Namespace(clip=inf)`` after ``--clip inf``): (line, the argument as given)
    printed_echo: tuple[str, str] | None = None
    stdin_read: list[str] | None = None  # what it read from sys.stdin (for the second run)
    started_processes: bool = False  # multiprocessing or subprocess: events there are unseen
    ended_by: str | None = None  # "os._exit(0)" or "os.abort()": how it ended its own process
    # the atexit handlers it registered (function, args, kwargs), run when it has ended
    exit_handlers: list[tuple] = field(default_factory=list)
    ended_code: int = 0  # the exit code it asked for there
    interrupted: int | None = None  # the signal (SIGINT, SIGTERM) that reached it, if one did

    @property
    def failed(self) -> bool:
        return self.exit_code != 0

    def to_json(self) -> dict:
        exc = None
        if self.exception is not None:
            exc = f"{type(self.exception).__name__}: {self.exception}"
        return {"exit_code": self.exit_code, "exception": exc}


class FrameKeeper:
    """Holds the user's frames seen each time the garbage collector runs, so that their locals
    outlive them: a frame object someone holds keeps its variables when its function returns.

    Nothing runs per line or per call: the collector's callback runs about once per 700
    container allocations, and loading data (where a NaN usually comes in) makes thousands, so
    ``main()`` is seen while it runs. A function that returns before any collection is not.
    Only the last frame of each code object is held (one call's locals per function).
    """

    def __init__(self):
        self.frames: dict = {}  # code -> its latest frame seen

    def __call__(self, phase: str, info: dict) -> None:
        if phase != "start":
            return
        frame = sys._getframe(1)
        while frame is not None:
            if is_user_code(frame.f_code):  # cached per code object
                self.frames[frame.f_code] = frame
            frame = frame.f_back

    @contextlib.contextmanager
    def kept(self, outcome: Outcome):
        import gc

        gc.callbacks.append(self)
        try:
            yield
        finally:
            gc.callbacks.remove(self)
            outcome.returned_locals = [
                (code.co_name, dict(frame.f_locals))
                for code, frame in self.frames.items()
                if code.co_name != "<module>"  # a module's variables are its globals
            ]
            self.frames.clear()


# nan or inf as Python, NumPy and torch print a value: lower case (prose and column headers say
# "NaN", "Inf"; a log level is "INF"), not inside a word ("banana", "info") nor a call ("inf(").
NONFINITE_TOKEN = re.compile(r"(?<![\w.])-?(?:nan|inf)(?![\w(])")
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+(?:\.\d*)?[eE][-+]?\d+|nan|inf)[,;]?")
COUNT = re.compile(r"\d+")  # "0 nan values", "12 inf": how many, not a value
# Words after which "nan" or "inf" is prose about one ("no nan", "checking for inf").
NOT_A_VALUE_AFTER = frozenset(
    {"no", "not", "any", "without", "with", "for", "of", "or", "and", "a", "the", "contains"}
)
LINE_ENDS = re.compile(r"[\r\n]")  # a progress bar's \r ends a line too
CANDIDATE = re.compile(r"nan|inf")  # what a line must hold to be judged at all


def value_spans(line: str) -> list[tuple[int, int, str]]:
    """(start, end, nan | inf | -inf) of each nan or inf ``line`` shows as a value
    (:func:`printed_value`)."""
    return [
        (hit.start(), hit.end(), "nan" if hit.group().endswith("nan") else hit.group())
        for hit in NONFINITE_TOKEN.finditer(line)
        if _is_value(line[: hit.start()], line[hit.end() :])
    ]


def printed_value(line: str) -> str | None:
    """The first nan or inf ``line`` (one printed line) shows as a value, as ``nan``, ``inf``
    or ``-inf``; None when it only names one. A value stands where a program prints one: alone
    (``print(x)``), after ``:`` or ``=`` (``loss: nan``, ``loss=nan``), inside a printed array,
    list or call (``[1. nan]``, ``[0.5, nan]``, ``tensor(inf)``), or after a label at the end of
    the line or before a separator (``epoch 3 loss nan``); not a count (``0 nan``), not prose
    (``no nan found``, ``checking for inf``), not a column header, not an argument beside a name
    (``norm(x, inf)``)."""
    spans = value_spans(line)  # a "-nan" is a NaN
    return spans[0][2] if spans else None


def argv_nonfinite(args: tuple[str, ...]) -> dict[str, tuple[str, str]]:
    """The options given a NaN or Inf on the command line: option name (as given and with ``_``
    for ``-``) -> (nan | inf | -inf, the argument as given): ``--clip inf``, ``--tol=nan``."""
    import math

    found = {}
    for i, arg in enumerate(args):
        if not arg.startswith("-") or arg[1:2].isdigit() or arg[1:2] == ".":
            continue
        name, eq, value = arg.lstrip("-").partition("=")
        given = arg
        if not eq and i + 1 < len(args):
            value, given = args[i + 1], f"{arg} {args[i + 1]}"
        try:
            number = float(value)
        except ValueError:
            continue
        if not math.isfinite(number):
            kind = "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")
            for key in (name, name.replace("-", "_")):
                found[key] = (kind, given)
    return found


def _echoed(before: str, kind: str, options: dict) -> str | None:
    """The argument as given when the value just after ``before`` is an option's, printed beside
    its name (``clip=``, ``clip: ``, ``'clip': ``), else None."""
    head = before.rstrip(" '\"").rstrip("=:").rstrip(" '\"")
    for name, (given_kind, given) in options.items():
        if given_kind == kind and re.search(rf"(?<![\w-]){re.escape(name)}$", head):
            return given
    return None


@lru_cache(maxsize=64)
def _source_lines(filename: str) -> frozenset[str]:
    """The stripped lines of ``filename``'s source (a RuntimeWarning prints the line it warns
    about: ``rel = (best - val) / best  # inf/inf = nan at first`` is that, not a value)."""
    return frozenset(text.strip() for text in linecache.getlines(filename) if text.strip())


def _literal_spans(filename: str, line: str) -> list[tuple[int, int]]:
    """Where ``line`` holds, verbatim, a string literal of ``filename``'s source that names a nan
    or inf (an f-string's literal parts included): text the program wrote, not a value."""
    spans = []
    for literal in _nonfinite_literals(filename):
        start = line.find(literal)
        while start >= 0:
            spans.append((start, start + len(literal)))
            start = line.find(literal, start + 1)
    return spans


@lru_cache(maxsize=64)
def _nonfinite_literals(filename: str) -> tuple[str, ...]:
    """The string literals of ``filename`` with words beside a nan/inf (``float("nan")`` is a
    value's spelling, not prose)."""
    import ast

    from nandoctor.trace.frames import parsed

    tree = parsed(filename)
    if tree is None:
        return ()
    return tuple(
        {
            node.value.strip()
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and NONFINITE_TOKEN.search(node.value)
            and re.search(r"[^\W\d_]", NONFINITE_TOKEN.sub("", node.value))
        }
    )


def _is_value(before: str, after: str) -> bool:
    # each word as its last bracket leaves it: "tensor([1.," -> "1.,"
    words = [w.rsplit("[", 1)[-1].rsplit("(", 1)[-1] for w in before.split()]
    rest, head = after.strip(), before.rstrip()
    ends = not rest or rest[0] in ",;|)]}"  # the line's end or a separator
    if rest[:1] in ")]" and rest[1:].strip()[:1].isalpha():  # "[inf] model loaded": a tag
        return False
    if not words:  # the line starts with it: alone, or the first of several printed values
        return ends or bool(NUMBER.match(rest.split()[0]))
    last, prev = words[-1], head[-1]
    if head.endswith(("==", "!=", "<=", ">=")) or prev in "<>":  # x == inf? a comparison
        return False
    if prev in ":=":  # loss: nan, loss=nan, {'loss': nan}
        return True
    if prev == "[":  # [nan 1.], [  nan 1.] (NumPy pads to the column's width)
        return ends or bool(NUMBER.match(rest.split()[0]))
    if prev == "(":  # tensor(nan), (-inf, 5.0); not prose: "(nan-safe)", "missing (nan):"
        call = head[:-1] != "" and not head[:-1].endswith(" ")
        return ends and (rest[:1] == "," or call)
    if prev == ",":  # a list's item: only beside another number ([0.5, nan]; not norm(x, inf))
        return bool(NUMBER.fullmatch(last))
    if last == "..." or NUMBER.fullmatch(last) and not COUNT.fullmatch(last):
        return "[" in before or "(" in before  # [ 1. nan], [0. 1. ... nan 4.]: inside a bracket
    if COUNT.fullmatch(last) or last.lower() in NOT_A_VALUE_AFTER or NONFINITE_TOKEN.match(last):
        return False
    return ends  # loss nan, "epoch 3 loss nan | acc 0.5"


# str methods that only change text (``name.lower()``): what they return is text, not a value
TEXT_METHODS = frozenset(
    {"lower", "upper", "casefold", "title", "capitalize", "swapcase", "strip", "lstrip"}
    | {"rstrip", "replace", "removeprefix", "removesuffix", "center", "ljust", "rjust"}
)


def _printed_text(frame, written: str) -> bool:
    """Whether ``written``, one write of ``print`` called by ``frame``'s statement, is the text
    of a str argument (``print("user:", name.lower())`` with ``name = "Nan"``): a str the
    program held and printed as it is, or changed as text, not a number's repr or format. An
    argument formatted from a number (an f-string's ``{loss}``, ``str(loss)``, ``"%f" % x``)
    is not text; neither is one nandoctor cannot read without side effects."""
    from nandoctor.trace.evaluate import FrameEvaluator
    from nandoctor.trace.frames import frame_column, statement_at

    stmt = statement_at(frame.f_code.co_filename, frame.f_lineno, frame_column(frame))
    if stmt is None:
        return False
    evaluator = FrameEvaluator(frame)
    for node in ast.walk(stmt):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "print"
        ):
            for arg in node.args:
                try:
                    if _text_of(arg, evaluator) == written:
                        return True
                except Exception:  # Unsafe included
                    continue
    return False


def _text_of(node, evaluator) -> str | None:
    """The str ``node`` evaluates to when it is text: a str constant, a variable holding a str,
    an f-string of such, a concatenation, or a text method of one (``name.lower()``); None
    for anything else (a number, or a str formatted from one)."""
    match node:
        case ast.Constant(value=str(text)):
            return text
        case ast.Name() | ast.Attribute() | ast.Subscript():
            value = evaluator.eval(node)
            return value if isinstance(value, str) else None
        case ast.JoinedStr(values=parts):
            texts = []
            for part in parts:
                if isinstance(part, ast.FormattedValue):
                    if part.conversion not in (-1, ord("s")) or part.format_spec is not None:
                        return None
                    part = part.value
                texts.append(_text_of(part, evaluator))
            return None if None in texts else "".join(texts)
        case ast.BinOp(left=left, op=ast.Add(), right=right):
            a, b = _text_of(left, evaluator), _text_of(right, evaluator)
            return None if a is None or b is None else a + b
        case ast.Call(func=ast.Attribute(value=owner, attr=method), args=args, keywords=[]):
            if method not in TEXT_METHODS:
                return None
            text = _text_of(owner, evaluator)
            given = [a.value for a in args if isinstance(a, ast.Constant)]
            if text is None or len(given) != len(args):
                return None
            if not all(isinstance(a, str | int) for a in given):
                return None
            changed = getattr(text, method)(*given)
            return changed if isinstance(changed, str) else None
    return None


class WatchedStream:
    """The program's sys.stdout or sys.stderr, passed through, noting the first whole line that
    shows a ``nan`` or ``inf`` value (:func:`printed_value`). Lines are judged whole: ``print``
    writes each argument apart (``print("no", "nan")`` is three writes).

    A write only keeps the text (and, when it holds ``nan``/``inf``, the user file that wrote
    it); the text is searched in bulk, every ``CHUNK`` characters and at the end, and only the
    lines that hold ``nan`` or ``inf`` are judged: a program that prints a lot runs about as
    fast as under python."""

    MAX_LINE = 4096  # a longer line is judged by its first part
    CHUNK = 1 << 16  # characters kept before they are searched

    def __init__(self, stream, outcome: Outcome, options: dict | None = None):
        self._stream, self._outcome = stream, outcome
        self._options = options or {}  # argv_nonfinite of the program's arguments
        self._line = ""  # the end of the text searched so far: a line not ended yet
        self._pieces: list[str] = []  # what was written since (after ``_line``)
        self._size = 0  # their length
        # (offset in ``_line`` + the pieces, user file) of each write holding "nan" or "inf"
        self._files: list[tuple[int, str | None]] = []
        # (start, end) in the same text of each write printed as a str's text (_printed_text)
        self._texts: list[tuple[int, int]] = []
        self._file: str | None = None  # the user file that wrote the line judged
        self._line_file: str | None = None  # the last one to write "nan"/"inf" before ``_line``

    def write(self, text):
        if self._outcome.printed_nonfinite is None and isinstance(text, str):
            if "nan" in text or "inf" in text:  # who wrote it: for its string literals
                at, frame = len(self._line) + self._size, _writer()
                self._files.append((at, frame.f_code.co_filename if frame else None))
                if (
                    frame is not None
                    and NONFINITE_TOKEN.search(text)
                    and _printed_text(frame, text)
                ):
                    self._texts.append((at, at + len(text)))
            self._pieces.append(text)
            self._size += len(text)
            # a line holding one is judged once it ends; the others, in bulk
            if self._size > self.CHUNK or (self._files and ("\n" in text or "\r" in text)):
                self._search(final=False)
        return self._stream.write(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def _search(self, final: bool) -> None:
        """Judge each line of the text kept that holds ``nan`` or ``inf``; keep a line not
        ended yet (unless ``final``: the program has ended) for the next search."""
        text = self._line + "".join(self._pieces)
        files, texts = self._files, self._texts
        self._pieces, self._size, self._files = [], 0, []
        end = len(text) if final else max(text.rfind("\n"), text.rfind("\r")) + 1
        if not final and len(text) - end > self.MAX_LINE:  # judged by its first part
            end = len(text)
        self._line = text[end:]
        self._files = [(o - end, f) for o, f in files if o >= end]
        self._texts = [(max(a, end) - end, b - end) for a, b in texts if b > end]
        line_file = self._line_file
        self._line_file = _file_at(files, end) or line_file
        searched = 0
        for hit in CANDIDATE.finditer(text, 0, end):
            if hit.start() < searched:  # its line was judged
                continue
            start = max(text.rfind("\n", 0, hit.start()), text.rfind("\r", 0, hit.start())) + 1
            stop = LINE_ENDS.search(text, hit.end(), end)
            searched = stop.start() if stop else end
            self._file = _file_at(files, searched) or line_file
            spans = [(max(a, start) - start, min(b, searched) - start) for a, b in texts]
            self._note(text[start:searched], [(a, b) for a, b in spans if a < b])
            if self._outcome.printed_nonfinite is not None:
                return

    def _note(self, line: str, text: list[tuple[int, int]] = ()) -> None:
        """Keep ``line`` if it shows a nan or inf value the program computed: not one inside a
        string literal of the file that printed it (prose the program wrote), nor inside a str
        the program printed as text (``text``: spans of ``line``), nor an option's value given
        on the command line printed beside its name (noted apart)."""
        if self._outcome.printed_nonfinite is not None:
            return
        line = line[: self.MAX_LINE]
        spans = value_spans(line)
        if not spans:
            return
        if self._file and line.strip() in _source_lines(self._file):
            return  # a line of its source, shown by a warning or a traceback: code, not a value
        literals = list(text) + (_literal_spans(self._file, line) if self._file else [])
        echo = None
        for start, end, kind in spans:
            if any(a <= start and end <= b for a, b in literals):
                continue
            given = _echoed(line[:start], kind, self._options)
            if given is None:
                self._outcome.printed_nonfinite = line[:120]
                return
            echo = echo or given
        if echo is not None and self._outcome.printed_echo is None:
            self._outcome.printed_echo = (line[:120], echo)

    def end(self) -> None:
        """The program has finished: judge what it wrote since the last search, its last line
        too (if it did not end it)."""
        if self._outcome.printed_nonfinite is None:
            self._search(final=True)

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _writer():
    """The frame of the user's code that is writing (the innermost one outside nandoctor)."""
    return innermost_user_frame(sys._getframe(2))


def _file_at(files: list[tuple[int, str | None]], offset: int) -> str | None:
    """The user file of the last write holding ``nan``/``inf`` that began before ``offset``."""
    found = None
    for at, name in files:
        if at >= offset:
            break
        found = name if name is not None else found
    return found


class RecordedStdin:
    """The program's sys.stdin, passed through, keeping the text it reads (up to ``LIMIT``
    characters; beyond, ``outcome.stdin_read`` is None), so that a second run reads the same:
    its own stdin is gone by then. Reads of ``sys.stdin.buffer`` or file descriptor 0 are not
    kept."""

    LIMIT = 64 << 20

    def __init__(self, stream, outcome: Outcome):
        self._stream, self._outcome, self._size = stream, outcome, 0
        outcome.stdin_read = []

    def _keep(self, text):
        kept = self._outcome.stdin_read
        if kept is not None and isinstance(text, str) and text:
            self._size += len(text)
            if self._size > self.LIMIT:
                self._outcome.stdin_read = None
            else:
                kept.append(text)
        return text

    def read(self, *args):
        return self._keep(self._stream.read(*args))

    def readline(self, *args):
        return self._keep(self._stream.readline(*args))

    def readlines(self, *args):
        lines = self._stream.readlines(*args)
        self._keep("".join(lines))
        return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def recorded_stdin(outcome: Outcome):
    saved = sys.stdin
    if saved is None:
        yield
        return
    sys.stdin = RecordedStdin(saved, outcome)
    try:
        yield
    finally:
        if isinstance(sys.stdin, RecordedStdin):
            sys.stdin = saved


@contextlib.contextmanager
def watched_output(outcome: Outcome, args: tuple[str, ...] = ()):
    saved = sys.stdout, sys.stderr
    options = argv_nonfinite(args)
    watched = WatchedStream(saved[0], outcome, options), WatchedStream(saved[1], outcome, options)
    sys.stdout, sys.stderr = watched
    try:
        yield
    finally:
        for stream in watched:
            stream.end()
        # the program has ended: whatever it put in sys.stdout / sys.stderr (a StringIO, None),
        # what follows (the report) goes to the streams it was given
        sys.stdout, sys.stderr = (_open(s, fd) for s, fd in zip(saved, (1, 2), strict=True))


def _open(stream, fd: int):
    """``stream``, or when the program closed it (``sys.stdout.close()``: its file descriptor
    stays open, as python opens the standard streams), a new one on descriptor ``fd``."""
    if stream is None or not getattr(stream, "closed", False):
        return stream
    try:
        return open(fd, "w", encoding=stream.encoding, errors=stream.errors, closefd=False)
    except (OSError, ValueError, AttributeError):
        return stream


@contextlib.contextmanager
def kept_descriptors():
    """Whatever the program does to file descriptors 1 and 2 (``os.dup2(null, 1)``) or to its
    working directory, what follows it (the report, a second run) has the ones nandoctor was
    started with."""
    saved = {}
    for fd in (1, 2):
        with contextlib.suppress(OSError):
            saved[fd] = os.dup(fd)
    cwd = os.getcwd()
    try:
        yield
    finally:
        for fd, copy in saved.items():
            with contextlib.suppress(OSError):
                os.dup2(copy, fd)
            os.close(copy)
        with contextlib.suppress(OSError):
            os.chdir(cwd)


PROCESS_EVENTS = frozenset(
    {"subprocess.Popen", "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.system"}
)
_NOTING: list[Outcome | None] = [None]  # the outcome an audit event is noted on, while a run lasts


def _on_audit(event: str, args) -> None:
    if _NOTING[0] is not None and event in PROCESS_EVENTS:
        _NOTING[0].started_processes = True


@contextlib.contextmanager
def noting_processes(outcome: Outcome):
    """Note whether the program starts a process (a multiprocessing Process or Pool worker, a
    subprocess): NumPy's error callback does not follow it there. An audit hook sees forks and
    subprocesses; multiprocessing's own process counter sees its other start methods. Nothing
    is imported for it (an audit hook stays for the process's life: it only compares a name)."""
    if not _AUDITING[0]:
        sys.addaudithook(_on_audit)
        _AUDITING[0] = True
    before = _process_count()
    _NOTING[0] = outcome
    try:
        yield
    finally:
        _NOTING[0] = None
        if _process_count() not in (before, None, "count(1)" if before is None else before):
            outcome.started_processes = True


_AUDITING = [False]


def _process_count() -> str | None:
    process = sys.modules.get("multiprocessing.process")
    counter = getattr(process, "_process_counter", None)
    return repr(counter) if counter is not None else None  # count(N): N processes created


def run_program(program: Program, *, watch: bool = False) -> Outcome:
    """Execute ``program`` in this process; its modules are forgotten afterwards.

    ``watch``, for the first run of a trace: also keep the locals of the user's functions
    (:class:`FrameKeeper`), note the first nan or inf the program prints (:class:`WatchedStream`),
    and end it as python would (:func:`ending_as_python`): its traceback is written, then its
    atexit handlers run, all while its output still goes where it went; a call of ``os._exit``
    or ``os.abort``, and a SIGTERM, end the run rather than this process."""
    outcome = Outcome()
    keeper, watcher = contextlib.nullcontext(), contextlib.nullcontext()
    children, reader = contextlib.nullcontext(), contextlib.nullcontext()
    ending, kept = contextlib.nullcontext(), contextlib.nullcontext()
    if watch:
        keeper, watcher = FrameKeeper().kept(outcome), watched_output(outcome, program.args)
        children, reader = noting_processes(outcome), recorded_stdin(outcome)
        ending, kept = ending_as_python(outcome), kept_descriptors()
    saved_argv, saved_path0 = sys.argv[:], sys.path[0] if sys.path else None
    modules_before = set(sys.modules)
    sys.argv = [program.target, *program.args]
    if program.module:
        path0 = os.getcwd()
    elif program.runs_a_folder:  # python DIR, python APP.zip: its __main__.py, found from there
        path0 = os.path.abspath(program.target)
        if not os.path.isdir(path0):
            _cache_zip_sources(path0)
    else:
        path0 = os.path.dirname(os.path.abspath(program.target))
    if sys.path:
        sys.path[0] = path0
    else:
        sys.path.append(path0)
    try:
        signals = python_signals(outcome if watch else None)
        with paths_from(os.getcwd()), signals, kept, keeper, watcher, children, reader:
            with ending:
                _execute(program, outcome)
            if watch:
                _end(outcome)
    finally:
        sys.argv = saved_argv
        if saved_path0 is not None:
            sys.path[0] = saved_path0
        _forget_user_modules(modules_before)
    return outcome


def _execute(program: Program, outcome: Outcome) -> None:
    """Run the program to its end, keeping how it ended in ``outcome``."""
    try:
        if program.module:
            outcome.globals = runpy.run_module(program.target, run_name="__main__", alter_sys=True)
        else:
            outcome.globals = runpy.run_path(os.path.abspath(program.target), run_name="__main__")
    except SystemExit as e:  # its variables are still what it ends with: looked at as for a raise
        outcome.exit_code = _exit_code(e.code)
        outcome.frames_locals = _raising_locals(e.__traceback__)
    except ProgramEnded as e:  # os._exit, os.abort or SIGTERM: the process would end there
        outcome.exit_code = e.code
        outcome.frames_locals = _raising_locals(e.__traceback__)
    except BaseException as e:  # the program's own failure, whatever it is
        outcome.exit_code = 130 if isinstance(e, KeyboardInterrupt) else 1
        outcome.exception = e
        tb = e.__traceback__
        while tb is not None and not is_user_code(tb.tb_frame.f_code):
            tb = tb.tb_next
        outcome.traceback_text = _user_traceback(e, tb)
        outcome.frames_locals = _raising_locals(tb)
    if outcome.ended_by is not None:  # it went on after os._exit (it caught what unwound it)
        outcome.exit_code = outcome.ended_code


class ProgramEnded(BaseException):
    """Raised in the traced program where it would end its own process: ``os._exit``,
    ``os.abort``, or a SIGTERM it leaves to its default. The trace unwinds to the run's end and
    reports; the program's ``finally`` blocks run on the way (python would skip them), its
    atexit handlers do not (as under python)."""

    def __init__(self, code: int, how: str):
        super().__init__(how)
        self.code, self.how = code, how


@contextlib.contextmanager
def ending_as_python(outcome: Outcome):
    """While the program runs: ``os._exit`` and ``os.abort`` raise :class:`ProgramEnded` in its
    own thread of its own process (a forked child, a Pool worker, ends as it asked), and
    ``atexit.register`` keeps the handlers in ``outcome``, to be run when it ends (:func:`_end`),
    before the report: they write while its output still goes where it went."""
    import atexit
    import signal
    import threading

    pid, main = os.getpid(), threading.main_thread()
    real = _REAL_EXIT, os.abort, atexit.register, atexit.unregister

    def ended(code: int, how: str):
        if os.getpid() != pid:
            real[0](code)
        if outcome.ended_by is None:
            outcome.ended_by, outcome.ended_code = how, code
        if threading.current_thread() is not main:  # the process would end here: no report
            sys.stderr.write(
                f"nandoctor: the program called {how} in a thread, which ends the process: "
                "traced no further, no report\n"
            )
            sys.stderr.flush()
            real[0](3)
        raise ProgramEnded(code, how)

    def _exit(code):
        import operator

        code = operator.index(code)  # as os._exit does: an int, else TypeError
        if not -(2**31) <= code < 2**31:
            raise OverflowError("Python int too large to convert to C int")
        ended(exit_status(code), f"os._exit({code})")

    def abort():
        ended(128 + signal.SIGABRT, "os.abort()")

    def register(func, *args, **kwargs):
        if os.getpid() != pid:
            return real[2](func, *args, **kwargs)
        if not callable(func):
            raise TypeError("the first argument must be callable")
        outcome.exit_handlers.append((func, args, kwargs))
        return func

    def unregister(func):
        outcome.exit_handlers[:] = [h for h in outcome.exit_handlers if h[0] != func]
        return real[3](func)

    os._exit, os.abort, atexit.register, atexit.unregister = _exit, abort, register, unregister
    try:
        yield
    finally:
        os._exit, os.abort, atexit.register, atexit.unregister = real


def _end(outcome: Outcome) -> None:
    """After the program's last line, as python ends it: its traceback, then its atexit handlers
    (last registered first; one that raises is reported and the next runs), unless it ended its
    process itself (``os._exit``, ``os.abort``, SIGTERM). Its output still goes where it went."""
    if outcome.traceback_text:
        _to_stderr(outcome.traceback_text)
    if outcome.ended_by is not None:
        return
    handlers = outcome.exit_handlers
    with ending_as_python(outcome):
        while handlers:
            func, args, kwargs = handlers.pop()
            try:
                func(*args, **kwargs)
            except ProgramEnded as e:
                outcome.exit_code = e.code
                return
            except BaseException as e:  # noqa: BLE001 - python reports it and goes on
                _to_stderr(f"Exception ignored in atexit callback: {func!r}\n")
                tb = e.__traceback__
                while tb is not None and not is_user_code(tb.tb_frame.f_code):
                    tb = tb.tb_next
                _to_stderr(_user_traceback(e, tb))


def _to_stderr(text: str) -> None:
    """Write to the program's sys.stderr as python does at its end: not at all when it set it to
    None, nor when writing fails (a closed stream)."""
    with contextlib.suppress(Exception):
        if sys.stderr is not None:
            sys.stderr.write(text)


# The handlers python_signals installed for the traced run, by signal, with what a process the
# program forks gets instead (python's own): a forked worker (multiprocessing's pool, os.fork)
# is the program's, not the trace's, and a SIGTERM must end it as under python -- else
# Pool.terminate waits forever on a worker that unwound into the trace's report.
_TRACED_HANDLERS: dict[int, tuple[object, object]] = {}


def _python_signals_in_child() -> None:
    import signal

    for signum, (ours, python) in _TRACED_HANDLERS.items():
        if signal.getsignal(signum) is ours:  # not one the program installed itself
            signal.signal(signum, python)
    _TRACED_HANDLERS.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_python_signals_in_child)


@contextlib.contextmanager
def python_signals(outcome: Outcome | None = None):
    """Ctrl-C and SIGTERM behave for the program as under python (KeyboardInterrupt, exit).
    With ``outcome`` (the traced run), each is noted there, and SIGTERM unwinds the program
    (:class:`ProgramEnded`) rather than ending the process, so what was found can be said; a
    second SIGTERM then ends it on the spot."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    defaults = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
    if outcome is not None:

        def interrupt(signum, frame):
            outcome.interrupted = signum
            return signal.default_int_handler(signum, frame)

        def terminate(signum, frame):
            if outcome.interrupted == signum:  # it caught the first: end now, as python would
                sys.stderr.write("nandoctor: interrupted by SIGTERM; stopped, nothing reported\n")
                sys.stderr.flush()
                _REAL_EXIT(128 + signum)
            outcome.interrupted = signum
            raise ProgramEnded(128 + signum, "SIGTERM")

        _TRACED_HANDLERS.update(
            {
                signal.SIGINT: (interrupt, signal.default_int_handler),
                signal.SIGTERM: (terminate, signal.SIG_DFL),
            }
        )
        defaults = {signal.SIGINT: interrupt, signal.SIGTERM: terminate}
    old = {s: signal.signal(s, h) for s, h in defaults.items()}
    try:
        yield
    finally:
        _TRACED_HANDLERS.clear()
        for s, h in old.items():
            signal.signal(s, h)


def _exit_code(code) -> int:
    """The exit status python ends with for ``sys.exit(code)``."""
    if code is None:
        return 0
    if isinstance(code, int):
        return exit_status(code)
    _to_stderr(f"{code}\n")
    return 1


def exit_status(code: int) -> int:
    """What the process's parent sees when python exits with ``code``: its low 8 bits
    (``sys.exit(300)`` is 44, ``sys.exit(-1)`` 255), or 255 (-1) when it does not fit a C long."""
    if not -(2**63) <= code < 2**63:
        return 255
    return code & 0xFF


def _user_traceback(e: BaseException, tb) -> str:
    """The program's traceback as python prints it: without the error callback's frame, which a
    raise the program asked NumPy for (``np.seterr(all='raise')``) passes through."""
    te = traceback.TracebackException(type(e), e, tb)
    here = os.path.dirname(os.path.abspath(__file__)) + os.sep
    while te.stack and os.path.abspath(te.stack[-1].filename).startswith(here):
        te.stack.pop()
    return "".join(te.format())


def _raising_locals(tb) -> list[dict]:
    found = []
    while tb is not None:
        if is_user_code(tb.tb_frame.f_code):
            found.append(dict(tb.tb_frame.f_locals))
        tb = tb.tb_next
    return found


def _forget_user_modules(before: set[str]) -> None:
    """Drop the program's own modules, so a second program (or run) imports them afresh."""
    from nandoctor.trace.frames import is_user_file

    for name in set(sys.modules) - before:
        path = getattr(sys.modules[name], "__file__", None)
        if path and is_user_file(path):
            del sys.modules[name]


@contextlib.contextmanager
def output_to_stderr():
    """Send the program's output, Python's and C's alike (file descriptor 1), to stderr."""
    sys.stdout.flush()
    try:
        saved = os.dup(1)
    except OSError:
        saved = None
    if saved is not None:
        os.dup2(2, 1)
    old_stdout = sys.stdout
    sys.stdout = sys.stderr
    try:
        yield
    finally:
        sys.stderr.flush()
        sys.stdout = old_stdout
        if saved is not None:
            os.dup2(saved, 1)
            os.close(saved)


@contextlib.contextmanager
def output_silenced():
    """Discard the program's output (for second runs): file descriptors 1 and 2 and sys.std*."""
    sys.stdout.flush()
    sys.stderr.flush()
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = [os.dup(1), os.dup(2)]
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, devnull):
            os.close(fd)
