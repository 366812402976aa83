"""metrics = ADDRESS (DESIGN.md "Operations"): Prometheus text at GET
/metrics, scraped with curl while the test does known things, each
counter checked against what it did; the exposition read by a strict
parser (metrics_util.py) and by Debian's promtool.
"""
import hmac
import http.client
import os
import shutil
import socket
import ssl
import subprocess
import time

import pytest

from metrics_util import curl, scrape
from net_util import test_cert  # noqa: F401
from oauth_server import token_server  # noqa: F401
from posternd_util import (Posternd, SMTPRaw, b64, free_port, make_message,
                           read_all_replies, wait_until)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def metrics_port(d):
    return int(d.metrics_addr.rsplit(":", 1)[1])


def with_metrics(tmp, extra="", **kw):
    port = free_port()
    d = Posternd(tmp, extra_global=f"metrics = 127.0.0.1:{port}\n" + extra,
                 **kw)
    d.metrics_addr = f"127.0.0.1:{port}"
    return d


def idle_scrape(d):
    """A scrape once every connection of the test is closed."""
    got = []

    def idle():
        got[:] = [scrape(metrics_port(d))]
        return got[0].value("posternd_connections_open") == 0
    assert wait_until(idle, 10)
    return got[0]


def delta(before, after, name, **labels):
    return after.get(name, **labels) - before.get(name, **labels)


def data(r, msg, rcpt="bob@example.test"):
    assert r.cmd("MAIL FROM:<tim@example.test>")[0] == 250
    assert r.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(msg + b".\r\n")
    return r.reply()


def cram_md5(r, user, password):
    code, lines = r.cmd("AUTH CRAM-MD5")
    assert code == 334
    import base64
    challenge = base64.b64decode(lines[0][4:])
    digest = hmac.new(password.encode(), challenge, "md5").hexdigest()
    return r.cmd(b64(f"{user} {digest}"))


def connect_from(port, source):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", port))
    r = SMTPRaw.__new__(SMTPRaw)
    r.sock, r.buf, r.timeout = s, b"", 10
    return r


@pytest.fixture
def d(tmp_path):
    p = with_metrics(tmp_path, extra=(
        "max_message_size = 4096\n"
        "auth_throttle = yes\n"
        "auth_throttle_exempt = 127.0.0.1\n"
        "auth_throttle_delay = 1\n"
        "auth_throttle_max_delay = 1\n"
        "auth_throttle_lockout_failures = 3\n"))
    p.start()
    yield p
    assert p.stop() == 0


