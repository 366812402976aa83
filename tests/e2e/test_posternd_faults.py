"""Faults (issue 6, "Faults: nothing acknowledged is lost, nothing
half-written is visible"): posternd killed with SIGKILL under concurrent
load, a full disk, and a user file that vanishes at reload.

Figures and how to reproduce them: docs/SECURITY.md, "Crash tests".
The crash test's seed is POSTERN_CRASH_SEED (default below); every
failure message names it, so a failing run can be replayed.
"""
import os
import random
import re
import resource
import shutil
import signal
import smtplib
import subprocess
import threading
import time

import pytest

from posternd_util import (Posternd, SMTPRaw, posternd_bin, start_wrapped,
                           strip_received, unique_rcpt, wait_until)

USER = "tim@example.test"
PASSWORD = "tanstaaftanstaaf"
OK_235 = (235, ["235 2.7.0 Authentication successful"])
NOT_STORED = (451, ["451 4.3.0 Error: message not stored, try again later"])
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as [0-9A-F]+$")
MID = re.compile(rb"^Message-ID: <([^>]+)>\r$", re.M | re.I)

SEED = int(os.environ.get("POSTERN_CRASH_SEED", "20240606"))
KILLS = int(os.environ.get("POSTERN_CRASH_KILLS", "5"))
THREADS = 8
IO_TIMEOUT = 10           # seconds, on every client socket
# server.c's server_run(): maildir_spool_clean(spool, MAILDIR_SPOOL_GRACE)
# removes the spool files no live posternd holds locked (flock), once
# this many seconds old.  Spool files are unnamed (O_TMPFILE) where the
# kernel allows, so a kill leaves none; POSTERN_MAILDIR_NO_TMPFILE=1 in
# the environment makes posternd use named, locked ones.
SPOOL_GRACE = 5


def need_posternd():
    if not os.access(posternd_bin(), os.X_OK):
        pytest.fail(f"{posternd_bin()} is not built")


# --- helpers -----------------------------------------------------------------

def build_message(rng, tag, size, rcpts):
    """A message of about size bytes (CRLF lines; some start with a dot,
    to exercise dot-stuffing), every line naming the message, so that a
    truncated or mixed file cannot pass for another message."""
    mid = f"{tag}.{rng.getrandbits(48):012x}@example.test"
    head = (f"From: <{USER}>\r\nTo: {', '.join(f'<{r}>' for r in rcpts)}"
            f"\r\nSubject: {tag}\r\nMessage-ID: <{mid}>\r\n\r\n").encode()
    lines, n, i = [], len(head), 0
    pad = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz ") for _ in range(48))
    while n < size:
        line = f"{'.' if i % 17 == 0 else ''}{mid} {i:07d} {pad}\r\n"
        lines.append(line)
        n += len(line)
        i += 1
    return mid, head + "".join(lines).encode()


def message_id(data):
    m = MID.search(data)
    return m.group(1).decode() if m else None


def smtp_session(port):
    """An smtplib session on the plain listener, logged in with AUTH
    PLAIN (initial response), every socket operation bounded."""
    s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example.test",
                     timeout=IO_TIMEOUT)
    try:
        s.ehlo()
        s.user, s.password = USER, PASSWORD
        code, _ = s.auth("PLAIN", s.auth_plain, initial_response_ok=True)
        assert code == 235, code
    except BaseException:
        s.close()
        raise
    return s


def all_maildir_files(p, rcpts):
    """{(rcpt, "new"|"cur"|"tmp"): [file names]} for every recipient."""
    out = {}
    for r in rcpts:
        for sub in ("new", "cur", "tmp"):
            d = os.path.join(p.maildir(r), sub)
            out[(r, sub)] = sorted(os.listdir(d)) if os.path.isdir(d) else []
    return out


