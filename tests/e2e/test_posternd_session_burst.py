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
