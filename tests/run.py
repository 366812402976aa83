#!/usr/bin/python3
"""Run every postern test suite and print one closing line.

Suites: lint, the cmocka unit tests (counted case by case from their TAP
output) in the normal build and again under ASan+UBSan, the exported-symbol
check, and the pytest end-to-end suite.  The last line is
"N passed, N failed[, N skipped]".
"""
import argparse
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Tally:
    def __init__(self):
        self.passed = self.failed = self.skipped = 0
        self.failures = []

    def add(self, suite, name, ok, skipped=False, detail=""):
        if skipped:
            self.skipped += 1
            print(f"SKIP {suite}: {name} {detail}".rstrip())
        elif ok:
            self.passed += 1
        else:
            self.failed += 1
            self.failures.append(f"{suite}: {name}")
            print(f"FAIL {suite}: {name}")
            if detail:
                print(detail.rstrip())


def unit_binaries(build):
    d = os.path.join(build, "tests", "unit")
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, f) for f in os.listdir(d)
                  if f.startswith("test_") and os.access(os.path.join(d, f), os.X_OK)
                  and os.path.isfile(os.path.join(d, f)))


TAP_RE = re.compile(r"^(not ok|ok) (\d+) - (.*?)(\s+# SKIP.*)?$")


def run_unit(tally, suite, build, extra_env=None):
    bins = unit_binaries(build)
    if not bins:
        tally.add(suite, "unit tests built", False, detail=f"none in {build}")
        return
    for b in bins:
        run_tap(tally, suite, [b], extra_env)


def run_tap(tally, suite, cmd, extra_env=None):
    """Run one TAP program; count each test line, and a crash or short
    run as a failure of its own."""
    b = cmd[0]
    env = dict(os.environ, CMOCKA_MESSAGE_OUTPUT="TAP")
    if extra_env:
        env.update(extra_env)
    try:
        p = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True,
                           text=True, errors="replace", timeout=600)
    except subprocess.TimeoutExpired:
        tally.add(suite, os.path.basename(b), False, detail="timed out")
        return
    seen = 0
    planned = None
    for line in p.stdout.splitlines():
        m = re.match(r"^1\.\.(\d+)", line)
        if m:
            planned = int(m.group(1))
        m = TAP_RE.match(line)
        if not m:
            continue
        seen += 1
        name = f"{os.path.basename(b)}:{m.group(3)}"
        ok = m.group(1) == "ok"
        tally.add(suite, name, ok, skipped=bool(m.group(4)),
                  detail="" if ok else (p.stdout + p.stderr)[-4000:])
    if p.returncode != 0 and (seen == 0 or planned is None or seen < planned):
        tally.add(suite, f"{os.path.basename(b)} (exit {p.returncode})",
                  False, detail=(p.stdout + p.stderr)[-4000:])
    elif planned is not None and seen != planned:
        tally.add(suite, f"{os.path.basename(b)} plan {planned}, ran {seen}",
                  False)


def run_fuzz(tally, suite, build, extra_env=None):
    """Replay each fuzz target's corpus (fuzz/main_replay.c prints TAP)."""
    d = os.path.join(build, "fuzz")
    bins = sorted(os.path.join(d, f) for f in os.listdir(d)
                  if f.startswith("fuzz_") and os.path.isfile(os.path.join(d, f))
                  and os.access(os.path.join(d, f), os.X_OK)) \
        if os.path.isdir(d) else []
    if not bins:
        tally.add(suite, "fuzz replay built", False, detail=f"none in {d}")
        return
    for b in bins:
        corpus = os.path.join(ROOT, "fuzz", "corpus", os.path.basename(b)[5:])
        run_tap(tally, suite, [b, corpus], extra_env)


def run_lint(tally):
    p = subprocess.run([os.path.join(ROOT, "tools", "lint")], cwd=ROOT,
                       capture_output=True, text=True)
    tally.add("lint", "tools/lint", p.returncode == 0, detail=p.stdout + p.stderr)


def run_symbols(tally, build):
    """Exported symbols of libpostern.so: every one pst_*, none pst__*."""
    so = os.path.join(build, "lib", "libpostern.so")
    if not os.path.exists(so):
        tally.add("symbols", "libpostern.so built", False)
        return
    p = subprocess.run(["nm", "-D", "--defined-only", so], capture_output=True,
                       text=True)
    names = [l.split()[-1].split("@")[0] for l in p.stdout.splitlines()
             if l.strip()]
    names = [n for n in names if not n.startswith("POSTERN_")]
    bad = [n for n in names if not n.startswith("pst_") or n.startswith("pst__")]
    tally.add("symbols", "exports are pst_* only", not bad and len(names) > 10,
              detail="unexpected: " + " ".join(bad[:20]))
    wanted = ["pst_sasl_server_step", "pst_sasl_client_step", "pst_base64_decode",
              "pst_cred_verify", "pst_strerror"]
    missing = [w for w in wanted if w not in names]
    tally.add("symbols", "public API exported", not missing,
              detail="missing: " + " ".join(missing))


