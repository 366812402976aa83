"""Storing a message and checking a password on the thread pool, when the
disk is slow (issue "Hardening, round 2", item 7).

strace injects delays into fsync(2) (-e inject=fsync:delay_enter=US), the
hung or slow disk the issue describes:

- timeout_final bounds storing: the final dot gets 451 4.3.0 once it
  passes, the session goes on, and what the commit writes after that is
  removed (it used to wait for the disk however long, holding the
  connection and a pool thread);
- it bounds a password check too: with the pool busy on a hung commit
  (UV_THREADPOOL_SIZE=1), AUTH gets 454 4.7.0 instead of waiting;
- SIGTERM while a message is being stored: its 250 comes first, then the
  421 (it used to be a 421 for a message that was in fact delivered: the
  client sends it again, a duplicate);
- message data is written to the spool by the thread pool, never by the
  event loop's thread (strace -f: the thread of every write to the spool
  file is not the thread that writes the replies).
"""
import os
import re
import shutil
import signal
import threading
import time

import pytest

from posternd_util import (Posternd, b64, posternd_bin, start_wrapped,
                           unique_rcpt, wait_until)

USER = "tim@example.test"
LISTENERS = {"plain": "tls = none\nauth = required\nauth_before_tls = all\n"}


def need():
    if not os.access(posternd_bin(), os.X_OK):
        pytest.fail(f"{posternd_bin()} is not built")
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed: tools/deps.sh test")