def check_maildirs(p, rcpts, sent, acked, why, known=None):
    """Every file in a new/ or cur/ is one sent message, whole and
    byte-identical, addressed to that recipient, at most once; every
    acknowledged message is in every one of its recipients' new/; nothing
    in any Maildir's tmp/ (delivery never uses it).  known (a dict kept
    by the caller across calls) lets files already checked be checked by
    their size only (a file in new/ is never rewritten).  Returns the
    number of files checked."""
    seen = set()
    checked = 0
    for (r, sub), names in all_maildir_files(p, rcpts).items():
        if sub == "tmp":
            assert names == [], f"{why}: files in {r}'s tmp/: {names}"
            continue
        for n in names:
            path = os.path.join(p.maildir(r), sub, n)
            if known is not None and path in known:
                mid, size = known[path]
                assert os.stat(path).st_size == size, f"{why}: {path} changed"
            else:
                data = open(path, "rb").read()
                body = strip_received(data)
                mid = message_id(body)
                assert mid in sent, \
                    f"{why}: {r}/{sub}/{n} ({len(data)} bytes) is no " \
                    f"message sent (Message-ID {mid!r})"
                want, want_rcpts = sent[mid]
                assert body == want, \
                    f"{why}: {r}/{sub}/{n} differs from message {mid}: " \
                    f"got {len(body)} bytes, want {len(want)}"
                assert r in want_rcpts, f"{why}: {mid} delivered to {r}"
                m = re.search(r",S=(\d+)", n)
                assert m and int(m.group(1)) == len(data), \
                    f"{why}: {n}: S= does not match {len(data)} bytes"
                if known is not None:
                    known[path] = (mid, len(data))
            assert (mid, r) not in seen, f"{why}: {mid} twice in {r}"
            seen.add((mid, r))
            checked += 1
    if known is not None:
        gone = [k for k in known if not os.path.exists(k)]
        assert gone == [], f"{why}: delivered files vanished: {gone[:5]}"
    for mid in acked:
        for r in sent[mid][1]:
            assert (mid, r) in seen, \
                f"{why}: {mid} was acknowledged (250) but is not in " \
                f"{r}'s new/"
    return checked


class Load:
    """THREADS clients submitting distinct messages until stop is set.

    sent: Message-ID -> (message, recipients) for every message whose
    DATA was started; acked: the Message-IDs whose final "." got 250;
    errors: (time.monotonic(), repr) of every exception."""

    def __init__(self, p, rcpts, seed, sent, acked):
        self.p, self.rcpts, self.seed = p, rcpts, seed
        self.sent, self.acked = sent, acked
        self.errors = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(t,),
                                         daemon=True)
                        for t in range(THREADS)]

    def start(self):
        for t in self.threads:
            t.start()

    def join(self, timeout=IO_TIMEOUT * 3):
        self.stop.set()
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.1, deadline - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"client threads still running: {alive}"

    def run(self, tid):
        rng = random.Random(f"{self.seed}/{tid}")
        k = 0
        while not self.stop.is_set():
            try:
                s = smtp_session(self.p.ports["plain"])
            except (OSError, smtplib.SMTPException, AssertionError) as e:
                self.error(e)
                time.sleep(0.02)
                continue
            try:
                for _ in range(rng.randint(1, 4)):
                    if self.stop.is_set():
                        break
                    # 1 KB to 1 MB, log-uniform: most small, some large.
                    size = int(1024 * 2 ** rng.uniform(0, 10))
                    rcpts = rng.sample(self.rcpts, rng.choice((1, 1, 2, 3)))
                    mid, msg = build_message(
                        rng, f"crash-{self.seed}-{tid}-{k}", size, rcpts)
                    k += 1
                    with self.lock:
                        self.sent[mid] = (msg, rcpts)
                    s.sendmail(USER, rcpts, msg)
                    with self.lock:
                        self.acked.add(mid)
            except (OSError, smtplib.SMTPException) as e:
                self.error(e)
            finally:
                try:
                    s.quit()
                except (OSError, smtplib.SMTPException):
                    pass
                s.close()

    def error(self, e):
        with self.lock:
            self.errors.append((time.monotonic(), repr(e)))


def send_one(p, rcpt, tag):
    """One message through a fresh session; returns (mid, message)."""
    mid, msg = build_message(random.Random(tag), tag, 2048, [rcpt])
    s = smtp_session(p.ports["plain"])
    try:
        assert s.sendmail(USER, [rcpt], msg) == {}
    finally:
        s.quit()
    return mid, msg


# --- 1. SIGKILL under load ---------------------------------------------------

