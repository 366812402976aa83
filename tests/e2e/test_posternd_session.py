"""posternd as a whole (issue 4, "Tests"): the STARTTLS injection case,
pipelining, delivery that fails or is cut off (nothing partial is ever
visible), reload on SIGHUP, graceful stop on SIGTERM, and posternd -t.
"""
import base64
import hashlib
import hmac
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

import pytest

from flow_util import send_while_reading
from posternd_util import (ALL_SCHEMES, ROOT, Posternd, SMTPRaw, b64,
                           postern_bin, posternd_bin, strip_received,
                           unique_rcpt, wait_until)

USER = "tim@example.test"
PASSWORD = "tanstaaftanstaaf"
OK_235 = (235, ["235 2.7.0 Authentication successful"])
BAD_535 = (535, ["535 5.7.8 Authentication credentials invalid"])
MAIL_OK = (250, ["250 2.1.0 Ok"])
RCPT_OK = (250, ["250 2.1.5 Ok"])
DATA_GO = (354, ["354 End data with <CR><LF>.<CR><LF>"])
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as [0-9A-F]+$")


def start(tmp, extra="", **kw):
    if not os.access(posternd_bin(), os.X_OK):
        pytest.fail(f"{posternd_bin()} is not built")
    if "grace_period" not in extra:
        # Short: a failed test may leave a session open.
        extra = "grace_period = 5\n" + extra
    return Posternd(tmp, extra_global=extra, **kw).start()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    p = start(tmp_path_factory.mktemp("session"))
    yield p
    rc = p.stop()
    assert rc == 0, f"posternd exit {rc}:\n{p.log()[-3000:]}"


def greeted(srv, listener="plain"):
    r = srv.raw(listener)
    assert r.reply() == (220, ["220 mail.example.test ESMTP ready"])
    assert r.ehlo()[0] == 250
    return r


def authed(srv, listener="plain"):
    r = greeted(srv, listener)
    assert r.login() == OK_235
    return r


def quit_ok(r):
    assert r.cmd("QUIT") == (221, ["221 2.0.0 Bye"])
    assert r.closed()
    r.close()


def queued(reply):
    code, lines = reply
    assert code == 250 and QUEUED.match(lines[0]), lines
    return lines[0].rsplit(" ", 1)[1]


def body(tag):
    return (f"From: <{USER}>\r\nSubject: {tag}\r\n\r\n"
            f"Line one of {tag}.\r\n.dotted\r\n\r\nlast\r\n").encode()


def stuffed(data):
    return re.sub(rb"(?m)^\.", b"..", data)


# --- STARTTLS (RFC 3207 §4.2, CVE-2011-0411) ---------------------------------

@pytest.mark.parametrize("injected", [
    "RSET\r\n",
    "HELP\r\n",
    "EHLO evil.example\r\nAUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}") + "\r\n",
    "MAIL FROM:<tim@example.test>\r\nRCPT TO:<x@example.test>\r\n",
])
@pytest.mark.parametrize("listener", ["starttls", "legacy"])
def test_starttls_injection(srv, listener, injected):
    """Commands sent in clear in the same packet as STARTTLS are never
    acted on: the first reply under TLS is the one to our EHLO."""
    r = greeted(srv, listener)
    r.send("STARTTLS\r\n" + injected)
    assert r.reply() == (220, ["220 2.0.0 Ready to start TLS"])
    # Nothing else was sent in clear after the 220.
    assert r.starttls(srv.ssl_context()) == b""
    code, lines = r.cmd("EHLO client.example.test")
    assert code == 250 and lines[0] == "250-mail.example.test", lines
    assert len(lines) > 1, lines
    # Not authenticated by an injected AUTH: the session was reset.
    assert r.cmd(f"MAIL FROM:<{USER}>") == \
        (530, ["530 5.7.0 Authentication required"])
    assert r.cmd("NOOP") == (250, ["250 2.0.0 Ok"])
    quit_ok(r)


