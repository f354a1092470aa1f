"""Cache-free mutation driver: mutmut 2 plants the mutants, this script runs and records them.

mutmut 2's own run loop keeps a cache keyed by line; a mutant that turns a statement spread over several
lines into one line shifts the lines it records, and the run stops with "Mutant.line is required". This
driver uses mutmut only as a library (list_mutations, mutate) and keeps no cache:

1. copies the tree to a scratch folder (the worktree's files are never written);
2. runs the judging tests once untraced (each test's time; a test failing here is dropped) and once under
   a line tracer (scripts/mutate_trace.py) to learn which tests run which lines of the file;
3. for each mutant in the chosen lines writes the mutated file in the scratch copy, runs only the tests
   that run the mutated statement (``-x``, no cache provider) with a timeout of ten times their usual
   time, and restores the original text in a ``finally`` and on SIGTERM/SIGINT;
4. writes ``mutants.json`` and ``summary.txt``: id, line, a one-line diff, killed / survived / timeout /
   not covered (a statement no judging test runs), seconds.

Usage (scripts/mutation.sh --driver wraps it)::

    python scripts/mutate_driver.py src/jobtower/manager.py --lines after:sanitize
    python scripts/mutate_driver.py src/jobtower/manager.py --only DIR/mutants.json   # its survivors again
"""

from __future__ import annotations

import argparse
import ast
import difflib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
_IGNORE = shutil.ignore_patterns(".git", ".venv", "_build", ".jobtower", "__pycache__", ".mutmut-cache", "*.pyc")
_IMPORT = "<import>"


@dataclass
class Outcome:
    """What became of one mutant."""

    id: str
    line: int
    diff: str
    status: str  # killed, survived, timeout, not covered
    seconds: float
    tests: int
    killed_by: str = ""  # the test that failed (forked runs only)


class Scratch:
    """One scratch copy's target file: written with a mutant, always put back, even on SIGTERM/SIGINT."""

    _all: list[Scratch] = []
    _lock = threading.Lock()
    _stopping = False

    def __init__(self, work: Path, key: str, original: str) -> None:
        self.work = work
        self.path = work / key
        self.original = original
        self.child: subprocess.Popen[bytes] | None = None
        with Scratch._lock:
            Scratch._all.append(self)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, Scratch._stop)

    def write(self, text: str) -> None:
        """Write text to the file and drop its bytecode, which may hold a mutant of the same size and time."""
        with Scratch._lock:
            if Scratch._stopping and text != self.original:
                raise SystemExit(1)  # a signal came: no new mutant is written
            self.path.write_text(text)
            for pyc in (self.path.parent / "__pycache__").glob(self.path.stem + ".*.pyc"):
                pyc.unlink(missing_ok=True)

    def restore(self) -> None:
        """Put the original text back."""
        self.write(self.original)

    @staticmethod
    def _stop(signum: int, frame: FrameType | None) -> None:
        with Scratch._lock:
            Scratch._stopping = True
        for scratch in Scratch._all:
            child = scratch.child
            if child is not None and child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
            scratch.restore()
        print(f"\nstopped by signal {signum}; every scratch copy holds its original text again", file=sys.stderr)
        os._exit(128 + signum)  # worker threads are waiting on children that are gone


