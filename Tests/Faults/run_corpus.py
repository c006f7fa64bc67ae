#!/usr/bin/env python3
"""Runs the kvstat fault corpus (make_corpus.py) against a built binary and checks every rule.

    python3 Tests/Faults/run_corpus.py [--kvstat .build/debug/kvstat] [--case GLOB]... [--jobs 2] [--keep DIR]

Each case is built in its own temporary folder, run there (relative paths, so messages name the files as given),
and checked: it ends within the time bound; no signal and no Swift trap text on stderr; the exit code is one the
case expects; an error is exactly one non-empty stderr line `kvstat: error: …` holding the expected substrings
(batch: `kvstat batch:` lines); a success passes the case's checker; every file that existed before the run is
unchanged (SHA-256) unless the case lists it as mutable; an error leaves no new file or folder behind; no
`*.tmp-*` anywhere. Failing cases are printed with their command, exit code, stderr head and the broken rules;
the last line is `N passed, N failed` (exit 1 if any failed). Rules: Tests/Faults/README.md.
"""

import argparse
import fnmatch
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
# The harness writes dumps in one thread while another forks kvstat: a forked child would inherit HDF5's
# flock on a file still open for writing and block the next open, so file locking is off here.
os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")
import make_corpus  # noqa: E402
from faultlib import Broken  # noqa: E402

TRAPS = ("fatal error", "illegal instruction", "segmentation", "precondition")
DOCUMENTED = {64, 65, 66, 69, 73, 75}
BATCH_CODES = {1, 2}


