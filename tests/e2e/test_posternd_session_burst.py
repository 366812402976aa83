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

from posternd_util import read_all_replies
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
