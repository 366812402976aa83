#!/usr/bin/python3
"""bench/cgdiff.py - self Ir per function per session: callgrind of N
sessions minus callgrind of none, divided by N (what bench/cg.py's
--keep leaves in its work directory: callgrind.plain.0 and .N).

    bench/cgdiff.py WORKDIR_OR_FILE0 [FILE_N N] [--top 40]
    bench/cgdiff.py BEFORE_DIR AFTER_DIR --compare   per session, after - before
"""
import argparse
import glob
import os
import re
import subprocess


def self_ir(path, inclusive=False):
    out = subprocess.run(["callgrind_annotate",
                          "--inclusive=" + ("yes" if inclusive else "no"),
                          "--threshold=100", "--auto=no", path], capture_output=True,
                         text=True, check=True).stdout
    d = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(\S.*)$", line)
        if m and "PROGRAM TOTALS" not in line and "=>" not in line:
            fn = m.group(2)
            fn = re.sub(r"^\S*:", "", fn.split(" [")[0]) or fn
            d[fn] = d.get(fn, 0) + int(m.group(1).replace(",", ""))
    return d


def per_session(wd, inclusive=False):
    files = glob.glob(os.path.join(wd, "callgrind.plain.*"))
    ns = sorted(int(f.rsplit(".", 1)[1]) for f in files)
    n = ns[-1]
    a = self_ir(os.path.join(wd, "callgrind.plain.0"), inclusive)
    b = self_ir(os.path.join(wd, "callgrind.plain.%d" % n), inclusive)
    return {k: (b.get(k, 0) - a.get(k, 0)) / n for k in set(a) | set(b)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--inclusive", action="store_true",
                    help="inclusive Ir (the total line is then meaningless)")
    args = ap.parse_args()
    if len(args.dirs) == 1:
        d = per_session(args.dirs[0], args.inclusive)
        print("total per session: %.0f" % sum(d.values()))
        for k, v in sorted(d.items(), key=lambda x: -abs(x[1]))[:args.top]:
            print("%10.0f  %s" % (v, k))
    else:
        a = per_session(args.dirs[0], args.inclusive)
        b = per_session(args.dirs[1], args.inclusive)
        print("per session: before %.0f after %.0f" % (
            sum(a.values()), sum(b.values())))
        keys = set(a) | set(b)
        diff = {k: b.get(k, 0) - a.get(k, 0) for k in keys}
        for k, v in sorted(diff.items(), key=lambda x: -abs(x[1]))[:args.top]:
            print("%10.0f  %10.0f -> %10.0f  %s" % (v, a.get(k, 0),
                                                   b.get(k, 0), k))


if __name__ == "__main__":
    main()
