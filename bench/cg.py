#!/usr/bin/python3
"""bench/cg.py - two of run.py's measurements alone, with run.py's own code:
callgrind Ir per plaintext AUTH PLAIN session and RSS per idle plaintext
connection after EHLO (issue 12).  Needs no root, Postfix or Dovecot.

    bench/cg.py BUILD_DIR [--sessions 200] [--idle 2000] [--no-idle]
                [--no-callgrind] [--keep]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


def libuv_ir(path):
    """Self Ir of libuv's functions in a callgrind output file."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=no",
                          "--threshold=100", "--auto=no", path],
                         capture_output=True, text=True).stdout
    total = 0
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$", line)
        if m and "libuv.so" in m.group(2) and "=>" not in line:
            total += int(m.group(1).replace(",", ""))
    return total


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build")
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--hold", type=int, default=5)
    ap.add_argument("--no-idle", dest="do_idle", action="store_false")
    ap.add_argument("--no-callgrind", dest="do_cg", action="store_false")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    run.raise_nofile()
    w = run.Work(build, args.keep)
    try:
        if args.do_idle:
            s = run.Posternd(w, build, tag="posternd-idle").start()
            try:
                r = run.idle(w, s, args.idle, args.hold)
            finally:
                s.stop()
            print("idle: %d held, RSS %d -> %d KiB, %.2f KiB/conn, "
                  "PSS %.2f KiB/conn" % (r["established"], r["rss0_kib"],
                                         r["rss1_kib"],
                                         r["rss_per_conn_kib"],
                                         r["pss_per_conn_kib"]))
        if args.do_cg and shutil.which("valgrind"):
            r = run.callgrind(w, args.sessions, False)
            print("callgrind: %d Ir/session (total %d, start-up %d, "
                  "%d sessions); out %s" % (
                      r["ir_per_session"], r["ir_total"], r["ir_startup"],
                      args.sessions,
                      os.path.join(w.dir, "callgrind.plain.%d"
                                   % args.sessions)))
            uv = [libuv_ir(os.path.join(w.dir, "callgrind.plain.%d" % n))
                  for n in (0, args.sessions)]
            # libuv's uv__async_io() spins (sched_yield) while a thread
            # pool job's completion is being posted: under valgrind's
            # serialised threads that varies from run to run by a few
            # thousand Ir a session.
            print("callgrind: %d Ir/session without libuv (libuv: %d)" % (
                r["ir_per_session"] - round((uv[1] - uv[0]) / args.sessions),
                round((uv[1] - uv[0]) / args.sessions)))
            for pct, fn in r["top_self"]:
                print("  %6s%%  %s" % (pct, fn))
    finally:
        w.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
