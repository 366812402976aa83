"""The relay (DESIGN.md "Routing, relay and the queue") with a second
posternd as the smarthost: routing and recipient checks at RCPT, the
durable queue, delivery with AUTH over STARTTLS, retries, bounces, the
queue's lifetime, and `postern queue`.

The device side (D) has local_domains = example.test and relays the rest
to the upstream (U), a posternd with STARTTLS and PLAIN that knows the
relay's login and delivers example.org to its own Maildirs.
"""
import email
import email.utils
import os
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from posternd_util import (Posternd, postern_bin, posternd_bin, start_wrapped,
                           wait_until)

DEV_USER = "alice@example.test"
DEV_PW = "wonderland"
UP_USER = "relay@example.org"
UP_PW = "up-secret-9"


def need_build():
    if not os.path.exists(posternd_bin()):
        pytest.fail(f"{posternd_bin()} is not built")


def upstream(tmp, local_domains="example.org"):
    """The smarthost: example.org users bob and carol; the relay's login."""
    users = {
        UP_USER: (UP_PW, "PLAIN", ""),
        "bob@example.org": ("x", "PLAIN", ""),
        "carol@example.org": ("x", "PLAIN", ""),
    }
    return Posternd(tmp, users=users, hostname="mx.example.org",
                    extra_global=("sender_check = off\n"
                                  f"local_domains = {local_domains}\n"),
                    listeners={"starttls": "tls = starttls\n"
                                           "auth = required\n"})


def device(tmp, up, extra="", relay_extra=""):
    pwfile = os.path.join(str(tmp), "up.pw")
    os.makedirs(str(tmp), exist_ok=True)
    with open(pwfile, "w") as f:
        f.write(UP_PW + "\n")
    up.prepare()  # its port and certificate
    sections = (f"[relay up]\nhost = 127.0.0.1:{up.ports['starttls']}\n"
                f"tls = starttls\ntls_cafile = {up.cert}\n"
                f"auth = password\nuser = {UP_USER}\n"
                f"password_file = {pwfile}\n{relay_extra}")
    return Posternd(tmp, users={DEV_USER: (DEV_PW, "PLAIN", "")},
                    extra_global=("local_domains = example.test\n"
                                  "relay = up\nretry_min = 1s\n"
                                  "retry_max = 2s\n" + extra),
                    listeners={"plain": "tls = none\nauth = optional\n"
                                        "auth_before_tls = all\n"},
                    extra_sections=sections)


def submit(d, rcpts, subject="relay test", login=True, msgid=None):
    msgid = msgid or f"<{time.time_ns()}@device.example.test>"
    msg = (f"From: <{DEV_USER}>\r\nTo: <{rcpts[0]}>\r\n"
           f"Subject: {subject}\r\nMessage-ID: {msgid}\r\n"
           "Date: Mon, 7 Dec 2026 06:00:00 +0000\r\n\r\n"
           "Scanned page 1.\r\n.dot line\r\n")
    with smtplib.SMTP("127.0.0.1", d.ports["plain"], timeout=30) as s:
        s.ehlo("scanner.example.test")
        if login:
            s.login(DEV_USER, DEV_PW)
        refused = s.sendmail(DEV_USER, rcpts, msg)
    return msgid, refused


def queue_cmd(d, *args):
    return subprocess.run([postern_bin(), "queue", "-c", d.conf] + list(args),
                          capture_output=True, text=True, timeout=30)


@pytest.fixture
def pair(tmp_path):
    need_build()
    up = upstream(tmp_path / "up")
    dev = device(tmp_path / "dev", up)
    up.start()
    dev.start()
    yield up, dev
    for p in (dev, up):
        rc = p.stop()
        assert rc == 0, p.log()[-3000:]