class Server:
    """A pytest session in one scratch copy that judges mutants in forks (scripts/mutate_server.py)."""

    def __init__(self, scratch: Scratch, files: list[str], marks: str, env: dict[str, str]) -> None:
        self.scratch, self.files, self.marks, self.env = scratch, files, marks, env
        self.process: subprocess.Popen[str] | None = None
        self.killed_by = ""

    def ensure(self) -> None:
        """Start the session if it is not running (only while the file holds its original text)."""
        if self.process is not None and self.process.poll() is None:
            return
        cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "mutate_server",
               "-m", self.marks, *self.files]
        self.process = subprocess.Popen(
            cmd, cwd=self.scratch.work, env={**self.env, "MUTATE_TRACE_TARGET": str(self.scratch.path)},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            start_new_session=True)
        self.scratch.child = self.process  # type: ignore[assignment]
        if self._answer() is None:
            raise RuntimeError(f"the mutation server in {self.scratch.work} did not start: run its tests by hand")

    def _answer(self) -> dict[str, Any] | None:
        assert self.process is not None and self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                return json.loads(line)  # type: ignore[no-any-return]
        return None  # the session ended

    def judge(self, tests: list[str], timeout: float) -> int | None | str:
        """Return 0 (all passed), 1 (a test failed), None (timeout) or "lost" (the session died).

        The test that failed is left in `killed_by`.
        """
        self.killed_by = ""
        assert self.process is not None and self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps({"tests": tests, "timeout": timeout}) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            return "lost"
        answer = self._answer()
        if answer is None:
            return "lost"
        code = answer["code"]
        self.killed_by = answer.get("by", "")
        if code is None or code == 4:
            self.stop()  # a killed child may leave rows behind: start clean
        return code if code != 4 else "lost"  # type: ignore[no-any-return]

    def stop(self) -> None:
        """End the session and its children."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        self.process = None


def _judging(key: str) -> tuple[list[str], str]:
    """Return the test files and the marker expression that judge a file (scripts/mutmut_config.py)."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import mutmut_config

    if key not in mutmut_config.TESTS:
        sys.exit(f"no judging tests for {key}: add it to TESTS in scripts/mutmut_config.py")
    return [t for t in mutmut_config.TESTS[key].split() if (ROOT / t).exists()], mutmut_config.MARKS


