#!/usr/bin/python3
"""bench/cg.py - two of run.py's measurements alone, with run.py's own code:
callgrind Ir per plaintext AUTH PLAIN session and RSS per idle plaintext
connection after EHLO (issue 12).  Needs no root, Postfix or Dovecot.

    bench/cg.py BUILD_DIR [--sessions 200] [--idle 2000] [--no-idle]
                [--no-callgrind] [--keep]
"""
import argparse
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402


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
            for pct, fn in r["top_self"]:
                print("  %6s%%  %s" % (pct, fn))
    finally:
        w.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