def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path):
    """KILLS rounds: THREADS clients submit distinct messages (1 KB-1 MB,
    1-3 recipients); posternd is killed with SIGKILL after a random delay
    (seeded), the Maildirs checked, posternd restarted on the same
    directories and made to deliver again.  At the end the spool's
    leftovers are aged past the clean-up age and a restart removes them.
    """
    need_posternd()
    rng = random.Random(SEED)
    p = Posternd(tmp_path, extra_global="grace_period = 5\n")
    rcpts = [unique_rcpt(f"crash{i}") for i in range(4)]
    sent, acked = {}, set()
    leftovers = set()
    known = {}
    stats = []
    p.start()
    try:
        for it in range(KILLS):
            why = f"seed {SEED}, kill {it + 1}/{KILLS}"
            load = Load(p, rcpts, f"{SEED}-{it}", sent, acked)
            n_sent, n_acked = len(sent), len(acked)
            delay = rng.uniform(0.3, 3.0)
            load.start()
            time.sleep(delay)
            t_kill = time.monotonic()
            p.proc.send_signal(signal.SIGKILL)
            p.proc.wait(IO_TIMEOUT)
            p.logf.close()
            load.join()
            early = [e for t, e in load.errors if t < t_kill]
            assert early == [], f"{why}: errors before the kill: {early[:5]}"

            # Nothing acknowledged lost, nothing partial or unknown.
            checked = check_maildirs(p, rcpts, sent, acked, why, known)
            left = set(p.spool_files())
            new_left = left - leftovers
            delivered = {mid for mid, _ in known.values()}
            stats.append((round(delay, 2), len(sent) - n_sent,
                          len(acked) - n_acked, checked,
                          len(delivered - acked), len(new_left)))

            # Restart on the same directories.  Nothing is left with
            # O_TMPFILE; named leftovers are unlocked now (their process
            # is dead), and server_run() removes those older than
            # SPOOL_GRACE, the others at a later clean-up.  Nothing new
            # appears.
            p.start()
            assert set(p.spool_files()) <= left, why
            # The leftovers are no messages: nothing in new/ changed.
            assert check_maildirs(p, rcpts, sent, acked, why,
                                  known) == checked
            # posternd serves again.
            mid, msg = send_one(p, rcpts[0], f"after-kill-{SEED}-{it}")
            sent[mid] = (msg, [rcpts[0]])
            acked.add(mid)
            check_maildirs(p, rcpts, sent, acked, why + ", after restart",
                           known)
            assert wait_until(lambda: set(p.spool_files()) <= left), why
            leftovers = set(p.spool_files())

        # Left-over work files older than the grace period go at start-up.
        old = time.time() - SPOOL_GRACE - 60
        for n in leftovers:
            os.utime(os.path.join(p.spool, "tmp", n), (old, old))
        assert p.stop() == 0
        p.start()
        if leftovers:
            assert p.wait_event("spool_cleaned", files=str(len(leftovers))), \
                p.log()[-2000:]
        assert p.spool_files() == []
        total = check_maildirs(p, rcpts, sent, acked, "final")
        print(f"\ncrash test seed {SEED}: (delay s, started, acked, files "
              f"checked, delivered unacknowledged so far, new leftovers) "
              f"per kill: {stats}; "
              f"{len(acked)} acknowledged of {len(sent)} started, "
              f"{total} files checked at the end, "
              f"{len(leftovers)} leftovers removed after ageing")
        assert sum(s[2] for s in stats) > 0, "no message was acknowledged"
    finally:
        p.kill()


# --- 1b. The order of the system calls (what SIGKILL cannot show) ----------

def strace_events(path):
    """[(syscall, args, result)] of every traced call in completion order
    (a call split by another thread's is placed where it completed)."""
    pending, out = {}, []
    rx = re.compile(r"^(\d+)\s+(.*)$")
    for line in open(path, encoding="utf-8", errors="replace"):
        m = rx.match(line.rstrip("\n"))
        if not m:
            continue
        pid, text = m.groups()
        if text.endswith("<unfinished ...>"):
            pending[pid] = text[:-len("<unfinished ...>")].rstrip()
            continue
        r = re.match(r"^<\.\.\. \w+ resumed>(.*)$", text)
        if r:
            text = pending.pop(pid, "") + r.group(1)
        c = re.match(r"^(\w+)\((.*)\)\s+=\s+(-?\d+).*$", text)
        if c:
            out.append((c.group(1), c.group(2), int(c.group(3))))
    return out