def test_counters_match_what_was_done(d):
    s0 = idle_scrape(d)
    user, pw = "tim@example.test", "tanstaaftanstaaf"

    # plain: a failed and a good AUTH PLAIN, one message accepted, one too
    # big (552), one with a bare LF (refused at its end).
    r = d.raw("plain")
    assert r.reply()[0] == 220
    assert r.ehlo()[0] == 250
    assert r.cmd("AUTH PLAIN " + b64(f"\0{user}\0nope"))[0] == 535
    assert r.login()[0] == 235
    msg = make_message(subject="counted", body="One message.\r\n")
    code, lines = data(r, msg)
    assert code == 250, lines
    big = make_message(body="x" * 70 + "\r\n") * 80
    assert len(big) > 4096
    code, lines = data(r, big)
    assert code == 552, lines
    code, lines = data(r, make_message(body="bare\nLF\r\n"))
    assert code == 550 and lines[0].startswith("550 5.6."), lines
    r.cmd("QUIT")
    r.close()

    # starttls: TLSv1.3, then CRAM-MD5.
    r = d.raw("starttls")
    assert r.reply()[0] == 220
    r.ehlo()
    assert r.cmd("STARTTLS")[0] == 220
    r.starttls(d.ssl_context())
    assert r.sock.version() == "TLSv1.3"
    r.ehlo()
    assert cram_md5(r, user, pw)[0] == 235
    r.cmd("QUIT")
    r.close()

    # implicit: TLSv1.2, and a client that is not speaking TLS at all.
    ctx = d.ssl_context()
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    r = SMTPRaw.implicit(d.ports["implicit"], ctx)
    assert r.sock.version() == "TLSv1.2"
    assert r.reply()[0] == 220
    r.cmd("QUIT")
    r.close()
    s = socket.create_connection(("127.0.0.1", d.ports["implicit"]), 10)
    s.sendall(b"EHLO not-tls.example\r\n")
    s.settimeout(10)
    assert s.recv(4096) == b""
    s.close()

    # From 127.0.0.2 (not exempt): three new wrong guesses, held by the
    # throttle after the first two, locked out at the third; then a new
    # connection refused at once.
    r = connect_from(d.ports["plain"], "127.0.0.2")
    assert r.reply()[0] == 220
    r.ehlo()
    codes = [r.cmd("AUTH PLAIN " + b64(f"\0{user}\0guess{i}"))[0]
             for i in range(3)]
    assert codes == [535, 535, 535]
    rest = read_all_replies(r)
    assert rest and rest[-1][0] == 421, rest
    r.close()
    r = connect_from(d.ports["plain"], "127.0.0.2")
    code, lines = r.reply()
    assert code == 421 and lines[0].startswith("421 4.7.0"), lines
    r.close()

    s1 = idle_scrape(d)
    want = {
        ("posternd_connections_total", ("listener", "plain")): 3,
        ("posternd_connections_total", ("listener", "starttls")): 1,
        ("posternd_connections_total", ("listener", "implicit")): 2,
        ("posternd_connections_total", ("listener", "legacy")): 0,
        ("posternd_tls_handshakes_total", ("version", "TLSv1.3")): 1,
        ("posternd_tls_handshakes_total", ("version", "TLSv1.2")): 1,
        ("posternd_tls_handshakes_total", ("version", "TLSv1.1")): 0,
        ("posternd_tls_handshake_failures_total", None): 1,
        ("posternd_auth_throttle_delays_total", None): 2,
        ("posternd_auth_lockouts_total", None): 2,
        ("posternd_messages_accepted_total", None): 1,
        ("posternd_message_bytes_total", None): len(msg),
        ("posternd_messages_refused_total", ("reason", "size")): 1,
        ("posternd_messages_refused_total", ("reason", "bare_lf")): 1,
        ("posternd_messages_refused_total", ("reason", "line_length")): 0,
        ("posternd_messages_refused_total", ("reason", "storage")): 0,
        ("posternd_delivery_duration_seconds_count", None): 1,
    }
    got = {}
    for (name, label), _ in want.items():
        labels = dict([label]) if label else {}
        got[(name, label)] = delta(s0, s1, name, **labels)
    assert got == want
    auth = {(dict(k)["mechanism"], dict(k)["result"]): v - s0.get(
        "posternd_auth_attempts_total", **dict(k))
        for k, v in s1.series("posternd_auth_attempts_total").items()}
    assert auth[("PLAIN", "success")] == 1
    assert auth[("PLAIN", "failure")] == 4
    assert auth[("CRAM-MD5", "success")] == 1
    assert sum(auth.values()) == 6, auth
    # The bytes are what the log says the message had.
    accepted = d.events("message_accepted")
    assert [int(e["size"]) for e in accepted] == [len(msg)]
    # One delivery, under a second here, and its time counted.
    assert s1.value("posternd_delivery_duration_seconds_bucket",
                    le="1") == 1
    assert 0 < s1.value("posternd_delivery_duration_seconds_sum") < 1
    assert s1.value("posternd_connections_open") == 0


