"""docs/fail2ban/posternd.conf against logs that posternd wrote for real
failed and successful logins, read by Debian's fail2ban-regex: with
log = syslog (the lines as rsyslog files them in mail.log, taken from
posternd's own syslog(3) datagrams) and with log = stderr.  Only the
failed logins' client addresses match; successful logins, malformed and
cancelled exchanges do not; aggressive mode adds the throttle's
lockouts.
"""
import os
import shutil
import socket
import subprocess

import pytest

from posternd_util import (ROOT, Posternd, SMTPRaw, b64, start_wrapped,
                           wait_until)
from syslog_util import SyslogSink

FILTER = os.path.join(ROOT, "docs", "fail2ban", "posternd.conf")
JAIL = os.path.join(ROOT, "docs", "fail2ban", "jail.d-posternd.conf")

pytestmark = pytest.mark.skipif(shutil.which("fail2ban-regex") is None,
                                reason="no fail2ban-regex (Debian fail2ban)")


@pytest.fixture
def f2b_conf(tmp_path):
    """A fail2ban configuration directory with Debian's common.conf and
    our filter."""
    d = tmp_path / "fail2ban"
    (d / "filter.d").mkdir(parents=True)
    shutil.copy("/etc/fail2ban/filter.d/common.conf", d / "filter.d")
    shutil.copy(FILTER, d / "filter.d" / "posternd.conf")
    return str(d)


def regex(conf, logfile, filt="posternd"):
    """fail2ban-regex's matched addresses, in order."""
    p = subprocess.run(["fail2ban-regex", "-c", conf, "-o", "ip", logfile,
                        filt], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    return p.stdout.split()


def summary(conf, logfile):
    """(lines, matched) from fail2ban-regex's report."""
    p = subprocess.run(["fail2ban-regex", "-c", conf, logfile, "posternd"],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stdout + p.stderr
    for line in p.stdout.splitlines():
        if line.startswith("Lines: "):
            words = line.replace(",", "").split()
            return int(words[1]), int(words[5])
    raise AssertionError(p.stdout)


def client(d, source):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", d.ports["plain"]))
    r = SMTPRaw.__new__(SMTPRaw)
    r.sock, r.buf, r.timeout = s, b"", 10
    assert r.reply()[0] == 220
    assert r.ehlo()[0] == 250
    return r


def failures_and_successes(d, disconnects):
    """Three wrong passwords from 127.0.0.2, an unknown user with a
    space and a quote in its name from 127.0.0.3, a cancelled and a
    malformed exchange from 127.0.0.4, two good logins from 127.0.0.1."""
    r = client(d, "127.0.0.2")
    for i in range(3):
        assert r.cmd("AUTH PLAIN " +
                     b64(f"\0tim@example.test\0wrong{i}"))[0] == 535
    r.cmd("QUIT")
    r.close()
    r = client(d, "127.0.0.3")
    assert r.cmd("AUTH PLAIN " + b64('\0evil "user" x\0pw'))[0] == 535
    r.cmd("QUIT")
    r.close()
    r = client(d, "127.0.0.4")
    assert r.cmd("AUTH LOGIN")[0] == 334
    assert r.cmd("*")[0] == 501
    assert r.cmd("AUTH PLAIN !!!notbase64")[0] == 501
    r.cmd("QUIT")
    r.close()
    for _ in range(2):
        r = client(d, "127.0.0.1")
        assert r.login()[0] == 235
        r.cmd("QUIT")
        r.close()
    # Every session over (and logged) before the log is read.
    assert wait_until(lambda: disconnects() >= 6)


def test_syslog_lines(tmp_path, f2b_conf):
    if os.geteuid() != 0:
        pytest.skip("needs root (a /dev/log of the test's own)")
    sink = SyslogSink(tmp_path)
    d = Posternd(tmp_path / "d", extra_global="log = syslog\n")
    try:
        start_wrapped(d, prefix=sink.prefix())
        failures_and_successes(d, lambda: len(
            [m for m in sink.messages() if "event=disconnect " in m.text]))
    finally:
        assert d.stop() == 0
        sink.close()
    mail_log = tmp_path / "mail.log"
    mail_log.write_text("".join(m.file_line() + "\n"
                                for m in sink.messages()))
    assert regex(f2b_conf, str(mail_log)) == ["127.0.0.2"] * 3 + \
        ["127.0.0.3"]
    # The good logins alone: nothing.
    ok_log = tmp_path / "ok.log"
    ok_log.write_text("".join(m.file_line() + "\n" for m in sink.messages()
                              if "peer=127.0.0.1" in m.text))
    lines, matched = summary(f2b_conf, str(ok_log))
    assert lines >= 4 and matched == 0


def test_stderr_lines(tmp_path, f2b_conf):
    d = Posternd(tmp_path)
    d.start()
    try:
        failures_and_successes(d, lambda: len(d.events("disconnect")))
    finally:
        assert d.stop() == 0
    assert regex(f2b_conf, d.log_path) == ["127.0.0.2"] * 3 + ["127.0.0.3"]


def test_only_successes(tmp_path, f2b_conf):
    """A log of successful logins only (and their sessions) matches
    nothing."""
    d = Posternd(tmp_path)
    d.start()
    try:
        for _ in range(3):
            r = client(d, "127.0.0.1")
            assert r.login()[0] == 235
            r.cmd("QUIT")
            r.close()
    finally:
        assert d.stop() == 0
    lines, matched = summary(f2b_conf, d.log_path)
    assert lines > 10 and matched == 0
    assert regex(f2b_conf, d.log_path) == []


def test_aggressive_mode_adds_lockouts(tmp_path, f2b_conf):
    d = Posternd(tmp_path, extra_global=(
        "auth_throttle = yes\nauth_throttle_exempt = 127.0.0.1\n"
        "auth_throttle_delay = 0\nauth_throttle_max_delay = 0\n"
        "auth_throttle_lockout_failures = 2\n"))
    d.start()
    try:
        r = client(d, "127.0.0.5")
        for i in range(2):
            assert r.cmd("AUTH PLAIN " +
                         b64(f"\0tim@example.test\0bad{i}"))[0] == 535
        assert d.wait_event("auth_lockout")
        r.close()
    finally:
        assert d.stop() == 0
    assert regex(f2b_conf, d.log_path) == ["127.0.0.5"] * 2
    assert regex(f2b_conf, d.log_path, "posternd[mode=aggressive]") == \
        ["127.0.0.5"] * 3


def test_jail_example_reads():
    """The jail example names the filter and a backend fail2ban knows."""
    text = open(JAIL).read()
    assert "[posternd]" in text and "filter   = posternd" in text
    assert "backend  = systemd" in text