@pytest.mark.parametrize("named", [False, True], ids=["unnamed", "named"])
def test_250_only_after_data_and_links_are_fsynced(tmp_path, named):
    """Under strace: for each message, every write to the spool file
    comes before its fsync, that fsync before the first link into a
    new/, each link before the fsync of its new/ (and each directory
    delivery created is fsync'd, with its parent, before the link), and
    all of it before the 250 is written to the client.  A SIGKILL test
    cannot see fsync: this is what makes the 250 survive a power cut.
    Both kinds of spool file: unnamed (O_TMPFILE, linked through
    /proc/self/fd/N; strace shows it as "SPOOL/tmp/#INODE (deleted)") and
    named (SPOOL/tmp/QID, POSTERN_MAILDIR_NO_TMPFILE=1)."""
    need_posternd()
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed: tools/deps.sh test")
    trace = tmp_path / "strace.log"
    p = Posternd(tmp_path, extra_global="grace_period = 5\n",
                 env={"POSTERN_MAILDIR_NO_TMPFILE": "1"} if named else {})
    start_wrapped(p, prefix=["strace", "-f", "-qq", "-y", "-s", "100",
                             "-e", "trace=openat,write,writev,fsync,"
                             "fdatasync,link,linkat,unlink,mkdir,mkdirat",
                             "-o", str(trace)], timeout=30)
    a, b = unique_rcpt("order-a"), unique_rcpt("order-b")
    try:
        replies = [raw_send(p, a, sized("order-1", 200000)),
                   raw_send_many(p, [a, b], sized("order-2", 3000))]
        qids = [lines[0].rsplit(" ", 1)[1] for _, lines in replies]
        assert all(QUEUED.match(lines[0]) for _, lines in replies), replies
    finally:
        # SIGTERM to posternd itself: strace would detach and leave it.
        kids = open(f"/proc/{p.proc.pid}/task/{p.proc.pid}/children").read()
        for pid in kids.split():
            os.kill(int(pid), signal.SIGTERM)
        rc = p.wait_exit(timeout=30)
    assert rc == 0, p.log()[-2000:]
    ev = strace_events(trace)
    tmpdir = os.path.join(p.spool, "tmp")
    prev_reply = -1
    for qid, rcpts in zip(qids, [[a], [a, b]]):

        def idx(pred, what):
            found = [i for i, e in enumerate(ev) if pred(*e) and
                     i > prev_reply]
            assert found, f"{qid}: no {what} in {trace}"
            return found

        reply = idx(lambda c, args, r: c in ("write", "writev") and
                    f"queued as {qid}" in args, "250 to the client")[0]
        if named:
            spool = f"<{os.path.join(tmpdir, qid)}>"
            # linkat(AT_FDCWD, "SPOOL/tmp/QID", N<NEW>, "...", 0): into
            # new/ by its descriptor (no symbolic link is followed).
            links = idx(lambda c, args, r: c == "linkat" and
                        re.match(r'AT_FDCWD(<[^>]*>)?, "' +
                                 re.escape(f"{tmpdir}/{qid}") + '"', args)
                        and
                        r == 0, "linkat")
            writes = idx(lambda c, args, r: c in ("write", "writev") and
                         spool in args.split(",")[0], "write to spool")
            fsyncs = idx(lambda c, args, r: c in ("fsync", "fdatasync")
                         and spool in args and r == 0, "fsync of spool")
        else:
            # linkat(AT_FDCWD, "/proc/self/fd/N", M<NEW>, "...",
            # AT_SYMLINK_FOLLOW): the file is descriptor N, shown by
            # strace as N<SPOOL/tmp/#INODE>(deleted).
            links = [i for i in idx(lambda c, args, r: c == "linkat" and
                                    '"/proc/self/fd/' in args and r == 0,
                                    "linkat") if i < reply]
            fds = {re.search(r'"/proc/self/fd/(\d+)"', ev[i][1]).group(1)
                   for i in links}
            assert len(fds) == 1, (qid, fds)
            fd = fds.pop()
            unnamed = re.compile(re.escape(f"{fd}<{tmpdir}/#") +
                                 r"\d+>\(deleted\),")
            writes = idx(lambda c, args, r: c in ("write", "writev") and
                         unnamed.match(args),
                         "write to the unnamed spool file")
            fsyncs = idx(lambda c, args, r: c in ("fsync", "fdatasync")
                         and args.startswith(f"{fd}<") and r == 0,
                         "fsync of spool")
        writes = [i for i in writes if i < reply]
        fsyncs = [i for i in fsyncs if i < reply]
        assert len(links) == len(rcpts), (qid, len(links))
        assert max(writes) < fsyncs[0] < links[0], (qid, writes, fsyncs,
                                                     links)
        print(f"\n{qid}: {len(writes)} writes, fsyncs {fsyncs}, links "
              f"{links}, 250 at {reply} of {len(ev)} calls")
        for li, r in zip(links, rcpts):
            new = os.path.join(p.maildir(r), "new")
            assert f"<{new}>, " in ev[li][1], (qid, ev[li])
            dsync = [i for i in idx(lambda c, args, rr: c == "fsync" and
                                    f"<{new}>" in args and rr == 0,
                                    f"fsync of {new}") if i > li]
            assert dsync and dsync[0] < reply, (qid, r, li, dsync, reply)
        # The link count, then the 250; a named spool file goes.
        assert [i for i in fsyncs if links[-1] < i < reply], (qid, fsyncs)
        assert max(links) < reply
        if named:
            idx(lambda c, args, r: c == "unlink" and
                args.startswith(f'"{tmpdir}/{qid}"') and r == 0,
                "unlink of spool")
        prev_reply = reply
    # Every directory delivery made (Maildirs, their cur/ new/ tmp/, the
    # domain directory): fsync'd, and its parent, before the next link.
    # mkdirat(N<PARENT>, "name", 0700): each relative to its parent.
    made = []
    for i, (c, args, r) in enumerate(ev):
        m = re.match(r'\d+<([^>]*)>, "([^"]*)"', args)
        if c == "mkdirat" and r == 0 and m and \
                m.group(1).startswith(p.maildir_root):
            made.append((i, os.path.join(m.group(1), m.group(2))))
    assert len(made) == 9, made       # example.test, a + 3, b + 3
    for i, d in made:
        nxt = min(j for j, e in enumerate(ev)
                  if j > i and e[0] in ("link", "linkat"))
        for want in (d, os.path.dirname(d)):
            assert [j for j, e in enumerate(ev)
                    if i < j < nxt and e[0] == "fsync" and
                    f"<{want}>" in e[1] and e[2] == 0], \
                f"{d} made, but no fsync of {want} before the link"