def test_starttls_resets_session(srv):
    """After TLS the session is back before EHLO (RFC 3207 §4.2)."""
    r = greeted(srv, "legacy")
    code, _ = r.cmd("AUTH CRAM-MD5")
    assert code == 334
    assert r.cmd("*")[0] == 501
    assert r.cmd("STARTTLS")[0] == 220
    r.starttls(srv.ssl_context())
    # EHLO first (the one before TLS is forgotten).
    code, lines = r.cmd("AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}"))
    assert code == 503 and lines[0].startswith("503 5.5.1 "), lines
    assert r.ehlo()[0] == 250
    assert r.login() == OK_235
    quit_ok(r)


def test_starttls_forgets_auth(srv):
    """auth_before_tls = challenge: AUTH CRAM-MD5 in clear, then STARTTLS
    (not inside a transaction); under TLS the authentication is gone."""
    r = greeted(srv, "legacy")
    code, lines = r.cmd("AUTH CRAM-MD5")
    assert code == 334
    chal = base64.b64decode(lines[0][4:])
    digest = hmac.new(PASSWORD.encode(), chal, hashlib.md5).hexdigest()
    assert r.cmd(b64(f"{USER} {digest}")) == OK_235
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd("STARTTLS") == \
        (503, ["503 5.5.1 Error: MAIL transaction in progress"])
    assert r.cmd("RSET") == (250, ["250 2.0.0 Ok"])
    assert r.cmd("STARTTLS x") == (501, ["501 5.5.4 Syntax: STARTTLS"])
    assert r.cmd("STARTTLS") == (220, ["220 2.0.0 Ready to start TLS"])
    assert r.starttls(srv.ssl_context()) == b""
    assert r.ehlo()[0] == 250
    assert r.cmd(f"MAIL FROM:<{USER}>") == \
        (530, ["530 5.7.0 Authentication required"])
    assert r.login() == OK_235
    quit_ok(r)


# --- Pipelining (RFC 2920) -------------------------------------------------------

@pytest.mark.parametrize("listener", ["plain", "implicit"])
def test_pipelined_session(srv, listener):
    """EHLO, then AUTH PLAIN with an initial response (allowed inside a
    group, RFC 4954 §4) with MAIL, two RCPTs and DATA in one write; the
    message, the final dot and QUIT in another."""
    a, b = unique_rcpt("pipe-a"), unique_rcpt("pipe-b")
    msg = body("pipelined")
    r = greeted(srv, listener)
    r.send("AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}") + "\r\n"
           f"MAIL FROM:<{USER}>\r\nRCPT TO:<{a}>\r\nRCPT TO:<{b}>\r\n"
           "DATA\r\n")
    assert r.reply() == OK_235
    assert r.reply() == MAIL_OK
    assert r.reply() == RCPT_OK
    assert r.reply() == RCPT_OK
    assert r.reply() == DATA_GO
    r.send(stuffed(msg) + b".\r\nQUIT\r\n")
    queued(r.reply())
    assert r.reply() == (221, ["221 2.0.0 Bye"])
    assert r.closed()
    r.close()
    for rcpt in (a, b):
        got = srv.messages(rcpt)
        assert len(got) == 1 and strip_received(got[0]) == msg


@pytest.mark.parametrize("listener", ["plain", "implicit"])
def test_pipelined_burst(srv, listener):
    """Many transactions in one write, far more than posternd buffers:
    flow control must hold, every reply comes in order, every message
    lands once."""
    pipelined_burst(srv, listener)


def pipelined_burst(srv, listener, n=60):
    """test_pipelined_burst's session (test_posternd_session_burst.py
    repeats it)."""
    rcpts = [unique_rcpt(f"burst{i}") for i in range(n)]
    filler = ("x" * 70 + "\r\n") * 40
    r = authed(srv, listener)
    out = b""
    for i, rcpt in enumerate(rcpts):
        out += (f"MAIL FROM:<{USER}>\r\nRCPT TO:<{rcpt}>\r\nDATA\r\n"
                f"Subject: burst {i}\r\n\r\n{filler}.\r\n").encode()
    out += b"QUIT\r\n"
    assert len(out) > 128 * 1024
    # One thread writes and reads (flow_util: two threads on one TLS
    # socket is what made this test flaky).
    send_while_reading(r, out)
    for i in range(n):
        assert r.reply() == MAIL_OK, i
        assert r.reply() == RCPT_OK, i
        assert r.reply() == DATA_GO, i
        queued(r.reply())
    assert r.reply() == (221, ["221 2.0.0 Bye"])
    assert r.closed()
    r.close()
    for i, rcpt in enumerate(rcpts):
        got = srv.messages(rcpt)
        assert len(got) == 1
        assert strip_received(got[0]) == \
            f"Subject: burst {i}\r\n\r\n{filler}".encode()