def test_relayed_and_local(pair):
    up, dev = pair
    msgid, refused = submit(dev, ["bob@example.org", DEV_USER])
    assert refused == {}
    # Local: Return-Path first (RFC 5321 §4.4), then our Received.
    local = dev.messages(DEV_USER)
    assert len(local) == 1
    assert local[0].startswith(b"Return-Path: <alice@example.test>\r\n"
                               b"Received: from scanner.example.test")
    assert wait_until(lambda: len(up.messages("bob@example.org")) == 1, 20)
    got = up.messages("bob@example.org")[0]
    m = email.message_from_bytes(got)
    assert m["Message-ID"] == msgid
    # Our Return-Path did not travel; the upstream wrote its own.
    assert got.count(b"Return-Path:") == 1
    assert got.startswith(b"Return-Path: <alice@example.test>\r\n")
    assert b"Received: from scanner.example.test" in got
    assert got.endswith(b"\r\nScanned page 1.\r\n.dot line\r\n")
    ev = up.events("auth_ok", user=UP_USER)
    assert ev and ev[0]["mech"] in ("PLAIN", "SCRAM-SHA-256")
    assert wait_until(lambda: dev.events("queue_done"), 10)
    assert os.listdir(os.path.join(dev.spool, "queue")) == []
    # Once: nothing more arrives.
    time.sleep(1.5)
    assert len(up.messages("bob@example.org")) == 1


def test_rcpt_checks(pair):
    up, dev = pair
    with smtplib.SMTP("127.0.0.1", dev.ports["plain"], timeout=30) as s:
        s.ehlo("scanner.example.test")
        # Unauthenticated: no relaying at all (never an open relay).
        assert s.mail(DEV_USER)[0] == 250
        code, text = s.rcpt("bob@example.org")
        assert (code, text[:5]) == (550, b"5.7.1")
        s.rset()
        s.login(DEV_USER, DEV_PW)
        assert s.mail(DEV_USER)[0] == 250
        code, text = s.rcpt("nobody@example.test")
        assert (code, text[:5]) == (550, b"5.1.1")
        assert s.rcpt(DEV_USER)[0] == 250
        assert s.rcpt("bob@example.org")[0] == 250


def test_no_relay_for_sender(tmp_path):
    """Relays configured but no default and no relay= for the user."""
    need_build()
    up = upstream(tmp_path / "up")
    dev = device(tmp_path / "dev", up)
    dev.extra_global = dev.extra_global.replace("relay = up\n", "")
    dev.start()
    try:
        with smtplib.SMTP("127.0.0.1", dev.ports["plain"], timeout=30) as s:
            s.login(DEV_USER, DEV_PW)
            s.mail(DEV_USER)
            code, text = s.rcpt("bob@example.org")
            assert (code, text[:5]) == (550, b"5.7.1")
    finally:
        assert dev.stop() == 0


def test_upstream_down_then_back(tmp_path):
    need_build()
    up = upstream(tmp_path / "up")
    dev = device(tmp_path / "dev", up)
    dev.start()
    try:
        msgid, refused = submit(dev, ["bob@example.org"])
        assert refused == {}
        assert dev.wait_event("relay_unusable", timeout=15)
        q = queue_cmd(dev, "list")
        assert q.returncode == 0, q.stderr
        line = q.stdout.strip().splitlines()[0]
        qid = line.split()[0]
        assert " deferred " in line or " queued " in line
        assert "<alice@example.test> -> bob@example.org" in line
        show = queue_cmd(dev, "show", qid)
        assert "rcpt: <bob@example.org> pending" in show.stdout
        up.start()
        assert queue_cmd(dev, "flush").returncode == 0
        assert wait_until(lambda: len(up.messages("bob@example.org")) == 1,
                          30)
        got = email.message_from_bytes(up.messages("bob@example.org")[0])
        assert got["Message-ID"] == msgid
        assert wait_until(lambda: "empty" in queue_cmd(dev, "list").stdout,
                          10)
    finally:
        assert dev.stop() == 0
        up.stop()