def raw_send_many(p, rcpts, msg):
    """raw_send() to several recipients."""
    r = p.raw("plain", timeout=IO_TIMEOUT)
    try:
        assert r.reply()[0] == 220
        assert r.ehlo()[0] == 250
        assert r.login() == OK_235
        assert r.cmd(f"MAIL FROM:<{USER}>")[0] == 250
        for rc in rcpts:
            assert r.cmd(f"RCPT TO:<{rc}>")[0] == 250
        assert r.cmd("DATA")[0] == 354
        r.send(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        reply = r.reply()
        assert r.cmd("QUIT")[0] == 221
        return reply
    finally:
        r.close()


# --- 2. Disk full ------------------------------------------------------------

def raw_send(p, rcpt, msg):
    """Submit msg (CRLF lines, ending in CRLF) over SMTPRaw, dot-stuffed
    (RFC 5321 §4.5.2); returns the reply to the final dot."""
    r = p.raw("plain", timeout=IO_TIMEOUT)
    try:
        assert r.reply()[0] == 220
        assert r.ehlo()[0] == 250
        assert r.login() == OK_235
        assert r.cmd(f"MAIL FROM:<{USER}>")[0] == 250
        assert r.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
        assert r.cmd("DATA")[0] == 354
        r.send(msg.replace(b"\r\n.", b"\r\n..") + b".\r\n")
        reply = r.reply()
        assert r.cmd("QUIT")[0] == 221
        return reply
    finally:
        r.close()


def sized(tag, size):
    return build_message(random.Random(tag), tag, size,
                         ["x@example.test"])[1]


def nothing_partial(p, rcpt, want):
    """rcpt's Maildir holds exactly the messages want (in any order) in
    new/, nothing in cur/ or tmp/; the spool is empty."""
    got = sorted(strip_received(m) for m in p.messages(rcpt))
    assert got == sorted(want), \
        f"got {len(got)} messages ({[len(m) for m in got]} bytes), " \
        f"want {len(want)} ({[len(m) for m in want]})"
    assert [f for f in p.maildir_files(rcpt)
            if not f.startswith("new/")] == []
    assert wait_until(lambda: p.spool_files() == []), p.spool_files()


def mount_tmpfs(path, size):
    """Mount a tmpfs of size at path; False when not permitted."""
    os.makedirs(path)
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    q = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700",
                        "tmpfs", path], capture_output=True, timeout=30)
    return q.returncode == 0