@pytest.mark.parametrize("listener", ["plain", "implicit"])
def test_one_byte_at_a_time(srv, listener):
    """Commands and data split at every byte (CRLF and the final dot
    across reads): the same replies, the same message."""
    rcpt = unique_rcpt("bytewise")
    msg = body("bytewise")
    r = greeted(srv, listener)
    r.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def dribble(data):
        for i in range(len(data)):
            r.send(data[i:i + 1])
    dribble(("AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}") + "\r\n").encode())
    assert r.reply() == OK_235
    dribble(f"MAIL FROM:<{USER}>\r\n".encode())
    assert r.reply() == MAIL_OK
    dribble(f"RCPT TO:<{rcpt}>\r\n".encode())
    assert r.reply() == RCPT_OK
    dribble(b"DATA\r\n")
    assert r.reply() == DATA_GO
    dribble(stuffed(msg) + b".\r\n")
    queued(r.reply())
    quit_ok(r)
    assert [strip_received(m) for m in srv.messages(rcpt)] == [msg]


def test_rset_and_several_messages(srv):
    a, b = unique_rcpt("multi-a"), unique_rcpt("multi-b")
    r = authed(srv)
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{a}>") == RCPT_OK
    assert r.cmd("RSET") == (250, ["250 2.0.0 Ok"])
    ids = []
    for rcpt in (b, b, a):
        assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
        assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
        # The same recipient twice gets one copy.
        assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
        assert r.cmd("DATA") == DATA_GO
        r.send(stuffed(body(rcpt)) + b".\r\n")
        ids.append(queued(r.reply()))
    quit_ok(r)
    assert len(set(ids)) == 3
    assert [strip_received(m) for m in srv.messages(b)] == [body(b)] * 2
    assert [strip_received(m) for m in srv.messages(a)] == [body(a)]
    # The Received header names the queue id.
    assert f" id {ids[2]};".encode() in srv.messages(a)[0]


# --- Durability ---------------------------------------------------------------

def half_message(p, rcpt, listener="plain", subject="cut", lines=500):
    """An authenticated session inside DATA with part of a message sent
    (no final dot): the SMTPRaw."""
    r = authed(p, listener)
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    r.send(f"Subject: {subject}\r\n\r\n".encode() +
           b"half a message\r\n" * lines)
    return r


def test_disconnect_mid_data(srv):
    """A client that goes away inside DATA leaves nothing in new/ (or
    anywhere in the Maildir) and nothing in the spool.  The spool file is
    unnamed (O_TMPFILE): it is never in the spool directory, only open in
    posternd, until the disconnect closes it."""
    for listener in ("plain", "implicit"):
        rcpt = unique_rcpt("cut-" + listener)
        before = len(srv.events("disconnect"))
        r = half_message(srv, rcpt, listener)
        assert wait_until(lambda: srv.open_spool_files() != [])
        assert all(n.endswith(" (deleted)")
                   for n in srv.open_spool_files()), srv.open_spool_files()
        assert srv.spool_files() == []
        r.close()
        assert srv.wait_event("disconnect", count=before + 1)
        # The spool file goes just after the disconnect line.
        assert wait_until(lambda: srv.open_spool_files() == [])
        assert srv.spool_files() == []
        assert srv.messages(rcpt) == []
        assert srv.maildir_files(rcpt) == []


