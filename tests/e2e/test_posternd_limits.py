"""Time limits and the failure delay (issue 6, "Abuse"): slow clients are
cut off by timeouts instead of holding a connection forever, and a failed
AUTH is answered auth_failure_delay after the client's last byte.

The limits are set to 1-2 s here; what is asserted is the reply and the
log line, and that a client which keeps trickling bytes is cut off while
one that sends whole commands in time is not.  The only time asserted is
a lower bound: a delayed 535 never comes before its delay.
"""
import os
import select
import time

import pytest

from posternd_util import (Posternd, SMTPRaw, b64, posternd_bin,
                           read_all_replies, unique_rcpt, wait_until)

USER = "tim@example.test"
PASSWORD = "tanstaaftanstaaf"
USERS = {USER: (PASSWORD, "SCRAM-SHA-256", "")}
PLAIN = {"plain": "tls = none\nauth = required\nauth_before_tls = all\n"}
TIMEOUT_421 = (421, ["421 4.4.2 mail.example.test Error: timeout exceeded"])
OK_235 = (235, ["235 2.7.0 Authentication successful"])
BAD_535 = (535, ["535 5.7.8 Authentication credentials invalid"])


def start(tmp, extra):
    if not os.access(posternd_bin(), os.X_OK):
        pytest.fail(f"{posternd_bin()} is not built")
    return Posternd(tmp, extra_global="grace_period = 2\n" + extra,
                    listeners=PLAIN, users=USERS).start()


def greeted(p):
    r = SMTPRaw(p.ports["plain"], timeout=20)
    assert r.reply()[0] == 220
    assert r.ehlo()[0] == 250
    return r


def readable(r):
    """The server sent something (a reply, or the end)."""
    return bool(select.select([r.sock], [], [], 0)[0])


def trickle(r, data, interval, limit):
    """Send data one byte every interval seconds until the server
    closes; returns the bytes sent (at most limit seconds' worth)."""
    sent = 0
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            r.send(data[sent % len(data):sent % len(data) + 1])
        except (BrokenPipeError, ConnectionResetError):
            break
        sent += 1
        time.sleep(interval)
        if readable(r):
            break
    return sent


def test_trickled_command_is_cut_off(tmp_path):
    """One byte of a command every 0.3 s never makes a whole line: the
    command deadline (timeout_command) is not restarted by partial
    input, so the session ends with 421 4.4.2 (Postfix's
    smtpd_per_record_deadline does the same)."""
    p = start(tmp_path, "timeout_command = 2\n")
    try:
        r = greeted(p)
        # NOOP without its CRLF, over and over: the line never ends.
        sent = trickle(r, b"NOOPNOOPNOOP", 0.3, 20)
        assert read_all_replies(r) == [TIMEOUT_421]
        assert sent < 40, sent          # cut off, not left to run 20 s
        assert p.wait_event("timeout", state="idle")
        assert p.wait_event("disconnect", reason="timeout")
    finally:
        assert p.stop() == 0


def test_whole_commands_in_time_are_not_cut_off(tmp_path):
    """A slow but live client (a whole NOOP each second, the command
    deadline 2 s) keeps its session: every reply is 250."""
    p = start(tmp_path, "timeout_command = 2\n")
    try:
        r = greeted(p)
        for _ in range(5):
            time.sleep(1)
            assert r.cmd("NOOP") == (250, ["250 2.0.0 Ok"])
        assert r.cmd("QUIT")[0] == 221
        assert p.events("timeout") == []
    finally:
        assert p.stop() == 0


def test_session_time_limit(tmp_path):
    """session_time_limit ends even a busy session: 421 4.4.2, logged
    with the limit."""
    p = start(tmp_path, "session_time_limit = 2\n")
    try:
        r = greeted(p)
        replies = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                replies.append(r.cmd("NOOP"))
            except (EOFError, ConnectionResetError, BrokenPipeError):
                break
            time.sleep(0.2)
        assert replies[-1] == TIMEOUT_421, replies[-3:]
        assert all(x == (250, ["250 2.0.0 Ok"]) for x in replies[:-1])
        assert p.wait_event("timeout", limit="session time limit")
        assert p.wait_event("disconnect", reason="session time limit")
    finally:
        assert p.stop() == 0


def test_data_time_limit(tmp_path):
    """A message that trickles in (a line every 0.2 s, each within
    timeout_data) is cut off by data_time_limit: 421 4.4.2, nothing
    delivered, nothing left in the spool."""
    p = start(tmp_path, "data_time_limit = 2\ntimeout_data = 60\n")
    try:
        rcpt = unique_rcpt("slow-data")
        r = greeted(p)
        assert r.cmd("AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}")) == OK_235
        assert r.cmd(f"MAIL FROM:<{USER}>")[0] == 250
        assert r.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
        assert r.cmd("DATA")[0] == 354
        deadline = time.monotonic() + 20
        closed = False
        while time.monotonic() < deadline and not closed:
            try:
                r.send(b"a line of a slow message\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.2)
            closed = readable(r)
        assert read_all_replies(r) == [TIMEOUT_421]
        assert p.wait_event("timeout", state="data", limit="data time limit")
        assert wait_until(lambda: p.spool_files() == [])
        assert p.messages(rcpt) == []
        assert p.maildir_files(rcpt) == []
    finally:
        assert p.stop() == 0


def test_failure_delay(tmp_path):
    """auth_failure_delay = 400ms: a wrong password and an unknown user
    get their 535 no sooner than 0.4 s after the AUTH line; the session
    goes on (the next AUTH succeeds)."""
    p = start(tmp_path, "auth_failure_delay = 400ms\n")
    try:
        r = greeted(p)
        for user in (USER, "nobody@example.test"):
            t0 = time.monotonic()
            got = r.cmd("AUTH PLAIN " + b64(f"\0{user}\0wrongwrong"))
            took = time.monotonic() - t0
            assert got == BAD_535, (user, got)
            assert took >= 0.4, (user, took)
        assert r.cmd("AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}")) == OK_235
        assert r.cmd("QUIT")[0] == 221
    finally:
        assert p.stop() == 0