def test_one_recipient_refused_bounces(pair):
    up, dev = pair
    msgid, refused = submit(dev, ["bob@example.org", "nobody@example.org"])
    assert refused == {}
    assert wait_until(lambda: len(up.messages("bob@example.org")) == 1, 20)
    assert wait_until(lambda: len(dev.messages(DEV_USER)) == 1, 20)
    dsn = dev.messages(DEV_USER)[0]
    assert dsn.startswith(b"Return-Path: <>\r\n")
    m = email.message_from_bytes(dsn)
    assert m.get_content_type() == "multipart/report"
    assert m.get_param("report-type") == "delivery-status"
    assert m["From"] == "Mail Delivery System <MAILER-DAEMON@mail.example.test>"
    status = [p for p in m.walk()
              if p.get_content_type() == "message/delivery-status"][0]
    text = status.as_bytes()
    assert b"Reporting-MTA: dns; mail.example.test" in text
    assert b"Final-Recipient: rfc822; nobody@example.org" in text
    assert b"Action: failed" in text
    assert b"Status: 5.1.1" in text
    assert b"Remote-MTA: dns; 127.0.0.1" in text
    assert b"Diagnostic-Code: smtp; 550 5.1.1" in text
    assert b"bob@example.org" not in text
    headers = [p for p in m.walk()
               if p.get_content_type() == "text/rfc822-headers"][0]
    assert msgid.encode() in headers.as_bytes()
    assert wait_until(lambda: dev.events("queue_done"), 10)


def test_lifetime_bounces(tmp_path):
    need_build()
    up = upstream(tmp_path / "up")
    dev = device(tmp_path / "dev", up, extra="queue_lifetime = 3s\n")
    dev.start()
    try:
        submit(dev, ["bob@example.org"])
        assert wait_until(lambda: len(dev.messages(DEV_USER)) == 1, 30)
        m = email.message_from_bytes(dev.messages(DEV_USER)[0])
        status = [p for p in m.walk()
                  if p.get_content_type() == "message/delivery-status"][0]
        assert b"Status: 4.4.7" in status.as_bytes()
        assert dev.wait_event("queue_expired")
        assert wait_until(lambda: "empty" in queue_cmd(dev, "list").stdout,
                          10)
    finally:
        assert dev.stop() == 0


def test_queue_survives_restart_and_delete(tmp_path):
    need_build()
    up = upstream(tmp_path / "up")
    dev = device(tmp_path / "dev", up)
    dev.start()
    try:
        submit(dev, ["bob@example.org"])
        submit(dev, ["carol@example.org"])
        assert dev.stop() == 0
        # Stopped: list and delete work from the files.
        q = queue_cmd(dev, "list")
        assert q.returncode == 0
        lines = q.stdout.strip().splitlines()
        assert len(lines) == 2
        carol = [l for l in lines if "carol@example.org" in l][0].split()[0]
        d = queue_cmd(dev, "delete", carol)
        assert (d.returncode, d.stdout) == (0, "deleted\n")
        f = queue_cmd(dev, "flush")
        assert f.returncode == 69 and "not running" in f.stderr
        up.start()
        dev.start()
        assert wait_until(lambda: len(up.messages("bob@example.org")) == 1,
                          30)
        time.sleep(1)
        assert up.messages("carol@example.org") == []
    finally:
        dev.stop()
        up.stop()


def raw_submit(d, rcpt, message):
    with smtplib.SMTP("127.0.0.1", d.ports["plain"], timeout=30) as s:
        s.login(DEV_USER, DEV_PW)
        return s.sendmail(DEV_USER, [rcpt], message)


def test_missing_date_and_message_id_added(pair):
    """RFC 6409 §8: the relayed copy gets Date and Message-ID; the local
    copy is left as the device sent it."""
    up, dev = pair
    raw_submit(dev, "bob@example.org",
               b"From: <alice@example.test>\r\nSubject: bare\r\n\r\nhi\r\n")
    assert wait_until(lambda: len(up.messages("bob@example.org")) == 1, 20)
    got = up.messages("bob@example.org")[0]
    m = email.message_from_bytes(got)
    qid = dev.events("message_accepted")[0]["qid"]
    assert m["Message-ID"] == f"<{qid}@mail.example.test>"
    assert email.utils.parsedate_to_datetime(m["Date"]) is not None
    # Added at the end of the section, before the empty line.
    assert (b"Subject: bare\r\nDate: " in got and
            b"\r\nMessage-ID: <" + qid.encode() + b"@mail.example.test>"
            b"\r\n\r\nhi\r\n" in got)


@pytest.mark.parametrize("mode", ["envelope", "envelope+from"])
def test_rewrite_sender(tmp_path, mode):
    need_build()
    up = upstream(tmp_path / "up")
    dev = device(tmp_path / "dev", up,
                 relay_extra=f"rewrite_sender = {mode}\n")
    up.start()
    dev.start()
    try:
        raw_submit(dev, "bob@example.org",
                   b"From: Scanner 3 <scan3@device.local>\r\n"
                   b"Subject: s\r\nMessage-ID: <m1@x>\r\n"
                   b"Date: Mon, 7 Dec 2026 06:00:00 +0000\r\n\r\nbody\r\n")
        assert wait_until(lambda: len(up.messages("bob@example.org")) == 1,
                          20)
        got = up.messages("bob@example.org")[0]
        # The envelope sender is the relay's login either way.
        assert got.startswith(b"Return-Path: <relay@example.org>\r\n")
        m = email.message_from_bytes(got)
        if mode == "envelope":
            assert m["From"] == "Scanner 3 <scan3@device.local>"
            assert m["Reply-To"] is None
        else:
            assert m["From"] == "<relay@example.org>"
            assert m["Reply-To"] == "Scanner 3 <scan3@device.local>"
    finally:
        dev.stop()
        up.stop()


def test_reload_changes_relay_settings(tmp_path):
    """A wrong upstream password: AUTH refused, the mail waits; the file
    fixed and SIGHUP: the next attempt uses it (the queue kept)."""
    need_build()
    up = upstream(tmp_path / "up")
    dev = device(tmp_path / "dev", up)
    pwfile = os.path.join(dev.dir, "up.pw")
    up.start()
    with open(pwfile, "w") as f:
        f.write("wrong\n")
    dev.start()
    try:
        submit(dev, ["bob@example.org"])
        ev = dev.wait_event("relay_unusable", timeout=20)
        assert ev and ev[0]["code"] == "535"
        with open(pwfile, "w") as f:
            f.write(UP_PW + "\n")
        dev.hup()
        assert dev.wait_event("reloaded", timeout=10)
        assert queue_cmd(dev, "flush").returncode == 0
        assert wait_until(lambda: len(up.messages("bob@example.org")) == 1,
                          30)
    finally:
        assert dev.stop() == 0
        up.stop()


def test_user_relay_field(tmp_path):
    """relay= in the user file picks the user's relay; a user without
    it, and no global relay: 550 5.7.1."""
    need_build()
    up = upstream(tmp_path / "up")
    dev = device(tmp_path / "dev", up)
    dev.extra_global = dev.extra_global.replace("relay = up\n", "")
    dev.users = {DEV_USER: (DEV_PW, "PLAIN", "relay=up"),
                 "norelay@example.test": ("pw-2", "PLAIN", "")}
    up.start()
    dev.start()
    try:
        submit(dev, ["bob@example.org"])
        assert wait_until(lambda: len(up.messages("bob@example.org")) == 1,
                          20)
        with smtplib.SMTP("127.0.0.1", dev.ports["plain"], timeout=30) as s:
            s.login("norelay@example.test", "pw-2")
            s.mail("norelay@example.test")
            code, text = s.rcpt("bob@example.org")
            assert (code, text[:5]) == (550, b"5.7.1")
    finally:
        assert dev.stop() == 0
        up.stop()


def test_implicit_tls_and_plus(tmp_path):
    """tls = implicit upstream; posternd upstream offers SCRAM-SHA-256-PLUS
    under TLS, and the relay prefers it (channel binding)."""
    need_build()
    up = upstream(tmp_path / "up")
    up.users[UP_USER] = (UP_PW, "SCRAM-SHA-256", "")
    up.listener_spec["implicit"] = ("tls = implicit\nauth = required\n"
                                    "mechanisms = SCRAM-SHA-256-PLUS "
                                    "SCRAM-SHA-256 PLAIN\n")
    up.prepare()
    dev = device(tmp_path / "dev", up)
    dev.extra_sections = dev.extra_sections.replace(
        f"127.0.0.1:{up.ports['starttls']}",
        f"127.0.0.1:{up.ports['implicit']}").replace(
        "tls = starttls", "tls = implicit")
    up.start()
    dev.start()
    try:
        submit(dev, ["bob@example.org"])
        assert wait_until(lambda: len(up.messages("bob@example.org")) == 1,
                          20)
        ev = dev.events("relay_auth_ok")
        assert ev and ev[0]["mech"] == "SCRAM-SHA-256-PLUS"
    finally:
        assert dev.stop() == 0
        up.stop()


def test_connection_cache_reuses(tmp_path):
    """A second message within the cache time (2 s) goes over the same
    upstream connection: one connection, one AUTH (Postfix's connection
    cache); after the cache time the idle connection says QUIT."""
    need_build()
    up = upstream(tmp_path / "up")
    dev = device(tmp_path / "dev", up,
                 relay_extra="max_messages_per_minute = 0\n")
    up.start()
    dev.start()
    try:
        # The fixture's own probe of the port is the first "connect".
        base = len(up.events("connect"))
        submit(dev, ["bob@example.org"], subject="first")
        assert wait_until(lambda: len(up.messages("bob@example.org")) == 1,
                          20)
        submit(dev, ["carol@example.org"], subject="second")
        assert wait_until(lambda: len(up.messages("carol@example.org"))
                          == 1, 20)
        assert len(up.events("connect")) == base + 1, up.log()[-3000:]
        assert len(up.events("message_accepted")) == 2
        assert len(dev.events("relay_auth_ok")) == 1
        assert len(dev.events("relay_sent")) == 2
        assert dev.events("relay_deferred") == []
        # The cache time over: QUIT, not a dropped connection.
        assert up.wait_event("disconnect", timeout=10, reason="quit")
    finally:
        assert dev.stop() == 0
        up.stop()


def test_idle_connection_closed_by_upstream(tmp_path):
    """The smarthost ends the idle connection (its command timeout, 421
    4.4.2, before our 2 s): the next message opens a new one at once, no
    retry (retry_min 30 s would show)."""
    need_build()
    up = upstream(tmp_path / "up")
    up.extra_global += "timeout_command = 1\n"
    dev = device(tmp_path / "dev", up,
                 relay_extra="max_messages_per_minute = 0\n")
    dev.extra_global = dev.extra_global.replace("retry_min = 1s\n",
                                                "retry_min = 30s\n")
    dev.extra_global = dev.extra_global.replace("retry_max = 2s\n",
                                                "retry_max = 60s\n")
    up.start()
    dev.start()
    try:
        submit(dev, ["bob@example.org"])
        assert wait_until(lambda: len(up.messages("bob@example.org")) == 1,
                          20)
        # The upstream's 1 s timeout ends the cached connection (the
        # first disconnect is the fixture's probe of the port).
        ev = up.wait_event("disconnect", timeout=10, count=2)
        assert ev and ev[1]["reason"] != "quit"
        assert dev.wait_event("relay_refused", timeout=5, stage="idle")
        t0 = time.time()
        submit(dev, ["carol@example.org"])
        assert wait_until(lambda: len(up.messages("carol@example.org")) == 1,
                          10)
        assert time.time() - t0 < 10
        assert len(up.events("message_accepted")) == 2
        assert len(dev.events("relay_auth_ok")) == 2
        assert dev.events("relay_deferred") == []
    finally:
        assert dev.stop() == 0
        up.stop()