def test_disconnect_mid_data_named_spool(tmp_path):
    """The same with named spool files (POSTERN_MAILDIR_NO_TMPFILE=1, as
    on a filesystem without O_TMPFILE): the file is in SPOOL/tmp while
    the message comes, and gone after the disconnect."""
    p = start(tmp_path, env={"POSTERN_MAILDIR_NO_TMPFILE": "1"})
    try:
        rcpt = unique_rcpt("cut-named")
        before = len(p.events("disconnect"))
        r = half_message(p, rcpt)
        assert wait_until(lambda: p.spool_files() != [])
        assert p.open_spool_files() == p.spool_files()
        r.close()
        assert p.wait_event("disconnect", count=before + 1)
        assert wait_until(lambda: p.spool_files() == [])
        assert p.open_spool_files() == []
        assert p.messages(rcpt) == []
        assert p.maildir_files(rcpt) == []
    finally:
        assert p.stop() == 0


def test_disconnect_after_final_dot(srv):
    """Gone before reading the reply to the final dot: the message is
    stored whole or not at all, and the spool is clean."""
    rcpt = unique_rcpt("dot-then-gone")
    msg = body("gone")
    r = authed(srv)
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    before = len(srv.events("disconnect"))
    r.send(stuffed(msg) + b".\r\n")
    r.close()
    assert srv.wait_event("disconnect", count=before + 1)
    # The store may still be running: it ends with the spool file gone.
    assert wait_until(lambda: srv.spool_files() == [])
    got = srv.messages(rcpt)
    assert got == [] or [strip_received(m) for m in got] == [msg]
    assert [f for f in srv.maildir_files(rcpt) if f.startswith("tmp")] == []
    assert srv.spool_files() == []


def test_kill_mid_data_then_restart(tmp_path):
    """posternd killed (SIGKILL) inside DATA: nothing is visible in any
    Maildir, and nothing is left in the spool (the spool file had no
    name)."""
    p = start(tmp_path)
    rcpt = unique_rcpt("killed")
    r = half_message(p, rcpt, subject="killed", lines=1000)
    assert wait_until(lambda: p.open_spool_files() != [])
    p.kill()
    r.close()
    assert p.messages(rcpt) == []
    assert p.maildir_files(rcpt) == []
    assert p.spool_files() == []
    p.start()
    try:
        assert p.spool_files() == []
        assert p.events("spool_cleaned") == []
        assert p.messages(rcpt) == []
    finally:
        assert p.stop() == 0


def test_kill_mid_data_then_restart_named_spool(tmp_path):
    """The same with named spool files: the killed message's file is
    left, unlocked; at start-up posternd removes leftovers nobody holds
    locked once MAILDIR_SPOOL_GRACE (5 s) old (spool_cleaned); a newer
    one, which could be a file another posternd has just created, stays
    for a later clean-up."""
    env = {"POSTERN_MAILDIR_NO_TMPFILE": "1"}
    p = start(tmp_path, env=env)
    rcpt = unique_rcpt("killed")
    r = half_message(p, rcpt, subject="killed", lines=1000)
    assert wait_until(lambda: p.spool_files() != [])
    p.kill()
    r.close()
    assert p.messages(rcpt) == []
    assert p.maildir_files(rcpt) == []
    left = p.spool_files()
    assert len(left) == 1
    old = os.path.join(p.spool, "tmp", left[0])
    os.utime(old, (time.time() - 60, time.time() - 60))
    recent = os.path.join(p.spool, "tmp", "RECENTFILE")
    open(recent, "w").close()
    p.start()
    try:
        assert p.wait_event("spool_cleaned", files="1")
        assert p.spool_files() == ["RECENTFILE"]
        assert p.messages(rcpt) == []
    finally:
        os.unlink(recent)
        assert p.stop() == 0