def run_pytest(tally, build, suite="e2e", extra_env=None, select=None):
    """The pytest suite against the programs of build.  With the ASan
    build, posternd and postern run under AddressSanitizer and
    UndefinedBehaviorSanitizer: a report aborts them and fails the test;
    a leak makes posternd's exit code non-zero, which the tests check."""
    tests = os.path.join(ROOT, "tests", "e2e")
    if not any(f.startswith("test_") and f.endswith(".py") for f in os.listdir(tests)):
        return
    xml = os.path.join(build, f"{suite}-junit.xml")
    if os.path.exists(xml):
        os.remove(xml)
    env = dict(os.environ, POSTERN_BUILD=os.path.abspath(build))
    if extra_env:
        env.update(extra_env)
    args = [tests] if select is None else [os.path.join(tests, f) for f in select]
    p = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={xml}"] + args, cwd=ROOT, env=env,
                       capture_output=True, text=True, errors="replace")
    if not os.path.exists(xml):
        tally.add(suite, "pytest ran", False, detail=p.stdout + p.stderr)
        return
    root = ET.parse(xml).getroot()
    for case in root.iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        failed = case.find("failure") is not None or case.find("error") is not None
        skipped = case.find("skipped") is not None
        detail = ""
        if failed:
            el = case.find("failure") if case.find("failure") is not None else case.find("error")
            detail = (el.get("message") or "") + "\n" + (el.text or "")[-3000:]
        if skipped:
            detail = case.find("skipped").get("message") or ""
        tally.add(suite, name, not failed, skipped=skipped, detail=detail)
    if p.returncode not in (0, 1, 5):
        tally.add(suite, f"pytest exit {p.returncode}", False,
                  detail=(p.stdout + p.stderr)[-4000:])


def run_fuzz_live(tally, build, secs):
    """libFuzzer itself, briefly: fuzz/run.sh builds the clang targets
    in build (ASan+UBSan+libFuzzer) and runs each for secs seconds from
    its seed corpus; a target passes if it ran, found nothing and exited
    0.  Catches a regression the corpus replay would miss."""
    p = subprocess.run(["sh", os.path.join(ROOT, "fuzz", "run.sh"), "-b",
                        build, "-t", str(secs)], cwd=ROOT,
                       capture_output=True, text=True)
    summary = os.path.join(build, "fuzz-out", "summary.txt")
    lines = open(summary).read().splitlines() if os.path.exists(summary) \
        else []
    if not lines:
        tally.add("fuzz-live", "fuzz/run.sh ran", False,
                  detail=(p.stdout + p.stderr)[-4000:])
        return
    for line in lines:
        name, rest = line.split(" ", 1)
        kv = dict(x.split("=", 1) for x in rest.split())
        ok = (kv.get("findings") == "0" and kv.get("exit") == "0" and
              kv.get("runs", "?").isdigit() and int(kv["runs"]) > 0)
        log = os.path.join(build, "fuzz-out", name, "log.txt")
        detail = "" if ok else line + "\n" + (
            open(log, errors="replace").read()[-3000:]
            if os.path.exists(log) else "")
        tally.add("fuzz-live", f"fuzz_{name} {secs} s: runs={kv.get('runs')}"
                  f" cov={kv.get('cov')}", ok, detail=detail)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--asan", default=None)
    ap.add_argument("--fuzz-build", default=None,
                    help="clang build directory for the fuzz-live suite")
    ap.add_argument("--fuzz-seconds", type=int, default=3)
    ap.add_argument("--only", default=None,
                    help="comma list of suites: lint,unit,asan,symbols,fuzz,"
                         "fuzz-live,e2e,asan-e2e")
    a = ap.parse_args()
    only = set(a.only.split(",")) if a.only else None
    t = Tally()

    def want(s):
        return only is None or s in only

    if want("lint"):
        run_lint(t)
    if want("unit"):
        run_unit(t, "unit", a.build)
    if want("symbols"):
        run_symbols(t, a.build)
    if want("fuzz"):
        run_fuzz(t, "fuzz", a.build)
    if a.asan and want("asan"):
        run_unit(t, "asan", a.asan, {
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
        })
        if want("fuzz"):
            run_fuzz(t, "asan-fuzz", a.asan, {
                "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
                "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
            })
    if a.fuzz_build and want("fuzz-live"):
        run_fuzz_live(t, a.fuzz_build, a.fuzz_seconds)
    if want("e2e"):
        run_pytest(t, a.build)
    if a.asan and want("asan-e2e"):
        # The daemon and the client under ASan+UBSan through the suites
        # that drive them hardest (valgrind and timing tests need the
        # plain build).
        tests = os.path.join(ROOT, "tests", "e2e")
        select = sorted(f for f in os.listdir(tests)
                        if re.match(r"test_(posternd_(clients|replies|session|"
                                    r"hostile|throttle|pgsql|limits|relay|oauth)|"
                                    r"postern_send|sendmail)\w*\.py$", f))
        run_pytest(t, a.asan, "asan-e2e", {
            "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
            "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1",
        }, select)
    if t.failures:
        print("\nFailed:")
        for f in t.failures:
            print("  " + f)
    line = f"{t.passed} passed, {t.failed} failed"
    if t.skipped:
        line += f", {t.skipped} skipped"
    print(line)
    return 1 if t.failed or t.passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