def test_disk_full_tmpfs(tmp_path):
    """A 2 MiB tmpfs holds the Maildirs and the spool: what does not fit
    gets 451 4.3.0 and leaves nothing; what fits goes through; freeing
    space lets the refused message through, without a restart."""
    need_posternd()
    fs = str(tmp_path / "fs")
    if not mount_tmpfs(fs, "2m"):
        pytest.skip("cannot mount a tmpfs (not root?): "
                    "test_disk_full_rlimit covers the write failure")
    try:
        p = Posternd(tmp_path, extra_global="grace_period = 5\n")
        p.maildir_root = os.path.join(fs, "mail")
        p.spool = os.path.join(fs, "spool")
        p.start()
        try:
            rcpt = unique_rcpt("diskfull")
            small = sized("small-1", 1024)
            assert QUEUED.match(raw_send(p, rcpt, small)[1][0])
            # Bigger than the filesystem: refused, nothing left.
            assert raw_send(p, rcpt, sized("huge", 3 << 20)) == NOT_STORED
            ev = p.wait_event("delivery_failed")
            assert ev and "No space left on device" in ev[-1]["error"], ev
            nothing_partial(p, rcpt, [small])
            # Fill it: 300 KB messages until one does not fit.
            kept, refused = [small], None
            for i in range(12):
                msg = sized(f"fill-{i}", 300 * 1024)
                code, lines = raw_send(p, rcpt, msg)
                if code == 451:
                    assert (code, lines) == NOT_STORED
                    refused = msg
                    break
                assert QUEUED.match(lines[0]), lines
                kept.append(msg)
            assert refused is not None and len(kept) >= 3, len(kept)
            print(f"\n2 MiB tmpfs: {len(kept) - 1} messages of 300 KiB "
                  f"accepted, the next one refused with 451 4.3.0")
            nothing_partial(p, rcpt, kept)
            # A small message still fits.
            small2 = sized("small-2", 1024)
            assert QUEUED.match(raw_send(p, rcpt, small2)[1][0])
            kept.append(small2)
            nothing_partial(p, rcpt, kept)
            # Space returns (the user deleted mail): accepted again.
            new = os.path.join(p.maildir(rcpt), "new")
            for n in os.listdir(new):
                os.unlink(os.path.join(new, n))
            assert QUEUED.match(raw_send(p, rcpt, refused)[1][0])
            nothing_partial(p, rcpt, [refused])
            assert p.proc.poll() is None
            assert p.stop() == 0
        finally:
            p.kill()
    finally:
        subprocess.run(["umount", fs], timeout=30)


def test_disk_full_rlimit(tmp_path):
    """The other way to make writes fail (no mount needed): RLIMIT_FSIZE
    of 256 KiB on posternd.  A bigger message gets 451 4.3.0 (EFBIG;
    posternd ignores SIGXFSZ), nothing partial; smaller ones go through
    before and after."""
    need_posternd()
    limit = 256 * 1024

    def limit_fsize():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    p = Posternd(tmp_path, extra_global="grace_period = 5\n")
    start_wrapped(p, preexec_fn=limit_fsize)
    try:
        rcpt = unique_rcpt("fsize")
        small = sized("small-1", 1024)
        assert QUEUED.match(raw_send(p, rcpt, small)[1][0])
        assert raw_send(p, rcpt, sized("big", 1 << 20)) == NOT_STORED
        ev = p.wait_event("delivery_failed")
        assert ev and "File too large" in ev[-1]["error"], ev
        nothing_partial(p, rcpt, [small])
        # Just under the limit (the Received header counts too) fits.
        near = sized("near", limit - 4096)
        assert QUEUED.match(raw_send(p, rcpt, near)[1][0])
        nothing_partial(p, rcpt, [small, near])
        assert p.proc.poll() is None
        assert p.stop() == 0
    finally:
        p.kill()


# --- 3. The user file vanishing at reload ------------------------------------