def test_451_delivery_failure_all_or_nothing(srv):
    """A recipient whose Maildir cannot be made: 451 4.3.0, and no
    recipient of that message keeps a copy (one reply answers for all,
    RFC 5321 §4.1.1.4)."""
    ok, blocked = unique_rcpt("fine"), unique_rcpt("blocked")
    os.makedirs(os.path.dirname(srv.maildir(blocked)), exist_ok=True)
    with open(srv.maildir(blocked), "w") as f:
        f.write("not a directory\n")
    r = authed(srv)
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{ok}>") == RCPT_OK
    assert r.cmd(f"RCPT TO:<{blocked}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    r.send(stuffed(body("fail")) + b".\r\n")
    code, lines = r.reply()
    assert code == 451 and lines[0].startswith("451 4.3.0 "), lines
    # The session goes on.
    assert r.cmd("NOOP") == (250, ["250 2.0.0 Ok"])
    quit_ok(r)
    assert srv.messages(ok) == []
    assert [f for f in srv.maildir_files(ok) if not f.startswith("tmp")] == []
    assert srv.spool_files() == []
    assert srv.events("delivery_failed")


def test_message_log_line(srv):
    rcpt = unique_rcpt("logged")
    r = authed(srv)
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    msg = body("log")
    r.send(stuffed(msg) + b".\r\n")
    qid = queued(r.reply())
    quit_ok(r)
    ev = srv.wait_event("message_accepted", qid=qid)
    assert ev, srv.log()[-2000:]
    assert ev[0]["user"] == USER
    assert int(ev[0]["size"]) >= len(msg)
    assert ev[0]["rcpts"] == "1"
    sid = ev[0]["sid"]
    assert srv.wait_event("disconnect", sid=sid), \
        "no disconnect line after QUIT"


# --- Reload (SIGHUP) -----------------------------------------------------------

def add_user(p, name, password, schemes="SHA512-CRYPT,CRAM-MD5"):
    q = subprocess.run([postern_bin(), "user", "add", "-f", p.userfile,
                        name, "-s", schemes, "-r", p.hostname],
                       input=password + "\n", capture_output=True, text=True,
                       timeout=30)
    assert q.returncode == 0, q.stderr


def reload(p, event="reloaded"):
    n = len(p.events(event))
    p.hup()
    ev = p.wait_event(event, count=n + 1)
    assert ev, p.log()[-2000:]
    return ev[-1]


def test_reload(tmp_path):
    p = start(tmp_path)
    try:
        # A session open across every reload below.
        old = greeted(p)
        new_user, new_pw = "neu@example.test", "neuneuneuneu"
        r = greeted(p)
        assert r.login(new_user, new_pw) == BAD_535
        quit_ok(r)

        # 1. A new user in the user file can log in after SIGHUP.
        add_user(p, new_user, new_pw)
        assert reload(p)["users"] == "2"
        r = greeted(p)
        assert r.login(new_user, new_pw) == OK_235
        quit_ok(r)

        # 2. A broken user file is refused; the old one stays.
        good = open(p.userfile).read()
        with open(p.userfile, "a") as f:
            f.write("this line is broken\n")
        ev = reload(p, "reload_failed")
        assert ev["error"].startswith(f"{p.userfile}:3: "), ev
        for user, pw in ((USER, PASSWORD), (new_user, new_pw)):
            r = greeted(p)
            assert r.login(user, pw) == OK_235
            quit_ok(r)

        # 3. A broken configuration is refused; the old one stays.
        conf = open(p.conf).read()
        with open(p.conf, "a") as f:
            f.write("no_such_key = 1\n")
        ev = reload(p, "reload_failed")
        assert re.search(r"posternd\.conf:\d+: unknown key", ev["error"]), ev
        with open(p.conf, "w") as f:
            f.write(conf)
        with open(p.userfile, "w") as f:
            f.write(good)
        reload(p)

        # 4. The session opened before all this still works, and
        # authenticates against the current user file.
        assert old.login(new_user, new_pw) == OK_235
        rcpt = unique_rcpt("across-reload")
        assert old.cmd(f"MAIL FROM:<{new_user}>") == MAIL_OK
        assert old.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
        assert old.cmd("DATA") == DATA_GO
        old.send(stuffed(body("reload")) + b".\r\n")
        queued(old.reply())
        quit_ok(old)
        assert [strip_received(m) for m in p.messages(rcpt)] == \
            [body("reload")]
    finally:
        assert p.stop() == 0


def test_reload_revokes_password(tmp_path):
    """A password changed in the user file stops working at once, also on
    connections that were open before the reload."""
    p = start(tmp_path)
    try:
        before = greeted(p)
        signed_in = greeted(p)
        assert signed_in.login() == OK_235
        q = subprocess.run([postern_bin(), "user", "passwd", "-f",
                            p.userfile, USER, "-s", ALL_SCHEMES, "-r",
                            p.hostname], input="n3wpassw0rd!\n",
                           capture_output=True, text=True, timeout=30)
        assert q.returncode == 0, q.stderr
        reload(p)
        assert before.login() == BAD_535
        assert before.login(USER, "n3wpassw0rd!") == OK_235
        quit_ok(before)
        # An established session is not dropped.
        rcpt = unique_rcpt("still-in")
        assert signed_in.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
        assert signed_in.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
        quit_ok(signed_in)
    finally:
        assert p.stop() == 0


def test_reload_certificate(tmp_path):
    """SIGHUP re-reads tls_cert/tls_key: new connections get the new
    certificate, a session under the old one goes on."""
    p = start(tmp_path)
    try:
        old_ctx = p.ssl_context()
        r = authed(p, "implicit")
        fresh = tmp_path / "new"
        subprocess.run([os.path.join(ROOT, "tools", "gen-cert.sh"), "-t",
                        "ec", p.hostname, str(fresh)], check=True,
                       capture_output=True, timeout=60)
        os.replace(fresh / "key.pem", p.key)
        os.replace(fresh / "cert.pem", p.cert)
        reload(p)
        new_ctx = p.ssl_context()
        n = SMTPRaw.implicit(p.ports["implicit"], new_ctx)
        assert n.reply()[0] == 220
        quit_ok(n)
        with pytest.raises(ssl.SSLCertVerificationError):
            SMTPRaw.implicit(p.ports["implicit"], old_ctx)
        assert r.cmd("NOOP") == (250, ["250 2.0.0 Ok"])
        quit_ok(r)
    finally:
        assert p.stop() == 0


# --- Graceful stop (SIGTERM) ---------------------------------------------------

def test_sigterm_lets_a_transaction_finish(tmp_path):
    p = start(tmp_path, "grace_period = 60\n")
    rcpt = unique_rcpt("graceful")
    msg = body("graceful")
    busy = authed(p)
    assert busy.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert busy.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
    assert busy.cmd("DATA") == DATA_GO
    busy.send(stuffed(msg)[:20])
    idle = greeted(p)
    fresh = p.raw("plain")
    assert fresh.reply()[0] == 220
    tls_idle = greeted(p, "implicit")
    p.proc.send_signal(signal.SIGTERM)
    shutdown = (421, ["421 4.3.2 mail.example.test Service shutting down"])
    for r in (idle, fresh, tls_idle):
        assert r.reply() == shutdown
        assert r.closed()
        r.close()
    # No new connections.
    assert p.wait_event("stopping")
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", p.ports["plain"]),
                                     timeout=2).close()
        except ConnectionRefusedError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("still accepting connections after SIGTERM")
    # The transaction in progress finishes; then the session, idle
    # again, is closed at once rather than at the end of the grace period.
    busy.send(stuffed(msg)[20:] + b".\r\n")
    queued(busy.reply())
    assert busy.reply() == shutdown
    assert busy.closed()
    assert p.wait_exit() == 0
    assert [strip_received(m) for m in p.messages(rcpt)] == [msg]
    assert p.events("stopped")