def test_open_connections_gauge(d):
    before = idle_scrape(d).value("posternd_connections_open")
    assert before == 0
    held = [d.raw("plain") for _ in range(3)]
    for r in held:
        assert r.reply()[0] == 220
    assert scrape(metrics_port(d)).value("posternd_connections_open") == 3
    for r in held:
        r.close()
    assert idle_scrape(d).value("posternd_connections_open") == 0


def test_http_and_promtool(d, tmp_path):
    port = metrics_port(d)
    status, head, body = curl(f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert f"Content-Type: {CONTENT_TYPE}\r\n" in head
    text = body.decode()
    # A HELP and a TYPE line for every family (DESIGN.md).
    for fam in ("posternd_connections_total", "posternd_connections_open",
                "posternd_tls_handshakes_total",
                "posternd_auth_attempts_total",
                "posternd_messages_accepted_total",
                "posternd_messages_refused_total",
                "posternd_delivery_duration_seconds"):
        assert f"\n# HELP {fam} " in "\n" + text
        assert f"\n# TYPE {fam} " in "\n" + text
    # Other paths 404, other methods 405 with Allow; HEAD has no body.
    assert curl(f"http://127.0.0.1:{port}/")[0] == 404
    assert curl(f"http://127.0.0.1:{port}/metricsx")[0] == 404
    status, head, _ = curl(f"http://127.0.0.1:{port}/metrics", "-X", "POST",
                           "--data", "x=1")
    assert status == 405 and "Allow: GET, HEAD\r\n" in head
    assert curl(f"http://127.0.0.1:{port}/metrics", "-X", "DELETE")[0] == 405
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("HEAD", "/metrics")
    res = c.getresponse()
    assert res.status == 200 and res.read() == b""
    assert res.getheader("Content-Type") == CONTENT_TYPE
    c.close()
    # Many scrapes, some left open: the endpoint keeps answering.
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(5)]
    for _ in range(20):
        scrape(port)
    for s in idle:
        s.close()
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("no promtool (Debian package prometheus)")
    p = subprocess.run([promtool, "check", "metrics"], input=body,
                       capture_output=True)
    assert p.returncode == 0, p.stdout + p.stderr


def test_reload_keeps_the_endpoint(d):
    port = metrics_port(d)
    conf = open(d.conf).read()
    other = free_port()
    open(d.conf, "w").write(conf.replace(f"127.0.0.1:{port}",
                                         f"127.0.0.1:{other}"))
    d.hup()
    assert d.wait_event("reload_partial")
    assert d.wait_event("reloaded")
    assert scrape(port).value("posternd_connections_open") >= 0
    with pytest.raises(RuntimeError):
        scrape(other)