def login_reply(p, user=USER, password=PASSWORD, timeout=IO_TIMEOUT):
    r = p.raw("plain", timeout=timeout)
    try:
        assert r.reply()[0] == 220
        assert r.ehlo()[0] == 250
        return r.login(user, password)
    finally:
        r.close()


def reload_failed(p):
    n = len(p.events("reload_failed"))
    p.hup()
    ev = p.wait_event("reload_failed", count=n + 1)
    assert ev, p.log()[-2000:]
    return ev[-1]


def break_deleted(path):
    os.unlink(path)


def break_directory(path):
    os.unlink(path)
    os.mkdir(path)


def break_dangling_symlink(path):
    os.unlink(path)
    os.symlink(path + ".gone", path)


def break_chmod(path):
    os.chmod(path, 0)


def break_fifo(path):
    os.unlink(path)
    os.mkfifo(path, 0o600)


BREAKS = [
    ("deleted", break_deleted, r": cannot open: No such file or directory$"),
    ("directory", break_directory, r": not a regular file$"),
    ("dangling-symlink", break_dangling_symlink,
     r": cannot open: No such file or directory$"),
    ("fifo", break_fifo, r": not a regular file$"),
]
# Root reads a mode-000 file, so the case exists only for other users;
# the directory, symlink and FIFO cases stand in for it as root.
if os.geteuid() != 0:
    BREAKS.append(("chmod-000", break_chmod,
                   r": cannot open: Permission denied$"))


@pytest.mark.parametrize("name, breaker, error", BREAKS)
def test_user_file_unusable_at_reload(tmp_path, name, breaker, error):
    """SIGHUP with the user file gone or unreadable: reload_failed naming
    the file, the previous users keep working (new sessions and one open
    across the reload), and a repaired file reloads."""
    need_posternd()
    users = {USER: (PASSWORD, "SCRAM-SHA-256", ""),
             "ann@example.test": ("annannannann", "SHA512-CRYPT", "")}
    p = Posternd(tmp_path, users=users,
                 extra_global="grace_period = 5\n").start()
    good = open(p.userfile, "rb").read()
    old = p.raw("plain")
    try:
        assert old.reply()[0] == 220 and old.ehlo()[0] == 250
        breaker(p.userfile)
        p.hup()
        # posternd must answer at once, whatever the reload is doing.
        t0 = time.monotonic()
        try:
            got = login_reply(p, timeout=5)
        except OSError as e:
            got = repr(e)
        assert got == OK_235, \
            f"{name}: login after SIGHUP got {got!r} " \
            f"after {time.monotonic() - t0:.1f} s"
        ev = p.wait_event("reload_failed")
        assert ev, p.log()[-2000:]
        assert ev[-1]["error"].startswith(p.userfile), ev[-1]
        assert re.search(error, ev[-1]["error"]), ev[-1]
        assert ev[-1]["action"] == "keeping the previous configuration"
        assert p.events("reloaded") == []
        for user, pw in users.items():
            assert login_reply(p, user, pw[0]) == OK_235
        assert login_reply(p, user="ann@example.test",
                           password="wrongwrong")[0] == 535
        assert old.login() == OK_235
        # A second SIGHUP while still broken: the same.
        assert reload_failed(p)["error"].startswith(p.userfile)
        assert login_reply(p) == OK_235
        # Repaired: reloads.
        if os.path.isdir(p.userfile) and not os.path.islink(p.userfile):
            os.rmdir(p.userfile)
        elif name == "chmod-000":
            os.chmod(p.userfile, 0o600)
        elif os.path.lexists(p.userfile):
            os.unlink(p.userfile)
        with open(p.userfile, "wb") as f:
            f.write(good)
        p.hup()
        assert p.wait_event("reloaded"), p.log()[-2000:]
        assert login_reply(p) == OK_235
        assert old.cmd("QUIT")[0] == 221
        assert p.stop() == 0
    finally:
        old.close()
        if stat_is_fifo(p.userfile):
            release_fifo(p.userfile)
        p.kill()


def stat_is_fifo(path):
    try:
        return (os.lstat(path).st_mode & 0o170000) == 0o010000
    except OSError:
        return False


def release_fifo(path):
    """Open a FIFO for writing and close it, so that a reader blocked in
    open(2) gets EOF (fails with ENXIO when nobody reads: fine)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass
