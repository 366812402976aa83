#!/usr/bin/python3
"""bench/relay.py - posternd as a relay against Postfix as the same relay,
both handing every message to Postfix's smtp-sink (issue 13).

    bench/relay.py [BUILD_DIR] [--count N] [--concurrency 1,10,50]
                   [--reps 3] [--relay-connections 20] [--starttls] ...

Sessions of `postern bench` (AUTH PLAIN, one 4 KiB message each) submit
to posternd, which queues each message (fsync'd before the 250) and
relays it to smtp-sink as its smarthost; and, in turn, to a private
Postfix (`postfix -c DIR`, Dovecot SASL) with `relayhost` = the same
smtp-sink.  The figure is messages/s end to end: from the start of the
first submission to the moment smtp-sink has received the N-th message
(it counts with -c).  Both servers keep their queue durable: posternd
always, Postfix by default (nothing here turns it off).

Each (concurrency, server) point runs --reps times, the servers taking
turns; a fresh posternd per run (its "stopped" log line gives that
run's group-commit counters), one Postfix for all.  Results: a dated
entry in bench/RESULTS.md (--results) and every raw figure in the work
directory (relay-results.json); --from-json renders an entry again.
Run by hand as root, never by `make test`.
"""
import argparse
import datetime
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import run  # noqa: E402  (bench/run.py: servers, CPU time, the report)
from run import (BENCH, ROOT, USER, cpu_seconds, die, fmt, log,  # noqa
                 loadavg, stop_proc, wait_port)

RCPT = "rcpt@example.org"  # not local to either server: relayed
SINK = "/usr/sbin/smtp-sink"
PACKAGES = [p for p in run.PACKAGES
            if p[0] in ("postfix", "dovecot-core", "openssl", "linux-perf")]


# --- The smarthost ---------------------------------------------------------

