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

    python scripts/mutate_driver.py src/jobtower/manager.py --lines 457-1374
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
import time
from collections.abc import Iterable
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


class Scratch:
    """The scratch copy's target file: written with a mutant, always put back, even on SIGTERM/SIGINT."""

    def __init__(self, path: Path, original: str) -> None:
        self.path = path
        self.original = original
        self.child: subprocess.Popen[bytes] | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._stop)

    def write(self, text: str) -> None:
        """Write text to the file and drop its bytecode, which may hold a mutant of the same size and time."""
        self.path.write_text(text)
        for pyc in (self.path.parent / "__pycache__").glob(self.path.stem + ".*.pyc"):
            pyc.unlink(missing_ok=True)

    def restore(self) -> None:
        """Put the original text back."""
        self.write(self.original)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self.child is not None and self.child.poll() is None:
            os.killpg(self.child.pid, signal.SIGKILL)
        self.restore()
        print(f"\nstopped by signal {signum}; {self.path} holds its original text again", file=sys.stderr)
        sys.exit(128 + signum)


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


def _profile(work: Path, target: Path, files: list[str], marks: str, env: dict[str, str]) -> dict[str, Any]:
    """Run the judging tests untraced (times, failures) and traced (lines); return both merged."""
    plain_out, traced_out = work / "baseline.json", work / "trace.json"
    code, took = _pytest(work, files, marks, {**env, "MUTATE_TRACE_OUT": str(plain_out)}, None)
    plain = json.loads(plain_out.read_text())
    print(f"== baseline: {len(plain['order'])} tests in {took:.0f} s (exit {code}); "
          f"{len(plain['failed'])} failing without a mutant, left out: {plain['failed']}")
    _pytest(work, files, marks, {**env, "MUTATE_TRACE_OUT": str(traced_out), "MUTATE_TRACE_TARGET": str(target)},
            None)
    traced = json.loads(traced_out.read_text())
    startup = max(took - sum(plain["durations"].values()), 1.0)
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
    parser.add_argument("--lines", default="", help="FIRST-LAST, 1-based and inclusive (default: the whole file)")
    parser.add_argument("--only", type=Path, help="a previous mutants.json: run only the mutants it did not kill")
    parser.add_argument("--tests", help="test files to judge with, instead of scripts/mutmut_config.py's")
    parser.add_argument("--out", type=Path, help="folder for mutants.json and summary.txt (default: the scratch copy)")
    parser.add_argument("--workdir", type=Path, help="the scratch copy (default: a new folder in /tmp)")
    args = parser.parse_args(argv)

    key = args.file.replace(os.sep, "/")
    original = (ROOT / key).read_text()
    first, last = (int(n) for n in args.lines.split("-")) if args.lines else (1, original.count("\n") + 1)
    lines = f"{first}-{last}"
    files, marks = _judging(key)
    if args.tests:
        files = args.tests.split()
    wanted = _ids(args.only)

    work = args.workdir or Path(tempfile.mkdtemp(prefix="jobtower-mutation."))
    if work.exists():
        shutil.rmtree(work)
    shutil.copytree(ROOT, work, ignore=_IGNORE)
    out = args.out or work
    out.mkdir(parents=True, exist_ok=True)
    target = work / key
    env = {**os.environ, "JOBTOWER_DATABASE_URL": "",
           "PYTHONPATH": os.pathsep.join([str(work / "src"), str(work / "scripts"), str(work)])}
    print(f"== scratch copy in {work}; results in {out}")

    started = time.monotonic()
    profile = _profile(work, target, files, marks, env)
    shows = _statement_lines(ast.parse(original))
    everyone = [t for t in profile["order"] if t not in profile["failed"]]

    mutants = [m for m in list_mutations(Context(source=original, filename=key)) if first <= m.line_number + 1 <= last]
    scratch = Scratch(target, original)
    outcomes: list[Outcome] = []
    print(f"== {len(mutants)} mutants on lines {lines} of {key}")
    try:
        for n, mid in enumerate(mutants, 1):
            ident = f"{mid.line_number + 1}.{mid.index}"
            if wanted is not None and ident not in wanted:
                continue
            mutated, count = mutate(Context(source=original, filename=key, mutation_id=mid))
            line, diff = _diff(original, mutated)
            stmt, module_level = shows.get(mid.line_number + 1, ({mid.line_number + 1}, False))
            if module_level:
                tests = everyone
            else:
                tests = [t for t in everyone if profile["lines"].get(t, set()) & stmt]
            if count == 0 or not tests:
                status, took = ("not covered" if count else "survived"), 0.0
            else:
                budget = 10 * (profile["startup"] + sum(profile["durations"][t] for t in tests)) + 30
                try:
                    scratch.write(mutated)
                    code, took = _pytest(work, ["-x", *tests], marks, env, budget, scratch)
                finally:
                    scratch.restore()
                status = "timeout" if code is None else "survived" if code == 0 else "killed"
            outcomes.append(Outcome(ident, line or mid.line_number + 1, diff, status, round(took, 1), len(tests)))
            print(f"{n:4d}/{len(mutants)} {ident:>9} {status:<11} {took:5.1f}s {len(tests):4d} tests  {diff[:90]}",
                  flush=True)
            _write(out, key, lines, outcomes, time.monotonic() - started)
    finally:
        scratch.restore()
    took = time.monotonic() - started
    _write(out, key, lines, outcomes, took)
    print(_summary(outcomes, key, lines, took).split("\n", 1)[0])
    print(f"== {out / 'summary.txt'} lists the mutants not killed; {out / 'mutants.json'} holds them all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