def _pytest(work: Path, args: list[str], marks: str, env: dict[str, str], timeout: float | None,
            scratch: Scratch | None = None) -> tuple[int | None, float]:
    """Run pytest in the scratch copy; return its exit code (None on timeout) and seconds taken."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "mutate_trace", "-m", marks, *args]
    started = time.monotonic()
    child = subprocess.Popen(cmd, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    if scratch is not None:
        scratch.child = child
    try:
        code: int | None = child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        code = None
    return code, time.monotonic() - started


def _profile(work: Path, target: Path, files: list[str], marks: str, env: dict[str, str],
             reuse: Path | None) -> dict[str, Any]:
    """Run the judging tests untraced (times, failures) and traced (lines); return both merged."""
    plain_out, traced_out = work / "baseline.json", work / "trace.json"
    if reuse is not None:
        shutil.copy(reuse / "baseline.json", plain_out)
        shutil.copy(reuse / "trace.json", traced_out)
        print(f"== reusing the tests' times and lines recorded in {reuse}")
    else:
        started = time.monotonic()
        code, took = _pytest(work, files, marks, {**env, "MUTATE_TRACE_OUT": str(plain_out)}, None)
        _pytest(work, files, marks,
                {**env, "MUTATE_TRACE_OUT": str(traced_out), "MUTATE_TRACE_TARGET": str(target)}, None)
        plain = json.loads(plain_out.read_text())
        plain["seconds"] = took
        plain_out.write_text(json.dumps(plain))
        print(f"== baseline: {len(plain['order'])} tests in {took:.0f} s (exit {code}), traced run in "
              f"{time.monotonic() - started - took:.0f} s; {len(plain['failed'])} failing without a mutant, "
              f"left out: {plain['failed']}")
    plain = json.loads(plain_out.read_text())
    traced = json.loads(traced_out.read_text())
    startup = max(plain["seconds"] - sum(plain["durations"].values()), 1.0)
    return {"order": plain["order"], "durations": plain["durations"], "failed": set(plain["failed"]),
            "lines": {t: set(lines) for t, lines in traced["lines"].items()}, "startup": startup}


def _statement_lines(tree: ast.Module) -> dict[int, tuple[set[int], bool]]:
    """Map each line to the lines whose execution shows its statement ran, and whether it is module-level.

    A simple statement counts as run when any of its lines is; a compound statement's header (``if``,
    ``for``, ``with``, ``except``) by its header lines; a ``def`` line (defaults, decorators) by its body.
    """
    found: dict[int, tuple[set[int], bool, int]] = {}  # line -> (lines, module-level, span)

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.stmt, ast.excepthandler)):
                start = min([child.lineno, *(d.lineno for d in getattr(child, "decorator_list", []))])
                end = child.end_lineno or child.lineno
                body = getattr(child, "body", None)
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    header, shows, level = range(start, child.body[0].lineno), set(range(start, end + 1)), False
                elif body and isinstance(body, list) and isinstance(body[0], ast.stmt):
                    header = range(start, body[0].lineno)
                    shows, level = set(header), top and not isinstance(child, ast.ClassDef)
                else:
                    header, shows, level = range(start, end + 1), set(range(start, end + 1)), top
                for line in header:
                    if line not in found or found[line][2] >= len(header):  # the innermost statement wins
                        found[line] = (shows, level, len(header))
                inner_top = top and not isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
                visit(child, inner_top)
            else:
                visit(child, top)

    visit(tree, True)
    return {line: (shows, level) for line, (shows, level, _) in found.items()}


def _line_range(spec: str, source: str) -> tuple[int, int]:
    """Return (first, last) for "FIRST-LAST", "after:FUNCTION" (the lines after a top-level def) or ""."""
    end = len(source.splitlines())
    if not spec:
        return 1, end
    if spec.startswith("after:"):
        name = spec.removeprefix("after:")
        for node in ast.parse(source).body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
                return (node.end_lineno or node.lineno) + 1, end
        sys.exit(f"--lines {spec}: the file has no top-level function {name!r}")
    first, _, last = spec.partition("-")
    return int(first), int(last)


def _diff(original: str, mutated: str) -> tuple[int, str]:
    """Return the first changed line and a one-line description of the change."""
    old, new = original.splitlines(), mutated.splitlines()
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            before = " / ".join(s.strip() for s in old[i1:i2])
            after = " / ".join(s.strip() for s in new[j1:j2])
            return i1 + 1, f"{before[:160]}  ->  {after[:160]}"
    return 0, "(no change)"


def _order(outcome: Outcome) -> tuple[int, int]:
    line, index = outcome.id.split(".")
    return int(line), int(index)


def _ids(only: Path | None) -> set[str] | None:
    """Return the ids of the mutants a previous run did not kill, or None to run all."""
    if only is None:
        return None
    previous = json.loads(only.read_text())
    return {m["id"] for m in previous["mutants"] if m["status"] != "killed"}


def _summary(outcomes: list[Outcome], key: str, lines: str, took: float) -> str:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    tried = len(outcomes)
    killed = counts.get("killed", 0)
    score = f"{100 * killed / tried:.0f}%" if tried else "n/a"
    head = (f"{key} lines {lines}: score {score} ({killed} killed of {tried} tried; "
            f"{counts.get('survived', 0)} survived, {counts.get('timeout', 0)} timeout, "
            f"{counts.get('not covered', 0)} not covered) in {took / 60:.0f} min")
    rows = [f"{o.id:>10}  {o.status:<11} {o.seconds:6.1f}s {o.tests:4d} tests  L{o.line}: {o.diff}"
            for o in outcomes if o.status != "killed"]
    return "\n".join([head, "", "not killed:", *rows, ""])


def _write(out: Path, key: str, lines: str, outcomes: Iterable[Outcome], took: float) -> None:
    outcomes = list(outcomes)
    (out / "mutants.json").write_text(json.dumps(
        {"file": key, "lines": lines, "seconds": round(took), "mutants": [asdict(o) for o in outcomes]}, indent=1))
    (out / "summary.txt").write_text(_summary(outcomes, key, lines, took))


def main(argv: list[str] | None = None) -> int:
    """Run the mutants of one file's chosen lines against the tests that run them."""
    from mutmut import Context, list_mutations, mutate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("file", help="the file to mutate, relative to the repository (src/jobtower/manager.py)")
    parser.add_argument("--lines", default="",
                        help="FIRST-LAST, 1-based and inclusive, or after:FUNCTION (the lines after a top-level def); "
                             "default: the whole file")
    parser.add_argument("--only", type=Path, help="a previous mutants.json: run only the mutants it did not kill")
    parser.add_argument("--tests", help="test files to judge with, instead of scripts/mutmut_config.py's")
    parser.add_argument("--no-fork", dest="fork", action="store_false",
                        help="a new pytest per mutant (slow) instead of forks of one set-up session")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once, each in its own scratch copy")
    parser.add_argument("--profile", type=Path,
                        help="a previous scratch copy (copy0) whose baseline.json and trace.json still hold: "
                             "the same tests and file")
    parser.add_argument("--out", type=Path, help="folder for mutants.json and summary.txt (default: the scratch copy)")
    parser.add_argument("--workdir", type=Path, help="the scratch copy (default: a new folder in /tmp)")
    args = parser.parse_args(argv)

    key = args.file.replace(os.sep, "/")
    original = (ROOT / key).read_text()
    first, last = _line_range(args.lines, original)
    lines = f"{first}-{last}"
    files, marks = _judging(key)
    if args.tests:
        files = args.tests.split()
    wanted = _ids(args.only)

    base = args.workdir or Path(tempfile.mkdtemp(prefix="jobtower-mutation."))
    if base.exists():
        shutil.rmtree(base)
    copies = [base / f"copy{n}" for n in range(max(args.jobs, 1))]
    for work in copies:
        shutil.copytree(ROOT, work, ignore=_IGNORE)
    out = args.out or base
    out.mkdir(parents=True, exist_ok=True)

    def environ(work: Path) -> dict[str, str]:
        return {**os.environ, "JOBTOWER_DATABASE_URL": "",
                "PYTHONPATH": os.pathsep.join([str(work / "src"), str(work / "scripts"), str(work)])}

    print(f"== {len(copies)} scratch copies in {base}; results in {out}")
    started = time.monotonic()
    profile = _profile(copies[0], copies[0] / key, files, marks, environ(copies[0]), args.profile)
    shows = _statement_lines(ast.parse(original))
    # fastest first: with -x a mutant is usually killed by the first test that runs it
    everyone = sorted((t for t in profile["order"] if t not in profile["failed"]), key=profile["durations"].get)

    mutants = [m for m in list_mutations(Context(source=original, filename=key)) if first <= m.line_number + 1 <= last]
    if wanted is not None:
        mutants = [m for m in mutants if f"{m.line_number + 1}.{m.index}" in wanted]
    scratches = [Scratch(work, key, original) for work in copies]
    servers = {id(sc): Server(sc, files, marks, environ(sc.work)) for sc in scratches} if args.fork else {}
    free: list[Scratch] = list(scratches)
    lock = threading.Lock()
    outcomes: list[Outcome] = []
    print(f"== {len(mutants)} mutants on lines {lines} of {key}", flush=True)

    def run(mid: Any) -> None:
        ident = f"{mid.line_number + 1}.{mid.index}"
        mutated, count = mutate(Context(source=original, filename=key, mutation_id=mid))
        line, diff = _diff(original, mutated)
        stmt, module_level = shows.get(mid.line_number + 1, ({mid.line_number + 1}, False))
        tests = everyone if module_level else [t for t in everyone if profile["lines"].get(t, set()) & stmt]
        took, status, by = 0.0, "not covered", ""
        if tests:
            budget = 10 * (profile["startup"] + sum(profile["durations"][t] for t in tests)) + 30
            with lock:
                scratch = free.pop()
            server = servers.get(id(scratch))
            try:
                code: int | None | str = "lost"
                if server is not None:
                    server.ensure()
                    scratch.write(mutated)
                    begun = time.monotonic()
                    code = server.judge(tests, budget)
                    took = time.monotonic() - begun
                    by = server.killed_by
                if code == "lost":  # no server, or it died: a pytest of its own
                    scratch.write(mutated)
                    code, took = _pytest(scratch.work, ["-x", *tests], marks, environ(scratch.work), budget,
                                         scratch)
            finally:
                scratch.restore()
                with lock:
                    free.append(scratch)
            status = "timeout" if code is None else "survived" if code == 0 else "killed"
        with lock:
            outcomes.append(Outcome(ident, line or mid.line_number + 1, diff, status, round(took, 1), len(tests),
                                    by if status == "killed" else ""))
            print(f"{len(outcomes):4d}/{len(mutants)} {ident:>9} {status:<11} {took:5.1f}s {len(tests):4d} tests  "
                  f"{diff[:90]}", flush=True)
            _write(out, key, lines, sorted(outcomes, key=_order), time.monotonic() - started)

    try:
        with ThreadPoolExecutor(max_workers=len(copies)) as pool:
            for future in [pool.submit(run, mid) for mid in mutants]:
                future.result()
    finally:
        for server in servers.values():
            server.stop()
        for scratch in scratches:
            scratch.restore()
    outcomes.sort(key=_order)
    took = time.monotonic() - started
    _write(out, key, lines, outcomes, took)
    print(_summary(outcomes, key, lines, took).split("\n", 1)[0])
    print(f"== {out / 'summary.txt'} lists the mutants not killed; {out / 'mutants.json'} holds them all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