class Sink:
    """smtp-sink with -c: after each "." (and each session end) it writes
    "sess=S quit=Q mesg=M\\r" to stdout, unbuffered.  A thread reads it and
    notes when each message count was first seen."""
    name = "smtp-sink"

    def __init__(self):
        self.port = run.free_port()
        self.proc = None
        self.cond = threading.Condition()
        self.mesg = 0
        self.sess = 0  # sessions ended (the relays' connections)
        self.seen = {0: time.monotonic()}  # count -> monotonic time

    def start(self):
        # -u nobody: it refuses to run as root; -m: more connections than
        # either relay opens; 4096: the listen backlog.
        self.proc = subprocess.Popen(
            [SINK, "-c", "-4", "-u", "nobody", "-m", "1000",
             "127.0.0.1:%d" % self.port, "4096"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        threading.Thread(target=self._read, daemon=True).start()
        if not wait_port(self.port, 30, self.proc):
            die("smtp-sink did not start")
        return self

    def _read(self):
        fd = self.proc.stdout.fileno()
        pending = b""
        while True:
            data = os.read(fd, 65536)
            if not data:
                break
            now = time.monotonic()
            pending += data
            *lines, pending = pending.split(b"\r")
            last = None
            for line in lines:
                m = re.search(rb"sess=(\d+) .*mesg=(\d+)", line)
                if m:
                    self.sess = int(m.group(1))
                    last = int(m.group(2))
            if last is not None and last > self.mesg:
                with self.cond:
                    for k in range(self.mesg + 1, last + 1):
                        self.seen[k] = now
                    self.mesg = last
                    self.cond.notify_all()

    def count(self):
        with self.cond:
            return self.mesg

    def wait_for(self, n, timeout):
        """The monotonic time smtp-sink first reported n messages, or
        None if it has not within timeout seconds."""
        end = time.monotonic() + timeout
        with self.cond:
            while self.mesg < n:
                left = end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return None
                self.cond.wait(min(left, 1))
            return self.seen[n]

    def when(self, n):
        with self.cond:
            return self.seen.get(n)

    def roots(self):
        return [self.proc.pid] if self.proc else []

    def stop(self):
        stop_proc(self.proc)


# --- The two relays --------------------------------------------------------

class RelayPosternd(run.Posternd):
    name = "posternd"
    durable_text = ("queue file and envelope fsync'd, queue directory "
                    "fsync'd (group commit) before 250")

    def __init__(self, w, build, sink, conns, tag):
        # A pure relay: no local_domains, so every recipient is relayed
        # (posternd.conf(5) ROUTING); "relay = sink" for every sender.
        extra = ("relay = sink\nretry_min = 1s\nretry_max = 2s\n\n"
                 "[relay sink]\nhost = 127.0.0.1:%d\ntls = none\n"
                 "auth = none\nmax_connections = %d\n"
                 "max_messages_per_minute = 0\n\n" % (sink.port, conns))
        super().__init__(w, build, tag=tag, extra=extra)
        self.queue = os.path.join(self.dir, "spool", "queue")

    def queued(self):
        try:
            return sum(1 for f in os.listdir(self.queue)
                       if f.endswith(".env"))
        except FileNotFoundError:
            return 0

    def settle(self, timeout=180):
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.queued() > 0:
            time.sleep(0.1)
        if self.queued() > 0:
            log("posternd: %d messages still queued after %d s"
                % (self.queued(), timeout))

    def events(self, name):
        with open(self.logf, errors="replace") as f:
            return sum(1 for line in f if " event=%s " % name in line or
                       line.rstrip("\n").endswith(" event=" + name))


class RelayPostfix(run.Postfix):
    name = "postfix"
    durable_text = "queue file fsync'd before 250 (Postfix's default)"

    def __init__(self, w, sink, tag="postfix-relay"):
        self.sink_port = sink.port
        super().__init__(w, tag=tag)

    def delivery_cf(self):
        # Every recipient to the sink: nothing is local (mydestination,
        # virtual_mailbox_domains and relay_domains empty), the default
        # transport smtp(8) goes to the relayhost.  Process and
        # destination concurrency limits are Postfix's defaults.
        return "relayhost = [127.0.0.1]:%d\n" % self.sink_port

    def settings(self):
        """The defaults that shape its relaying, as this Postfix has them."""
        keys = ["default_destination_concurrency_limit",
                "initial_destination_concurrency", "default_process_limit",
                "smtp_connection_cache_on_demand", "in_flow_delay"]
        r = subprocess.run(["/usr/sbin/postconf", "-c", self.etc] + keys,
                           capture_output=True, text=True)
        return dict(line.split(" = ", 1) for line in
                    r.stdout.splitlines() if " = " in line)


# --- One run ---------------------------------------------------------------

def relay_run(w, sink, server, c, n, rep, starttls=False, perf=None):
    """n sessions of one message each through server to the sink, c at a
    time; returns the run's figures (also appended to w.results)."""
    args = [w.postern, "bench", "--json", "--server", server.url,
            "--concurrency", str(c), "--count", str(n), "--mech", "PLAIN",
            "--user", USER, "--password-file", w.pwfile, "--to", RCPT,
            "--timeout", "120"]
    if starttls:
        args += ["--starttls", "--cafile", w.cert]
    # This disk's fsync latency now (other work on the machine shares
    # the disk too): the other thing besides CPU that a run waits for.
    fsync_ms = run.fsync_cost(w.dir, 100)
    base = sink.count()
    sess0 = sink.sess
    load0 = loadavg()
    cpu0 = cpu_seconds(server.roots())
    sink_cpu0 = cpu_seconds(sink.roots())
    rec = None
    if perf:
        rec = subprocess.Popen(["perf", "record", "-g", "-F", "999", "-o",
                                perf, "-p", str(server.proc.pid)],
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        time.sleep(0.5)
    t0 = time.monotonic()
    r = subprocess.run(args, capture_output=True, text=True,
                       timeout=n * 2 + 600)
    t_acc = time.monotonic()
    try:
        res = json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        die("postern bench failed (%d): %s\n%s%s" % (
            r.returncode, " ".join(args), r.stdout, r.stderr))
    ok = res["sessions"]
    t_end = sink.wait_for(base + ok, 600)
    server.settle()
    if rec is not None:
        rec.send_signal(signal.SIGINT)
        rec.wait()
    cpu = cpu_seconds(server.roots()) - cpu0
    sink_cpu = cpu_seconds(sink.roots()) - sink_cpu0
    delivered = sink.count() - base
    out = {
        "kind": "relay", "server_name": server.name, "concurrency": c,
        "rep": rep, "starttls": starttls, "count": n, "sessions": ok,
        "failures": res["failures"],
        "failure_samples": res["failure_samples"][:3],
        "delivered": delivered,
        "relay_sessions": sink.sess - sess0,
        "accept_s": t_acc - t0,
        "accepted_per_s": ok / (t_acc - t0),
        "bench_sessions_per_s": res["sessions_per_s"],
        "latency_ms": res["latency_ms"],
        "client_cpu_s": res.get("client_cpu_s"),
        "e2e_s": (t_end - t0) if t_end else None,
        "e2e_per_s": ok / (t_end - t0) if t_end else None,
        "drain_s": (t_end - t_acc) if t_end else None,
        "server_cpu_s": round(cpu, 2),
        "server_cpu_ms_per_msg": round(cpu * 1000 / ok, 3) if ok else None,
        "sink_cpu_s": round(sink_cpu, 2),
        "load_start": load0, "load_end": loadavg(), "fsync_ms": fsync_ms,
    }
    # The steady part: from the 10th to the 90th percentile message at
    # the sink, without the ramp-up and the tail.
    lo, hi = base + max(1, ok // 10), base + ok - ok // 10
    t_lo, t_hi = sink.when(lo), sink.when(hi)
    if t_lo is not None and t_hi is not None and t_hi > t_lo:
        out["steady_per_s"] = (hi - lo) / (t_hi - t_lo)
    if isinstance(server, RelayPosternd):
        out["queue_done"] = server.events("queue_done")
        out["message_accepted"] = server.events("message_accepted")
    w.results.append(out)
    log("%-8s c=%-3d rep %d: %5d msgs, accepted %7.1f/s, end to end %s/s "
        "(steady %s/s), drain %s s, server CPU %.1f s (%.2f ms/msg), "
        "fail %d, load %s" % (
            server.name, c, rep, ok, out["accepted_per_s"],
            fmt(out["e2e_per_s"], 1), fmt(out.get("steady_per_s"), 1),
            drain(out["drain_s"]), cpu,
            out["server_cpu_ms_per_msg"] or 0, res["failures"], load0))
    if res["failures"]:
        log("    first failure: %s" % res["failure_samples"][:1])
    if t_end is None or delivered != ok:
        log("    the sink has %d of %d messages" % (delivered, ok))
    return out


SYSCALLS = ("fsync", "fdatasync", "openat", "linkat", "rename", "unlink",
            "read", "write", "sendto", "futex", "epoll_wait", "close")


def strace_counts(w, sink, server, n, c):
    """System calls per message of the server's process tree (strace -f
    -c, every thread and every child it starts) over one run of n
    messages; the run itself is slowed down and not counted."""
    out = os.path.join(w.dir, "strace-%s.txt" % server.name)
    pids = run.proc_tree(server.roots())
    st = subprocess.Popen(["strace", "-f", "-c", "-o", out] +
                          [a for p in pids for a in ("-p", str(p))],
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
    time.sleep(2)  # attached
    r = relay_run(w, sink, server, c, n, -1)
    w.results.remove(r)
    time.sleep(1)
    st.send_signal(signal.SIGINT)
    st.wait()
    calls = {}
    with open(out) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?"
                         r"(\w+)\s*$", line)
            if m and m.group(2) != "total":
                calls[m.group(2)] = int(m.group(1))
    res = {"kind": "strace", "server_name": server.name, "count":
           r["sessions"], "concurrency": c, "calls": calls,
           "total": sum(calls.values())}
    w.results.append(res)
    log("strace %s: %s" % (server.name, ", ".join(
        "%s %.1f" % (k, calls.get(k, 0) / max(1, r["sessions"]))
        for k in SYSCALLS[:6])))
    return res


def ext4_journal(path):
    """"journal", "no journal", or None when path is not on ext4: from
    /sys/fs/ext4/DEV/journal_task ("<none>" without a journal)."""
    dev = os.stat(path).st_dev
    base = "/sys/fs/ext4"
    for name in (os.listdir(base) if os.path.isdir(base) else []):
        try:
            with open("/sys/dev/block/%d:%d/uevent" % (
                    os.major(dev), os.minor(dev))) as f:
                if "DEVNAME=%s\n" % name not in f.read():
                    continue
            with open(os.path.join(base, name, "journal_task")) as f:
                return ("no journal" if f.read().strip() == "<none>"
                        else "journal")
        except OSError:
            continue
    return None


def age_inodes(seconds):
    """Write back, then wait until the inodes the last run freed are no
    longer "recently deleted".  On ext4 without a journal (this machine's
    /var/tmp), every inode allocation skips free inodes whose deletion is
    under 60 s old (300 s more while their inode table block is dirty),
    testing each with a buffer cache lookup (fs/ext4/ialloc.c,
    find_inode_bit, recently_deleted): after a run that made and removed
    tens of thousands of files, the next one pays for each file it
    creates in proportion, and so would depend on its predecessor."""
    os.sync()
    time.sleep(seconds)


# --- Report ----------------------------------------------------------------

SECTION = "## Relay: posternd and Postfix to smtp-sink (issue 13)"
MARK = "<!-- bench/relay.py inserts each new run below this line -->"
INTRO = """Written by `bench/relay.py` (see bench/README.md): `postern bench`
sessions submit (AUTH PLAIN, one 4 KiB message each) to posternd, which
relays to smtp-sink as its smarthost, and to Postfix configured as the
same relay (`relayhost` = the same smtp-sink).  Messages/s end to end:
from the first submission to smtp-sink having all N.  Newest first."""


def pick(results, **kv):
    return [r for r in results if all(r.get(k) == v for k, v in kv.items())]


def med(rows, key):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def spread(rows, key):
    """min-max as a percentage of the median."""
    vals = [r[key] for r in rows if r.get(key) is not None]
    if len(vals) < 2:
        return None
    return (max(vals) - min(vals)) / statistics.median(vals) * 100


def paired(results, c, starttls, key="e2e_per_s"):
    """posternd/Postfix ratios of runs made in the same round."""
    a = {r["rep"]: r[key] for r in pick(results, server_name="posternd",
                                        concurrency=c, starttls=starttls)}
    b = {r["rep"]: r[key] for r in pick(results, server_name="postfix",
                                        concurrency=c, starttls=starttls)}
    return [a[k] / b[k] for k in sorted(a)
            if k in b and a[k] and b[k]]


def drain(v):
    """Seconds from the last 221 to the sink's last message; negative when
    the sink had it before the client had read the 221."""
    return "—" if v is None else "%.2f" % (round(v, 2) + 0.0)


def report(results, meta):
    args = argparse.Namespace(**meta["args"])
    info = meta["machine"]
    L = ["### %s" % meta["when"], ""]
    L.append("- Machine: %s, %d CPUs \"%s\", %s GiB RAM, Linux %s, %s; "
             "work files on %s%s.  Load average (1, 5, 15 min) %s at the "
             "start, %s at the end; each run's is in the table below."
             % (info["virt"], info["nproc"], info["cpu"], info["mem_gib"],
                info["kernel"], info["os"], info["fs"],
                " (%s)" % meta["journal"] if meta.get("journal") else "",
                meta["load_start"],
                meta["load_end"]))
    L.append("- Software: Postfix %s, Dovecot %s, OpenSSL %s, libuv %s, gcc "
             "%s; posternd and postern from `%s` (%s)."
             % (info["postfix"], info["dovecot"], info["openssl"],
                info["libuv"], info["gcc"], args.build, args.buildtype))
    L.append("- Command: `bench/relay.py %s` (%.0f minutes).  Load: "
             "`postern bench --concurrency C --count %d --mech PLAIN --to "
             "%s`%s: one message (4 KiB, 1 recipient) per session, every "
             "reply checked."
             % (" ".join(args.argv), meta["elapsed_s"] / 60, args.count,
                RCPT, " (plaintext)" if not args.starttls else
                " (plaintext, and with --starttls)"))
    L.append("- One 4 KiB file written, fsync'd, renamed and its directory "
             "fsync'd: %.2f ms (median of 200) on this disk."
             % meta["fsync_ms"])
    pf = meta.get("postfix_settings", {})
    L.append("- posternd: `[relay sink]` with `tls = none`, `auth = none`, "
             "`max_connections = %d`, `max_messages_per_minute = 0`, "
             "`relay = sink`, no `local_domains`; the submission listener "
             "of bench/run.py (AUTH PLAIN before TLS allowed, `workers = "
             "auto`); %s.  A fresh posternd for each run."
             % (args.relay_connections, RelayPosternd.durable_text))
    L.append("- Postfix: `relayhost = [127.0.0.1]:PORT`, nothing local, "
             "Dovecot SASL (passwd-file, `{PLAIN}`) for the submitters, "
             "defaults otherwise (%s); %s.  One Postfix for all its runs."
             % (", ".join("`%s = %s`" % kv for kv in pf.items()),
                RelayPostfix.durable_text))
    if getattr(args, "inode_wait", 0):
        L.append("- Before each run: sync(2), then %g s idle, so that no "
                 "run inherits the previous one's \"recently deleted\" "
                 "inodes (ext4 without a journal skips them at each file "
                 "creation; bench/README.md)." % args.inode_wait)
    L.append("- smtp-sink: `smtp-sink -c -4 -u nobody -m 1000`; stores "
             "nothing.  Its counter says when it has the N-th message; "
             "\"steady\" is the rate between its 10th and 90th percentile "
             "message (no ramp-up, no tail).")
    for tls in ([False, True] if args.starttls else [False]):
        L.append("")
        L.append("#### %s, messages/s end to end (median of %d; runs)"
                 % ("STARTTLS + AUTH PLAIN" if tls else
                    "Plaintext, AUTH PLAIN", args.reps))
        L.append("")
        L.append("| c | posternd | Postfix | posternd / Postfix "
                 "(medians; paired by round) | aim ≥ 2× (both) |")
        L.append("|---|---|---|---|---|")
        for c in args.concurrency:
            cells = []
            for s in ("posternd", "postfix"):
                rows = pick(results, server_name=s, concurrency=c,
                            starttls=tls)
                m = med(rows, "e2e_per_s")
                sp = spread(rows, "e2e_per_s")
                cells.append("**%s** (%s)%s" % (
                    fmt(m), ", ".join(fmt(r["e2e_per_s"]) for r in rows),
                    "" if sp is None else ", spread %.0f %%" % sp))
            a = med(pick(results, server_name="posternd", concurrency=c,
                         starttls=tls), "e2e_per_s")
            b = med(pick(results, server_name="postfix", concurrency=c,
                         starttls=tls), "e2e_per_s")
            pr = paired(results, c, tls)
            ratio = "—"
            met = "—"
            if a and b:
                # Met only when both say so: the ratio of the medians and
                # the median of the ratios paired by round.
                v = min(a / b, statistics.median(pr) if pr else a / b)
                ratio = "%.2f×; %s%s" % (a / b, "median %.2f×: " % (
                    statistics.median(pr)) if pr else "", ", ".join(
                    "%.2f×" % x for x in pr))
                met = "yes" if v >= 2 else "**no**"
            L.append("| %d | %s | %s | %s | %s |" % (c, cells[0], cells[1],
                                                    ratio, met))
        L.append("")
        L.append("Every run (accepted/s: the submissions alone, until the "
                 "last session's 221; drain: from then until the sink had "
                 "them all; CPU: the server's process tree from /proc, "
                 "utime+stime with reaped children, until its queue was "
                 "empty; cores busy: that CPU time over the end-to-end "
                 "time, of %d; fsync ms: a 4 KiB file written, fsync'd, "
                 "renamed and its directory fsync'd just before the run, "
                 "median of 100):" % info["nproc"])
        L.append("")
        L.append("| server | c | round | accepted/s | end to end/s | steady/s"
                 " | drain s | session p50 / p99 ms | server CPU s (ms/msg; "
                 "cores busy) "
                 "| client / sink CPU s | fail | load avg at start | "
                 "fsync ms |")
        L.append("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for c in args.concurrency:
            for s in ("posternd", "postfix"):
                for r in pick(results, server_name=s, concurrency=c,
                              starttls=tls):
                    L.append("| %s | %d | %d | %s | %s | %s | %s | %s / %s | "
                             "%.1f (%s; %.2f) | %s / %.1f | %d | %s | %s |" % (
                                 s, c, r["rep"] + 1,
                                 fmt(r["accepted_per_s"]),
                                 fmt(r["e2e_per_s"]),
                                 fmt(r.get("steady_per_s")),
                                 drain(r["drain_s"]),
                                 fmt(r["latency_ms"]["p50"], 1),
                                 fmt(r["latency_ms"]["p99"], 1),
                                 r["server_cpu_s"],
                                 fmt(r["server_cpu_ms_per_msg"], 2),
                                 r["server_cpu_s"] / r["e2e_s"]
                                 if r["e2e_s"] else 0,
                                 fmt(r["client_cpu_s"], 1),
                                 r["sink_cpu_s"], r["failures"],
                                 r["load_start"],
                                 fmt(r.get("fsync_ms"), 2)))
    gc = [r for r in pick(results, server_name="posternd")
          if r.get("dir_syncs") is not None]
    if gc:
        L.append("")
        L.append("posternd's group commit (`event=stopped dir_syncs= "
                 "dir_syncs_shared=`, one posternd per run): fsyncs of the "
                 "queue directory run, and commits covered by another's "
                 "fsync, medians per message:")
        L.append("")
        L.append("| c | dir_syncs / message | dir_syncs_shared / message "
                 "| runs (dir_syncs, shared) |")
        L.append("|---|---|---|---|")
        for c in args.concurrency:
            rows = [r for r in gc if r["concurrency"] == c]
            if not rows:
                continue
            L.append("| %d | %.2f | %.2f | %s |" % (
                c, statistics.median(r["dir_syncs"] / r["sessions"]
                                     for r in rows),
                statistics.median(r["dir_syncs_shared"] / r["sessions"]
                                  for r in rows),
                "; ".join("%s, %s" % (fmt(r["dir_syncs"]),
                                      fmt(r["dir_syncs_shared"]))
                          for r in rows)))
    rs = [r for r in pick(results, kind="relay")
          if r.get("relay_sessions") is not None]
    if rs:
        L.append("")
        L.append("Connections to the sink (sessions smtp-sink counted during "
                 "the run; a connection still open at its end counts in "
                 "the next), medians:")
        L.append("")
        L.append("| c | posternd: connections (messages each) | Postfix: "
                 "connections (messages each) |")
        L.append("|---|---|---|")
        for c in args.concurrency:
            cells = []
            for name in ("posternd", "postfix"):
                rows = [r for r in rs if r["server_name"] == name and
                        r["concurrency"] == c and not r["starttls"]]
                n = med(rows, "relay_sessions")
                cells.append("—" if n is None else "%s (%.1f)" % (
                    fmt(n), statistics.median(
                        r["sessions"] / max(1, r["relay_sessions"])
                        for r in rows)))
            L.append("| %d | %s | %s |" % (c, cells[0], cells[1]))
    sc = pick(results, kind="strace")
    if sc:
        L.append("")
        L.append("#### System calls per message (strace -f -c, c=%d, %s "
                 "messages, a run of its own)" % (sc[0]["concurrency"],
                                                  fmt(sc[0]["count"])))
        L.append("")
        L.append("| server | " + " | ".join(SYSCALLS) + " | all |")
        L.append("|---|" + "---|" * (len(SYSCALLS) + 1))
        for r in sc:
            k = max(1, r["count"])
            L.append("| %s | %s | %.1f |" % (r["server_name"], " | ".join(
                "%.1f" % (r["calls"].get(x, 0) / k) for x in SYSCALLS),
                r["total"] / k))
        L.append("")
        L.append("The server's whole process tree, every thread and child "
                 "(Postfix: master, smtpd, cleanup, qmgr, trivial-rewrite, "
                 "smtp, Dovecot's auth).  fsync and fdatasync are the "
                 "durability cost; posternd's futex calls are libuv's "
                 "thread pool handing work over.")
    perf = pick(results, kind="perf")
    if perf and perf[0]["top"]:
        p = perf[0]
        L.append("")
        L.append("#### Where posternd's CPU goes (perf, plaintext c=%d, "
                 "%s messages/s end to end during the profile)" % (
                     p["concurrency"], fmt(p["e2e_per_s"])))
        L.extend(run.perf_lines(p))
    L.append("")
    return "\n".join(L)


def finish(results, meta, path):
    entry = report(results, meta)
    print(entry)
    if path != "-":
        run.write_results(path, entry, SECTION, MARK, INTRO)
        log("results added to " + path)


# --- Main --------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"),
                    help="meson build directory (default: ./build)")
    ap.add_argument("--count", type=int, default=5000,
                    help="messages (sessions) per run (default 5000)")
    ap.add_argument("--concurrency", default="1,10,50",
                    help="submitting sessions at once (default 1,10,50)")
    ap.add_argument("--reps", type=int, default=3,
                    help="runs of each point (default 3)")
    ap.add_argument("--relay-connections", type=int, default=20,
                    help="posternd's max_connections to the sink (default "
                    "20, Postfix's default_destination_concurrency_limit)")
    ap.add_argument("--inode-wait", type=float, default=65,
                    help="seconds to wait after sync(2) before each run "
                    "(default 65; see age_inodes())")
    ap.add_argument("--starttls", action="store_true",
                    help="also submit over STARTTLS")
    ap.add_argument("--strace", type=int, default=1000, metavar="N",
                    help="count each server's system calls over one more "
                    "run of N messages at c=10 (default 1000; 0: skip)")
    ap.add_argument("--no-perf", dest="perf", action="store_false",
                    help="skip the perf profile of posternd")
    ap.add_argument("--only", choices=("posternd", "postfix"),
                    help="run one server only")
    ap.add_argument("--no-install", action="store_true",
                    help="never run apt-get")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory")
    ap.add_argument("--results", default=os.path.join(BENCH, "RESULTS.md"),
                    help="where to add the dated entry ('-': nowhere)")
    ap.add_argument("--from-json", metavar="FILE",
                    help="run nothing: render the entry again from a "
                    "relay-results.json")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            saved = json.load(f)
        finish(saved["results"], saved["meta"], args.results)
        return 0
    args.argv = sys.argv[1:]
    args.concurrency = [int(c) for c in args.concurrency.split(",")]
    run.check_build(args)
    run.ensure_packages(not args.no_install, PACKAGES)
    if os.geteuid() != 0:
        die("run as root: Postfix, Dovecot and smtp-sink need it", 77)
    run.raise_nofile()
    w = run.Work(args.build, args.keep)
    log("work directory " + w.dir)
    t_start = time.monotonic()
    load_start = loadavg()
    info = run.machine()
    started = []
    pf_settings = {}
    try:
        fsync_ms = run.fsync_cost(w.dir)
        sink = Sink().start()
        started.append(sink)
        pf = None
        if args.only != "posternd":
            pf = RelayPostfix(w, sink).start()
            started.append(pf)
            pf_settings = pf.settings()
        k = 0

        def one(name, c, rep, tls):
            nonlocal k
            if name == "postfix":
                return relay_run(w, sink, pf, c, args.count, rep, tls)
            k += 1
            pd = RelayPosternd(w, args.build, sink, args.relay_connections,
                               "posternd-%d" % k).start()
            started.append(pd)
            try:
                r = relay_run(w, sink, pd, c, args.count, rep, tls)
            finally:
                pd.stop()
                started.remove(pd)
            gc = pd.group_commit()
            if gc:
                r["dir_syncs"], r["dir_syncs_shared"] = gc
            shutil.rmtree(pd.dir, ignore_errors=True)
            return r

        names = [s for s in ("posternd", "postfix")
                 if args.only in (None, s)]
        for rep in range(args.reps):
            for c in args.concurrency:
                for tls in ([False, True] if args.starttls else [False]):
                    # Alternate who goes first, so a busy moment on the
                    # machine does not always land on the same server.
                    for name in (names if rep % 2 == 0 else names[::-1]):
                        age_inodes(args.inode_wait)
                        one(name, c, rep, tls)
        if args.strace and shutil.which("strace"):
            for name in names:
                age_inodes(args.inode_wait)
                if name == "postfix":
                    strace_counts(w, sink, pf, args.strace, 10)
                    continue
                pd = RelayPosternd(w, args.build, sink,
                                   args.relay_connections,
                                   "posternd-strace").start()
                started.append(pd)
                strace_counts(w, sink, pd, args.strace, 10)
                pd.stop()
                started.remove(pd)
        if args.perf and shutil.which("perf") and args.only != "postfix":
            c = max(args.concurrency)
            age_inodes(args.inode_wait)
            pd = RelayPosternd(w, args.build, sink, args.relay_connections,
                               "posternd-perf").start()
            started.append(pd)
            data = os.path.join(w.dir, "perf.data")
            r = relay_run(w, sink, pd, c, args.count, -1, perf=data)
            w.results.remove(r)
            p = run.perf_summary(data)
            p.update(kind="perf", concurrency=c, e2e_per_s=r["e2e_per_s"])
            w.results.append(p)
            pd.stop()
            started.remove(pd)
    finally:
        for s in reversed(started):
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log("stopping %s: %s" % (s.name, e))
    meta = {
        "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": info, "load_start": load_start, "load_end": loadavg(),
        "fsync_ms": fsync_ms, "elapsed_s": time.monotonic() - t_start,
        "postfix_settings": pf_settings,
        "journal": ext4_journal(w.dir),
        "args": {k: getattr(args, k) for k in (
            "argv", "build", "buildtype", "count", "concurrency", "reps",
            "relay_connections", "starttls", "inode_wait")},
    }
    if meta["args"]["build"].startswith(ROOT):
        meta["args"]["build"] = os.path.relpath(args.build, ROOT)
    with open(os.path.join(w.dir, "relay-results.json"), "w") as f:
        json.dump({"meta": meta, "results": w.results}, f, indent=1)
    finish(w.results, meta, args.results)
    w.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
