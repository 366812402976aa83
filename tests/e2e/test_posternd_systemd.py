"""posternd under systemd (Type=notify): sd_notify(3) messages on
$NOTIFY_SOCKET at the right moments, read from a socket of the test's
own exactly as systemd would receive them.  The unit file itself is
checked by test_install.py.
"""
import os
import signal
import socket
import subprocess
import time

import pytest

from posternd_util import Posternd, posternd_bin


class NotifySocket:
    """What systemd's notify socket would receive (one datagram per
    sd_notify() call; each is newline-separated KEY=VALUE lines)."""

    def __init__(self, tmp):
        self.path = os.path.join(str(tmp), "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)

    def next(self, timeout=10):
        """The next datagram as a dict (None after timeout)."""
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(4096).decode()
        except socket.timeout:
            return None
        return dict(line.split("=", 1) for line in data.split("\n") if line)

    def close(self):
        self.sock.close()


def port_open(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def notify(tmp_path):
    n = NotifySocket(tmp_path)
    yield n
    n.close()


def test_ready_reload_stop(tmp_path, notify):
    d = Posternd(tmp_path)
    d.prepare()
    log = open(d.log_path, "ab")
    proc = subprocess.Popen([posternd_bin(), "-c", d.conf], stdout=log,
                            stderr=log,
                            env=dict(os.environ, NOTIFY_SOCKET=notify.path))
    try:
        msg = notify.next()
        assert msg is not None, d.log()
        assert msg["READY"] == "1" and msg["STATUS"] == "serving"
        # READY comes after the listeners are bound: every port answers
        # now, without waiting.
        for port in d.ports.values():
            assert port_open(port)

        # A reload: RELOADING=1 with the monotonic clock, then READY=1.
        t0 = time.clock_gettime(time.CLOCK_MONOTONIC)
        proc.send_signal(signal.SIGHUP)
        msg = notify.next()
        assert msg["RELOADING"] == "1"
        usec = int(msg["MONOTONIC_USEC"])
        assert t0 * 1e6 - 1e6 < usec < time.clock_gettime(
            time.CLOCK_MONOTONIC) * 1e6 + 1
        msg = notify.next()
        assert msg == {"READY": "1", "STATUS": "serving (reloaded)"}

        # A reload that fails still ends in READY=1 (the old
        # configuration serves), saying so.
        good = open(d.conf).read()
        open(d.conf, "w").write(good + "no_such_key = 1\n")
        proc.send_signal(signal.SIGHUP)
        assert notify.next()["RELOADING"] == "1"
        msg = notify.next()
        assert msg["READY"] == "1"
        assert msg["STATUS"].startswith("reload failed")
        open(d.conf, "w").write(good)

        proc.send_signal(signal.SIGTERM)
        msg = notify.next()
        assert msg["STOPPING"] == "1"
        assert proc.wait(20) == 0
        assert notify.next(timeout=0.5) is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


def test_no_ready_when_start_fails(tmp_path, notify):
    """A listener that cannot be bound: no READY=1 (systemd then sees the
    exit and marks the start failed)."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    d = Posternd(tmp_path, listeners={"plain": "tls = none\n"
                                               "auth_before_tls = all\n"})
    d.ports["plain"] = busy.getsockname()[1]
    d.prepare()
    try:
        p = subprocess.run([posternd_bin(), "-c", d.conf],
                           capture_output=True, text=True, timeout=20,
                           env=dict(os.environ, NOTIFY_SOCKET=notify.path))
        assert p.returncode == 69, p.stderr
        assert "event=listen_failed" in p.stderr
        assert notify.next(timeout=0.5) is None
    finally:
        busy.close()


def test_without_notify_socket(tmp_path):
    """No $NOTIFY_SOCKET (a terminal): nothing changes."""
    assert "NOTIFY_SOCKET" not in os.environ
    d = Posternd(tmp_path)
    d.start()
    d.hup()
    assert d.wait_event("reloaded")
    assert d.stop() == 0
