"""The pipelined burst of test_posternd_session.py, 200 times in a row on
implicit TLS and plain (issue "Hardening, round 2", item 8: it failed now
and then under ASan; flow_util.py says why), and the replies to a client
that pipelines past QUIT (they used to be destroyed by the reset a close
with unread input makes).
"""
import os
import socket
import time

import pytest

from posternd_util import b64, read_all_replies, unique_rcpt
from test_posternd_session import pipelined_burst, start

REPEAT = int(os.environ.get("POSTERN_BURST_REPEAT", "200"))


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    p = start(tmp_path_factory.mktemp("burst"))
    yield p
    rc = p.stop()
    assert rc == 0, f"posternd exit {rc}:\n{p.log()[-3000:]}"


@pytest.mark.parametrize("listener", ["implicit", "plain"])
def test_burst_repeated(srv, listener):
    for i in range(REPEAT if listener == "implicit" else REPEAT // 4):
        try:
            pipelined_burst(srv, listener)
        except Exception as e:
            raise AssertionError(f"burst {i + 1} of {REPEAT}: {e!r}") from e
@pytest.mark.parametrize("n", [10, 3000])
def test_replies_survive_input_after_quit(srv, n):
    """NOOPs, QUIT, then more input that posternd never reads: every
    reply and the 221 reach the client.  (Before: with 3000 NOOPs the
    client got about 1200 replies, then a reset.)"""
    r = srv.raw("plain")
    r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    r.send(b"EHLO x\r\n" + b"NOOP\r\n" * n + b"QUIT\r\n" +
           b"NOOP\r\n" * 16000)
    time.sleep(1.0)                 # posternd answers and closes meanwhile
    got = read_all_replies(r)
    r.close()
    assert len(got) == n + 3, (len(got), got[-1:])
    assert got[2:-1] == [(250, ["250 2.0.0 Ok"])] * n
    assert got[-1] == (221, ["221 2.0.0 Bye"])


def test_half_close_gets_replies(srv):
    """A client that sends its commands and closes its side at once
    (`printf ... | nc`) reads every reply, and the message is delivered.
    (A FIN used to close the connection at once: the replies after the
    EHLO's were lost.)"""
    rcpt = unique_rcpt("halfclose")
    auth = b64("\0tim@example.test\0tanstaaftanstaaf")
    r = srv.raw("plain")
    r.send(("EHLO x\r\n"
            f"AUTH PLAIN {auth}\r\n"
            "MAIL FROM:<tim@example.test>\r\n"
            f"RCPT TO:<{rcpt}>\r\n"
            "DATA\r\nSubject: half\r\n\r\nhalf\r\n.\r\nQUIT\r\n").encode())
    r.sock.shutdown(socket.SHUT_WR)
    got = read_all_replies(r)
    r.close()
    assert [c for c, _ in got] == [220, 250, 235, 250, 250, 354, 250, 221], \
        got
    assert len(srv.messages(rcpt)) == 1


def test_half_close_without_quit(srv):
    """The same without QUIT: the replies, then posternd closes too."""
    r = srv.raw("plain")
    r.send(b"EHLO x\r\nNOOP\r\nNOOP\r\n")
    r.sock.shutdown(socket.SHUT_WR)
    got = read_all_replies(r)
    r.close()
    assert [c for c, _ in got] == [220, 250, 250, 250], got