def test_metrics_port_taken(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    d = Posternd(tmp_path, extra_global=f"metrics = 127.0.0.1:{port}\n")
    try:
        with pytest.raises(RuntimeError):
            d.start(timeout=10)
        assert d.proc.returncode != 0
        ev = d.events("listen_failed", listener="metrics")
        assert ev and ev[0]["address"] == f"127.0.0.1:{port}"
    finally:
        d.kill()
        busy.close()


def test_relay_metrics(tmp_path):
    """Queue size, relay attempts by result, paused: against a second
    posternd as the smarthost (test_posternd_relay.py's pair)."""
    from test_posternd_relay import device, submit, upstream

    up = upstream(tmp_path / "up")
    dev = device(tmp_path / "dev", up,
                 extra=f"metrics = 127.0.0.1:{free_port()}\n")
    dev.start()
    port = int(dev.extra_global.split("metrics = 127.0.0.1:")[1]
               .split("\n")[0])
    try:
        s0 = scrape(port)
        assert s0.value("posternd_queue_messages", relay="up") == 0
        assert s0.value("posternd_relay_paused", relay="up") == 0
        for result in ("sent", "deferred", "failed", "unusable"):
            assert s0.value("posternd_relay_attempts_total", relay="up",
                            result=result) == 0
        # No OAuth on this relay: no refresh series.
        assert not s0.series("posternd_oauth_refreshes_total")
        # The smarthost is down: the message waits in the queue.
        _, refused = submit(dev, ["bob@example.org"])
        assert refused == {}
        assert dev.wait_event("relay_unusable", timeout=15)
        s1 = scrape(port)
        assert s1.value("posternd_queue_messages", relay="up") == 1
        assert s1.value("posternd_relay_attempts_total", relay="up",
                        result="unusable") >= 1
        assert s1.value("posternd_relay_attempts_total", relay="up",
                        result="sent") == 0
        # Up again: sent, and the queue empties.
        up.start()
        subprocess.run([os.path.join(os.environ.get(
            "POSTERN_BUILD", "build"), "src", "postern", "postern"),
            "queue", "-c", dev.conf, "flush"], check=True,
            capture_output=True, timeout=30)
        assert wait_until(lambda: len(up.messages("bob@example.org")) == 1,
                          30)
        assert wait_until(lambda: scrape(port).value(
            "posternd_queue_messages", relay="up") == 0, 15)
        s2 = scrape(port)
        assert s2.value("posternd_relay_attempts_total", relay="up",
                        result="sent") == 1
        # A recipient the smarthost refuses for good: failed.
        _, refused = submit(dev, ["nobody@example.org"])
        assert refused == {}
        assert wait_until(lambda: scrape(port).value(
            "posternd_relay_attempts_total", relay="up",
            result="failed") == 1, 30)
        s3 = scrape(port)
        assert s3.value("posternd_relay_attempts_total", relay="up",
                        result="sent") == 1
        assert s3.value("posternd_relay_attempts_total", relay="up",
                        result="deferred") == 0
    finally:
        assert dev.stop() == 0
        up.stop()


def test_oauth_metrics(tmp_path, token_server, test_cert):  # noqa: F811
    """Token refreshes by result and the pause, as relay_token.c counts
    them: a revoked grant (a failure, then paused, the message kept),
    then a good one (a success).  No smarthost listens: the message
    stays queued."""
    from smarthost_util import USER
    from test_posternd_oauth import device, submit

    ts = token_server
    dead = free_port()
    revoked = ts.issue_refresh_token(USER)
    ts.revoke(revoked, code=700082)
    port = free_port()
    d = device(tmp_path / "revoked", dead, test_cert.cert, ts,
               refresh_token=revoked,
               extra=f"metrics = 127.0.0.1:{port}\n")
    d.start()
    try:
        # (posternd refreshes at start: the token file has no access
        # token yet.)
        submit(d, "rcpt@example.org")
        assert d.wait_event("oauth_paused", timeout=20)
        s1 = scrape(port)
        assert s1.value("posternd_oauth_refreshes_total", relay="up",
                        result="failure") == 1
        assert s1.value("posternd_oauth_refreshes_total", relay="up",
                        result="success") == 0
        assert s1.value("posternd_relay_paused", relay="up") == 1
        assert s1.value("posternd_queue_messages", relay="up") == 1
    finally:
        assert d.stop() == 0

    port = free_port()
    d = device(tmp_path / "good", dead, test_cert.cert, ts,
               refresh_token=ts.issue_refresh_token(USER),
               extra=f"metrics = 127.0.0.1:{port}\n")
    d.start()
    try:
        submit(d, "rcpt@example.org")
        assert d.wait_event("oauth_refreshed", timeout=20)
        assert wait_until(lambda: scrape(port).value(
            "posternd_relay_attempts_total", relay="up",
            result="unusable") >= 1, 20)
        s2 = scrape(port)
        assert s2.value("posternd_oauth_refreshes_total", relay="up",
                        result="success") == 1
        assert s2.value("posternd_oauth_refreshes_total", relay="up",
                        result="failure") == 0
        assert s2.value("posternd_relay_paused", relay="up") == 0
        assert s2.value("posternd_queue_messages", relay="up") == 1
    finally:
        assert d.stop() == 0
