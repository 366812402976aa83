"""log = syslog (DESIGN.md "Operations"): ident posternd with the pid,
facility mail, the key=value text without ts=, severities info, warning
and err; a reload switches between syslog and stderr.

posternd runs with a /dev/log of the test's own (syslog_util.py: a
private mount namespace), so its real syslog(3) datagrams are checked
byte for byte where it matters.
"""
import os
import re

import pytest

from posternd_util import Posternd, SMTPRaw, b64, start_wrapped
from syslog_util import FACILITY_MAIL, SEVERITY, SyslogSink

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root (a mount namespace)")


@pytest.fixture
def sink(tmp_path):
    s = SyslogSink(tmp_path)
    yield s
    s.close()


def test_syslog_events(tmp_path, sink):
    d = Posternd(tmp_path, extra_global="log = syslog\n")
    start_wrapped(d, prefix=sink.prefix())
    try:
        pid = d.proc.pid
        r = SMTPRaw(d.ports["plain"])
        assert r.reply()[0] == 220
        assert r.ehlo()[0] == 250
        assert r.cmd("AUTH PLAIN " + b64("\0tim@example.test\0wrong"))[0] \
            == 535
        assert r.login()[0] == 235
        assert r.cmd("QUIT")[0] == 221
        r.close()
        failed = sink.wait(r"event=auth_failed ")
        assert len(failed) == 1, [m.raw for m in sink.messages()]
        m = failed[0]
        assert (m.facility, m.severity) == (FACILITY_MAIL, SEVERITY["info"])
        assert m.raw.startswith("<22>")            # mail.info
        assert (m.tag, m.pid) == ("posternd", pid)
        # The same key=value text as on stderr, without ts=.
        assert re.match(r"level=info event=auth_failed sid=[0-9a-f]+ "
                        r"peer=127\.0\.0\.1 user=tim@example\.test "
                        r"mech=PLAIN error=EAUTH ", m.text), m.text
        ok = sink.wait(r"event=auth_ok ")
        assert len(ok) == 1 and ok[0].severity == SEVERITY["info"]
        for m in sink.messages():
            assert m.facility == FACILITY_MAIL, m.raw
            assert "ts=" not in m.text, m.raw
            assert m.text.startswith("level="), m.raw
        started = sink.wait(r"^level=info event=started ")
        assert started, [m.raw for m in sink.messages()]
        # Nothing of it on stderr.
        assert "event=" not in d.log(), d.log()

        # A reload that fails is a warning (mail.warning, <20>).
        good = open(d.conf).read()
        open(d.conf, "w").write(good + "bogus_key = 1\n")
        d.hup()
        warn = sink.wait(r"event=reload_failed ")
        assert len(warn) == 1, [m.raw for m in sink.messages()]
        assert warn[0].raw.startswith("<20>")
        assert warn[0].severity == SEVERITY["warning"]
        assert warn[0].text.startswith("level=warn event=reload_failed ")

        # Back to stderr: the reload's own line is already there, with ts=.
        open(d.conf, "w").write(good.replace("log = syslog\n",
                                             "log = stderr\n"))
        d.hup()
        assert d.wait_log(r"ts=\S+ level=info event=reloaded ")
        n = len(sink.messages())
        r = SMTPRaw(d.ports["plain"])
        assert r.reply()[0] == 220
        r.cmd("QUIT")
        r.close()
        assert d.wait_event("disconnect", reason="quit")
        assert len(sink.messages()) == n
        assert not sink.wait(r"event=reloaded ", timeout=0)
    finally:
        assert d.stop() == 0


def test_syslog_from_the_start(tmp_path, sink):
    """Everything after the configuration is read goes to syslog, up to
    the last line at the stop."""
    d = Posternd(tmp_path, extra_global="log = syslog\n")
    start_wrapped(d, prefix=sink.prefix())
    assert d.stop() == 0
    stopped = sink.wait(r"^level=info event=stopped ")
    assert stopped and stopped[0].severity == SEVERITY["info"]
    assert "event=" not in d.log()
