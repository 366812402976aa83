"""Small shared pieces of the upstream test servers (oauth_server.py,
provider_smtp.py, smarthost_util.py).

- free_port(): a free TCP port on 127.0.0.1 (or ::1), chosen at run time.
- b64(): base64 of a str or bytes, as str.
- wait_until(): poll a condition with a deadline (every wait is bounded).
- wait_port(): until something accepts (and, optionally, greets) on a port.
- TestCert / make_cert(): a self-signed certificate made by
  tools/gen-cert.sh (CN and DNS name `localhost`, plus IP:127.0.0.1 and
  IP:::1), so a client verifies 127.0.0.1 with the certificate as its
  only CA; client_context() is that client side for Python.
- Fixture `test_cert`: one TestCert per test module, under pytest's
  tmp_path_factory (root's alone: a server run as another user copies it).
"""
import base64
import os
import socket
import ssl
import subprocess
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
CERT_HOST = "localhost"


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def wait_until(cond, timeout=10.0, interval=0.02):
    """cond()'s first true value, or None once timeout seconds passed."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def wait_port(port, timeout=10.0, host="127.0.0.1", greeting=False,
              alive=None):
    """True once host:port accepts a connection (and sends a line, with
    greeting=True); False after timeout or as soon as alive() is false."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                if not greeting:
                    return True
                s.settimeout(max(0.1, deadline - time.monotonic()))
                if s.recv(512):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


class TestCert:
    """cert.pem and key.pem in dir (made by tools/gen-cert.sh)."""
    __test__ = False  # not a pytest test class

    def __init__(self, directory, host=CERT_HOST, kind="rsa"):
        self.dir = str(directory)
        os.makedirs(self.dir, exist_ok=True)
        p = subprocess.run([os.path.join(ROOT, "tools", "gen-cert.sh"),
                            "-f", "-t", kind, host, self.dir],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError("gen-cert.sh failed: " + p.stderr)
        self.host = host
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")

    def server_context(self):
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert, self.key)
        return ctx

    def client_context(self):
        """Verifies the peer against this certificate alone."""
        return ssl.create_default_context(cafile=self.cert)


def make_cert(directory, host=CERT_HOST):
    return TestCert(directory, host)


@pytest.fixture(scope="module")
def test_cert(tmp_path_factory):
    return TestCert(tmp_path_factory.mktemp("cert"))