def test_sigterm_grace_period_expires(tmp_path):
    p = start(tmp_path, "grace_period = 1\n")
    rcpt = unique_rcpt("too-slow")
    r = authed(p)
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    r.send(b"Subject: slow\r\n\r\nnot finished\r\n")
    p.proc.send_signal(signal.SIGTERM)
    assert r.reply() == \
        (421, ["421 4.3.2 mail.example.test Service shutting down"])
    assert r.closed()
    r.close()
    assert p.wait_exit() == 0
    assert p.messages(rcpt) == []
    assert p.maildir_files(rcpt) == []
    assert p.spool_files() == []


def test_sigint_stops_too(tmp_path):
    p = start(tmp_path)
    p.proc.send_signal(signal.SIGINT)
    assert p.wait_exit() == 0
    assert p.events("stopping", signal="INT")


# --- posternd -t ---------------------------------------------------------------

def check(conf):
    return subprocess.run([posternd_bin(), "-c", str(conf), "-t"],
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def made(tmp_path):
    """A configured but not started posternd (files written)."""
    return Posternd(tmp_path).prepare()


def test_check_good(made):
    t = check(made.conf)
    assert t.returncode == 0, t.stderr
    assert t.stdout == (f"posternd: {made.conf}: configuration OK "
                        f"(4 listeners, 1 user)\n")


def line_of(path, needle):
    for i, line in enumerate(open(path).read().split("\n"), 1):
        if needle in line:
            return i
    raise AssertionError(f"{needle!r} not in {path}")


@pytest.mark.parametrize("edit, where, message", [
    (lambda t: t.replace("hostname = ", "hostnme = "), "hostnme",
     "unknown key"),
    (lambda t: t.replace("tls = starttls", "tls = sometimes", 1),
     "tls = sometimes", ""),
    (lambda t: t.replace("auth = required", "auth = maybe", 1),
     "auth = maybe", ""),
    (lambda t: t + "max_message_size = lots\n", "max_message_size", ""),
    (lambda t: t.replace("[listener plain]", "[listener plain", 1),
     "[listener plain", ""),
    (lambda t: t.replace("address = 127.0.0.1:", "address = 127.0.0.1:x", 1),
     "127.0.0.1:x", ""),
    (lambda t: t.replace("tls = none", "tls = none\nmechanisms = PLAIN NOPE",
                         1), "NOPE", ""),
])
def test_check_bad_config_line(made, edit, where, message):
    text = edit(open(made.conf).read())
    with open(made.conf, "w") as f:
        f.write(text)
    t = check(made.conf)
    assert t.returncode == 78, (t.stdout, t.stderr)
    n = line_of(made.conf, where)
    assert t.stderr.startswith(f"posternd: {made.conf}:{n}: "), t.stderr
    assert message in t.stderr
    assert t.stdout == ""


def test_check_bad_user_file(made):
    with open(made.userfile, "a") as f:
        f.write("bob@example.test:{NOPE}abc\n")
    t = check(made.conf)
    assert t.returncode == 78
    assert t.stderr == (f"posternd: {made.userfile}:2: user "
                        f"'bob@example.test': bad password field: unknown "
                        f"password scheme\n"), t.stderr


@pytest.mark.parametrize("what", ["cert", "key", "users", "conf"])
def test_check_missing_file(made, what):
    path = {"cert": made.cert, "key": made.key, "users": made.userfile,
            "conf": made.conf}[what]
    os.rename(path, path + ".gone")
    t = check(made.conf)
    assert t.returncode == 78, t
    assert path in t.stderr, t.stderr


def test_usage_errors(made):
    for argv in ([], ["-t"], ["-c", made.conf, "extra"], ["--frob"]):
        t = subprocess.run([posternd_bin(), *argv], capture_output=True,
                           text=True, timeout=30)
        assert t.returncode == 64, (argv, t)
        assert "usage: posternd -c FILE [-t]\n" in t.stderr, t.stderr


def test_concurrent_deliveries_share_directory_fsyncs(tmp_path):
    """20 clients at once deliver to one recipient: every message is
    stored whole, and at the stop posternd accounts for every link into
    new/: each one either ran an fsync of the directory or was covered by
    another commit's (group commit, deliver_maildir.c), so
    dir_syncs + dir_syncs_shared == 20, with at least one fsync run."""
    p = start(tmp_path)
    rcpt = unique_rcpt("group")
    n = 20
    msgs = [body(f"group-{i}") for i in range(n)]
    errors = []
    gate = threading.Barrier(n)

    def send(msg):
        try:
            r = authed(p)
            assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
            assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
            assert r.cmd("DATA") == DATA_GO
            gate.wait(timeout=30)
            r.send(stuffed(msg) + b".\r\n")
            queued(r.reply())
            r.close()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=send, args=(m,)) for m in msgs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert sorted(strip_received(m) for m in p.messages(rcpt)) == \
        sorted(msgs)
    assert p.stop() == 0
    [ev] = p.events("stopped")
    syncs, shared = int(ev["dir_syncs"]), int(ev["dir_syncs_shared"])
    print(f"\n{n} links: {syncs} fsyncs of new/, {shared} shared")
    assert syncs >= 1 and syncs + shared == n, ev