def snapshot(root):
    """{relative path: sha256 or 'dir' or 'link'} of everything under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            elif p.is_file():
                h = hashlib.sha256()
                with open(p, "rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
                out[rel] = h.hexdigest()
            else:
                out[rel] = "special"
    return out


def run_command(argv, cwd, timeout):
    """Runs argv in its own process group; on timeout kills the group. Returns (rc, out, err, seconds, hung)."""
    start = time.monotonic()
    p = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                         env=make_corpus.run_env(), start_new_session=True)
    try:
        out, err = p.communicate(timeout=timeout)
        hung = False
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        out, err = p.communicate()
        hung = True
    # A batch's children are in the same group; make sure none outlives the case.
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    return p.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), \
        time.monotonic() - start, hung


def stderr_rules(case, rc, err):
    """The one-line error rule; returns the broken rules."""
    broken = []
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if case.batch and rc in BATCH_CODES:
        odd = [ln for ln in lines if not (ln.startswith("kvstat batch:") or ln.startswith("  "))]
        if not lines:
            broken.append("no message on stderr")
        if odd:
            broken.append(f"batch stderr lines that are not `kvstat batch:` lines: {odd[:2]}")
    elif len(lines) != 1:
        broken.append(f"stderr has {len(lines)} non-empty lines, expected exactly one")
    else:
        prefixes = ("kvstat: error:", "kvstat batch: error:") if case.batch else ("kvstat: error:",)
        if not lines[0].startswith(prefixes):
            broken.append(f"the error line does not start with `{prefixes[0]}`")
    low = err.lower()
    missing = [s for s in case.contains if s.lower() not in low]
    if missing:
        broken.append(f"the error does not mention {missing}")
    return broken


def run_case(case, kvstat, timeout, keep):
    """Builds, runs and checks one case; returns (case, broken rules, details)."""
    tmp = Path(tempfile.mkdtemp(prefix=f"kvfault-{case.name[:40]}-".replace("/", "_")))
    details = {"command": "kvstat " + " ".join(case.args), "rc": None, "stderr": "", "seconds": 0.0}
    broken = []
    try:
        ctx = make_corpus.Ctx(case, tmp, kvstat)
        try:
            case.setup(ctx)
        except (make_corpus.SetupError, subprocess.TimeoutExpired) as e:
            return case, [f"setup: {e}"], details
        before = snapshot(tmp)
        limit = case.timeout or timeout
        rc, out, err, seconds, hung = run_command([kvstat, *case.args], tmp, limit)
        details.update(rc=rc, stderr=err, stdout=out, seconds=seconds)
        ctx.rc, ctx.stdout, ctx.stderr = rc, out, err
        if hung:
            broken.append(f"hang: still running after {limit:g} s")
        elif rc < 0 or rc >= 128:
            broken.append(f"signal: exit {rc}")
        trap = [t for t in TRAPS if t in err.lower()]
        if trap:
            broken.append(f"trap text on stderr: {trap}")
        after = snapshot(tmp)
        if not hung and rc >= 0:
            if rc not in case.codes:
                want = ", ".join(str(c) for c in case.codes)
                broken.append(f"exit {rc}, expected {want}" + ("" if rc in DOCUMENTED | BATCH_CODES | {0}
                                                               else " (an undocumented code)"))
            if rc != 0:
                broken += stderr_rules(case, rc, err)
            if rc in case.codes and case.check and (rc == 0 or case.error_check):
                try:
                    case.check(ctx)
                except Broken as e:
                    broken.append(f"result: {e}")
                except Exception as e:  # a checker meeting output it cannot read is a failure too
                    broken.append(f"result: {type(e).__name__}: {e}")
        # Inputs and the user's files unchanged.
        mutable = lambda rel: any(fnmatch.fnmatchcase(rel, g) for g in case.mutable)  # noqa: E731
        changed = [rel for rel, h in before.items() if not mutable(rel) and after.get(rel) != h]
        if changed:
            broken.append(f"changed or removed files that existed before the run: {changed[:5]}")
        # No half-written output.
        new = sorted(set(after) - set(before))
        tmpfiles = [rel for rel in after if ".tmp-" in Path(rel).name]
        if tmpfiles:
            broken.append(f"temporary files left: {tmpfiles[:5]}")
        if rc != 0 and not hung:
            if case.batch:
                left = [o for o in case.outputs if o in after and o not in before]
            else:
                left = new
            if left:
                broken.append(f"output left behind by a failed run: {left[:5]}")
        return case, broken, details
    finally:
        if keep:
            dest = Path(keep) / case.name
            if dest.exists():
                shutil.rmtree(dest)
            shutil.copytree(tmp, dest, symlinks=True)
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    root = make_corpus.ROOT
    ap.add_argument("--kvstat", default=str(root / ".build" / "debug" / "kvstat"))
    ap.add_argument("--case", action="append", default=[], help="glob of case names to run (repeatable)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=60.0, help="time bound per case in seconds (default 60)")
    ap.add_argument("--keep", help="copy every case folder here after its run (to look at outputs)")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--guesses", action="store_true", help="list the cases whose expectation is a guess")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case as it ends")
    a = ap.parse_args()
    cases = make_corpus.select(a.case)
    if a.list or a.guesses:
        for c in cases:
            if a.list or c.guess:
                print(f"{c.name}: kvstat {' '.join(c.args)} → {'/'.join(map(str, c.codes))}"
                      + (f"  [guess: {c.guess}]" if c.guess else ""))
        return 0
    kvstat = str(Path(a.kvstat).resolve())
    if not os.access(kvstat, os.X_OK):
        print(f"run_corpus: no kvstat binary at {kvstat} (swift build first, or --kvstat PATH)", file=sys.stderr)
        return 2
    if a.keep:
        Path(a.keep).mkdir(parents=True, exist_ok=True)
    passed = failed = 0
    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=a.jobs) as pool:
        futures = [pool.submit(run_case, c, kvstat, a.timeout, a.keep) for c in cases]
        for fut in futures:
            case, broken, d = fut.result()
            if broken:
                failed += 1
                head = "\n".join("      " + ln for ln in d["stderr"].strip().splitlines()[:4])
                print(f"FAIL {case.name}\n  command: {d['command']}\n  rc: {d['rc']} ({d['seconds']:.1f} s)\n"
                      f"  stderr:\n{head or '      (empty)'}\n  broke: " + "\n         ".join(broken), flush=True)
            else:
                passed += 1
                if a.verbose:
                    first = (d["stderr"].strip().splitlines() or [""])[0][:160]
                    print(f"ok   {case.name} (exit {d['rc']}, {d['seconds']:.1f} s) {first}", flush=True)
    print(f"({len(cases)} cases in {time.monotonic() - start:.0f} s)", file=sys.stderr)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