def start_traced(tmp, extra, strace_args, env=None, rcpts=()):
    """posternd under strace -f; the secret file and the recipients'
    Maildirs are made beforehand, so the only fsyncs are the commits'."""
    if "grace_period" not in extra:
        extra = "grace_period = 5\n" + extra
    env = dict(env or {})
    if "ASAN_OPTIONS" in os.environ:
        # LeakSanitizer does not work under ptrace (the asan-e2e suite).
        env["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"].replace(
            "detect_leaks=1", "detect_leaks=0")
    p = Posternd(tmp, extra_global=extra, listeners=LISTENERS, env=env)
    p.prepare()
    secret = os.path.join(p.spool, "scram.secret")
    with open(os.open(secret, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write("ab" * 32 + "\n")
    for r in rcpts:
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(p.maildir(r), sub), mode=0o700)
    return start_wrapped(p, prefix=["strace", "-f", "-qq"] + strace_args,
                         timeout=60)


def posternd_pid(p):
    """The pid of posternd itself (strace's child)."""
    kids = open(f"/proc/{p.proc.pid}/task/{p.proc.pid}/children").read()
    return int(kids.split()[0])


def stop_traced(p):
    os.kill(posternd_pid(p), signal.SIGTERM)
    return p.wait_exit(timeout=60)


def message(tag, size=2000):
    body = "".join(f"{tag} line {i:06d} " + "x" * 60 + "\r\n"
                   for i in range(size // 80 + 1))
    return (f"From: <{USER}>\r\nSubject: {tag}\r\n\r\n{body}").encode()


def send_until_dot(p, rcpt, msg, timeout=30):
    """An authenticated session up to the final dot; returns it."""
    r = p.raw("plain", timeout=timeout)
    assert r.reply()[0] == 220
    assert r.ehlo()[0] == 250
    assert r.login()[0] == 235
    assert r.cmd(f"MAIL FROM:<{USER}>")[0] == 250
    assert r.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(msg + b".\r\n")
    return r


def new_files(p, rcpt):
    d = os.path.join(p.maildir(rcpt), "new")
    return os.listdir(d) if os.path.isdir(d) else []


def test_timeout_final_store(tmp_path):
    need()
    rcpt = unique_rcpt("final")
    # Each fsync 0.8 s: the commit's three (data, new/, the file again)
    # take 2.4 s; timeout_final is 1 s.
    p = start_traced(tmp_path, "timeout_final = 1\n",
                     ["-o", "/dev/null", "-e", "trace=fsync",
                      "-e", "inject=fsync:delay_enter=800000"],
                     rcpts=[rcpt])
    try:
        r = send_until_dot(p, rcpt, message("final"))
        code, lines = r.reply()
        assert (code, lines) == (451, [lines[0]]) and \
            lines[0].startswith("451 4.3.0 "), lines
        assert p.wait_event("timeout_final"), p.log()[-2000:]
        # The session goes on.
        assert r.cmd("NOOP") == (250, ["250 2.0.0 Ok"])
        # The commit ends on its own, and undoes what it wrote.
        ev = p.wait_event("delivery_given_up", timeout=20)
        assert ev and ev[0]["why"] == "timeout_final", p.log()[-2000:]
        assert new_files(p, rcpt) == []
        assert not p.events("message_accepted")
        assert r.cmd("QUIT")[0] == 221
        r.close()
        assert wait_until(lambda: p.spool_files() == [])
    finally:
        rc = stop_traced(p)
    assert rc == 0, p.log()[-2000:]


def test_timeout_final_store_relayed(tmp_path):
    """A commit that also queues for the relay, given up by timeout_final:
    the queue's copy goes with the Maildir's (all or nothing), so the
    relay never sends a message whose final dot got 451."""
    need()
    far = "far-" + unique_rcpt("final").split("@")[0] + "@example.org"
    # fsyncs of 0.8 s: the data (done before the 1 s), the queue
    # directory (given up meanwhile), the envelope, new/, the file.
    trace = tmp_path / "strace.log"
    p = start_traced(tmp_path, "timeout_final = 1\n"
                     "local_domains = example.test\nrelay = up\n"
                     "[relay up]\nhost = 127.0.0.1:1\n",
                     ["-y", "-o", str(trace),
                      "-e", "trace=fsync,linkat,unlinkat",
                      "-e", "inject=fsync:delay_enter=800000"],
                     rcpts=[USER])
    queue = os.path.join(p.spool, "queue")
    try:
        r = p.raw("plain", timeout=30)
        assert r.reply()[0] == 220
        assert r.ehlo()[0] == 250
        assert r.login()[0] == 235
        assert r.cmd(f"MAIL FROM:<{USER}>")[0] == 250
        assert r.cmd(f"RCPT TO:<{USER}>")[0] == 250
        assert r.cmd(f"RCPT TO:<{far}>")[0] == 250
        assert r.cmd("DATA")[0] == 354
        r.send(message("relayed") + b".\r\n")
        code, lines = r.reply()
        assert code == 451 and lines[0].startswith("451 4.3.0 "), lines
        ev = p.wait_event("delivery_given_up", timeout=30)
        assert ev and ev[0]["why"] == "timeout_final", p.log()[-2000:]
        assert new_files(p, USER) == []
        assert os.listdir(queue) == [], os.listdir(queue)
        assert not p.events("message_accepted")
        assert r.cmd("QUIT")[0] == 221
        r.close()
        assert wait_until(lambda: p.spool_files() == [])
        for name in ("relay_deferred", "relay_failed", "relay_unusable",
                     "queue_load_failed"):
            assert not p.events(name), p.log()[-2000:]
    finally:
        rc = stop_traced(p)
    assert rc == 0, p.log()[-2000:]
    # The queue had its copy (linked, then the envelope) and lost both.
    made, gone = set(), set()
    for line in open(trace, encoding="utf-8", errors="replace"):
        m = re.search(r"(linkat|unlinkat)\(.*?\d+<" + re.escape(queue) +
                      r'>, "([^"]+)".*= 0$', line.rstrip())
        if m:
            (made if m.group(1) == "linkat" else gone).add(m.group(2))
    assert made and made <= gone, (made, gone)


def test_timeout_final_verify(tmp_path):
    """One pool thread, hung on a commit: a password check waits behind
    it no longer than timeout_final, and says 454 4.7.0."""
    need()
    rcpt = unique_rcpt("busy")
    p = start_traced(tmp_path, "timeout_final = 1\n",
                     ["-o", "/dev/null", "-e", "trace=fsync",
                      "-e", "inject=fsync:delay_enter=3000000"],
                     env={"UV_THREADPOOL_SIZE": "1"}, rcpts=[rcpt])
    try:
        a = send_until_dot(p, rcpt, message("busy"))
        assert a.reply()[0] == 451
        b = p.raw("plain", timeout=30)
        assert b.reply()[0] == 220
        assert b.ehlo()[0] == 250
        code, lines = b.login()
        assert (code, lines) == (454, ["454 4.7.0 Temporary authentication "
                                       "failure"]), lines
        events = p.wait_event("timeout_final", count=2)
        assert [e["state"] for e in events] == ["wait-stored",
                                                "wait-verify"], events
        a.close()
        b.close()
    finally:
        rc = stop_traced(p)
    assert rc == 0, p.log()[-2000:]


def test_sigterm_while_storing(tmp_path):
    """grace_period = 0: SIGTERM ends every session at once, but the one
    whose message is being stored gets its 250 before the 421."""
    need()
    rcpt = unique_rcpt("term")
    p = start_traced(tmp_path, "grace_period = 0\n",
                     ["-o", "/dev/null", "-e", "trace=fsync",
                      "-e", "inject=fsync:delay_enter=700000"],
                     rcpts=[rcpt])
    r = send_until_dot(p, rcpt, message("term"))
    time.sleep(0.3)                       # the commit is under way
    os.kill(posternd_pid(p), signal.SIGTERM)
    replies = []
    while True:
        try:
            replies.append(r.reply())
        except (EOFError, ConnectionResetError):
            break
    r.close()
    rc = p.wait_exit(timeout=60)
    assert rc == 0, p.log()[-2000:]
    assert len(replies) == 2, replies
    assert replies[0][0] == 250 and \
        re.match(r"^250 2\.0\.0 Ok: queued as ", replies[0][1][0]), replies
    assert replies[1] == (421, ["421 4.3.2 mail.example.test Service "
                                "shutting down"]), replies
    assert len(new_files(p, rcpt)) == 1


def test_data_written_off_the_loop(tmp_path):
    """Every write to the spool file comes from a pool thread: not the
    thread that writes the session's replies (the loop; workers = 1)."""
    need()
    rcpt = unique_rcpt("offloop")
    trace = tmp_path / "strace.log"
    p = start_traced(tmp_path, "workers = 1\n",
                     ["-y", "-o", str(trace), "-e", "trace=write,writev"],
                     env={"POSTERN_MAILDIR_NO_TMPFILE": "1"}, rcpts=[rcpt])
    try:
        r = send_until_dot(p, rcpt, message("offloop", 1 << 20))
        code, lines = r.reply()
        assert code == 250, lines
        qid = lines[0].rsplit(" ", 1)[1]
        assert r.cmd("QUIT")[0] == 221
        r.close()
    finally:
        rc = stop_traced(p)
    assert rc == 0, p.log()[-2000:]
    spool = os.path.join(p.spool, "tmp", qid)
    loop, writers = set(), {}
    for line in open(trace, encoding="utf-8", errors="replace"):
        m = re.match(r"^(\d+)\s+(write|writev)\((\d+)<([^>]*)>", line)
        if not m:
            continue
        tid, target = m.group(1), m.group(4)
        if target.startswith("TCP:") or target.startswith("socket:"):
            if "queued as" in line or "220 " in line:
                loop.add(tid)
        if target == spool:
            writers[tid] = writers.get(tid, 0) + 1
    assert len(loop) == 1, loop
    assert writers, f"no write to {spool} in {trace}"
    assert not loop & set(writers), (loop, writers)
    # 1 MiB in pieces of 64 to 130 KiB (what gathers while one is
    # written).
    assert sum(writers.values()) >= 8, writers