class ClosingSmarthost:
    """A plain SMTP smarthost (no PIPELINING, no AUTH) that answers the
    second MAIL of a connection with 421 and closes it: its idle timeout
    meeting our reuse (RFC 5321 §3.8).  Counts sessions and messages."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.sessions = 0
        self.messages = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.sessions += 1
            threading.Thread(target=self._serve, args=(s,),
                             daemon=True).start()

    def _serve(self, s):
        f = s.makefile("rb")
        mails = 0
        try:
            s.sendall(b"220 mx.example.org ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line[:4].upper()
                if cmd == b"EHLO":
                    s.sendall(b"250 mx.example.org\r\n")
                elif cmd == b"MAIL":
                    mails += 1
                    if mails > 1:
                        s.sendall(b"421 4.4.2 mx.example.org idle too "
                                  b"long\r\n")
                        return
                    s.sendall(b"250 2.1.0 Ok\r\n")
                elif cmd == b"RCPT":
                    s.sendall(b"250 2.1.5 Ok\r\n")
                elif cmd == b"DATA":
                    s.sendall(b"354 go on\r\n")
                    data = b""
                    while not data.endswith(b"\r\n.\r\n"):
                        chunk = f.readline()
                        if not chunk:
                            return
                        data += chunk
                    with self.lock:
                        self.messages.append(data)
                    s.sendall(b"250 2.0.0 Ok\r\n")
                elif cmd == b"QUIT":
                    s.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    s.sendall(b"250 2.0.0 Ok\r\n")
        except OSError:
            pass  # the relay closed first
        finally:
            s.close()

    def close(self):
        self.sock.close()


def test_reuse_refused_with_421_goes_at_once(tmp_path):
    """A cached connection whose smarthost answers MAIL with 421 (closing):
    the message was not attempted; it goes on a fresh connection at once,
    no retry delay, no attempt recorded."""
    need_build()
    sink = ClosingSmarthost()
    sections = (f"[relay up]\nhost = 127.0.0.1:{sink.port}\n"
                "tls = none\nauth = none\n"
                "max_messages_per_minute = 0\n")
    dev = Posternd(tmp_path / "dev", users={DEV_USER: (DEV_PW, "PLAIN", "")},
                   extra_global=("local_domains = example.test\n"
                                 "relay = up\nretry_min = 30s\n"
                                 "retry_max = 60s\n"),
                   listeners={"plain": "tls = none\nauth = optional\n"
                                       "auth_before_tls = all\n"},
                   extra_sections=sections)
    dev.start()
    try:
        submit(dev, ["bob@example.org"], subject="first")
        assert wait_until(lambda: len(sink.messages) == 1, 20)
        assert dev.wait_event("relay_sent", timeout=10)
        submit(dev, ["carol@example.org"], subject="second")
        assert wait_until(lambda: len(sink.messages) == 2, 10)
        assert b"Subject: second" in sink.messages[1]
        assert sink.sessions == 2
        ev = dev.events("relay_reuse_failed")
        assert len(ev) == 1 and "421 4.4.2" in ev[0]["reply"]
        assert dev.events("relay_deferred") == []
        assert wait_until(lambda: "empty" in queue_cmd(dev, "list").stdout,
                          10)
    finally:
        assert dev.stop() == 0
        sink.close()


def strace_calls(path):
    """[(syscall, args, result)] of an `strace -f` log in completion order
    (a call split by another thread's is placed where it completed)."""
    pending, out = {}, []
    for line in open(path, encoding="utf-8", errors="replace"):
        m = re.match(r"^(\d+)\s+(.*)$", line.rstrip("\n"))
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


def test_relayed_message_fsyncs(tmp_path):
    """Under strace, one relayed message (no local recipient): before the
    250, its queue link, then one fsync of the file (data and link count),
    QID.env fsync'd before its rename, the queue directory fsync'd; after
    the smarthost's 250 no record is appended or fdatasync'd: the files
    are removed.  3 fsyncs, no fdatasync in all."""
    need_build()
    if shutil.which("strace") is None:
        pytest.fail("strace is not installed: tools/deps.sh test")
    sink = ClosingSmarthost()
    dev = Posternd(tmp_path / "dev", users={DEV_USER: (DEV_PW, "PLAIN", "")},
                   extra_global=("local_domains = example.test\n"
                                 "relay = up\n"),
                   listeners={"plain": "tls = none\nauth = optional\n"
                                       "auth_before_tls = all\n"},
                   extra_sections=(f"[relay up]\nhost = 127.0.0.1:"
                                   f"{sink.port}\ntls = none\nauth = none\n"
                                   "max_messages_per_minute = 0\n"))
    if "ASAN_OPTIONS" in os.environ:
        # LeakSanitizer does not work under ptrace (the asan-e2e suite).
        dev.env["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"].replace(
            "detect_leaks=1", "detect_leaks=0")
    trace = tmp_path / "strace.log"
    start_wrapped(dev, prefix=["strace", "-f", "-qq", "-y", "-s", "200",
                               "-e", "trace=write,writev,fsync,fdatasync,"
                               "linkat,rename,unlink", "-o", str(trace)],
                  timeout=30)
    try:
        submit(dev, ["bob@example.org"])
        assert wait_until(lambda: len(sink.messages) == 1, 20)
        assert dev.wait_event("queue_done", timeout=10)
        qid = dev.events("message_accepted")[0]["qid"]
    finally:
        kids = open(f"/proc/{dev.proc.pid}/task/{dev.proc.pid}/children"
                    ).read()
        for pid in kids.split():
            os.kill(int(pid), signal.SIGTERM)
        rc = dev.wait_exit(timeout=30)
        sink.close()
    assert rc == 0, dev.log()[-2000:]
    queue = os.path.join(dev.spool, "queue")
    ev = strace_calls(trace)

    def first(pred, what):
        found = [i for i, e in enumerate(ev) if pred(*e)]
        assert found, f"no {what} in {trace}"
        return found[0]

    reply = first(lambda c, a, r: c in ("write", "writev") and
                  f"queued as {qid}" in a, "250 to the client")
    link = first(lambda c, a, r: c == "linkat" and r == 0 and
                 f'<{queue}>, "{qid}"' in a, "link into the queue")
    # linkat(AT_FDCWD, "/proc/self/fd/N", ...): the unnamed spool file.
    fd = re.search(r'"/proc/self/fd/(\d+)"', ev[link][1]).group(1)
    data_sync = first(lambda c, a, r: c == "fsync" and r == 0 and
                      a.startswith(f"{fd}<"), "fsync of the message file")
    env_tmp = f"{queue}/.{qid}.env.tmp"
    env_sync = first(lambda c, a, r: c == "fsync" and r == 0 and
                     f"<{env_tmp}>" in a, "fsync of the envelope")
    rename = first(lambda c, a, r: c == "rename" and r == 0 and
                   a.startswith(f'"{env_tmp}"'), "rename of the envelope")
    dir_sync = first(lambda c, a, r: c == "fsync" and r == 0 and
                     a.endswith(f"<{queue}>") and
                     ev.index((c, a, r)) > rename, "fsync of the queue")
    assert link < data_sync < env_sync < rename < dir_sync < reply, \
        (link, data_sync, env_sync, rename, dir_sync, reply)
    data = first(lambda c, a, r: c in ("write", "writev") and
                 a.split(",")[0].endswith(">") and "354 " in a,
                 "354 to the client")
    syncs = [(c, a) for c, a, r in ev[data:]
             if c in ("fsync", "fdatasync")]
    assert [c for c, _ in syncs] == ["fsync"] * 3, syncs
    gone = [a for c, a, r in ev if c == "unlink" and r == 0]
    assert f'"{queue}/{qid}.env"' in gone and f'"{queue}/{qid}"' in gone


def test_rate_limited_relay_reuses_connection(tmp_path):
    """max_messages_per_minute = 60: the second message waits for its
    token (about 1 s), less than the cache time (2 s), and then goes over
    the same connection."""
    need_build()
    up = upstream(tmp_path / "up")
    dev = device(tmp_path / "dev", up,
                 relay_extra="max_messages_per_minute = 60\n")
    up.start()
    dev.start()
    try:
        base = len(up.events("connect"))
        submit(dev, ["bob@example.org"], subject="first")
        submit(dev, ["carol@example.org"], subject="second")
        assert wait_until(lambda: len(up.messages("carol@example.org"))
                          == 1, 20)
        assert len(up.messages("bob@example.org")) == 1
        assert len(up.events("connect")) == base + 1, up.log()[-3000:]
        assert len(dev.events("relay_auth_ok")) == 1
    finally:
        assert dev.stop() == 0
        up.stop()
