"""postern bench against a real posternd: the load generator's counts
must match what the server delivered (no timing is asserted)."""
import json
import os
import socketserver
import subprocess
import threading
import time

import pytest

from posternd_util import Posternd, postern_bin

PASSWORD = "tanstaaftanstaaf"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    p = Posternd(tmp_path_factory.mktemp("bench")).start()
    yield p
    assert p.stop() == 0


def bench(args, timeout=120, password=PASSWORD):
    env = dict(os.environ, POSTERN_PASSWORD=password)
    return subprocess.run([postern_bin(), "bench"] + args, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("mech,listener,extra", [
    ("PLAIN", "plain", []),
    ("CRAM-MD5", "plain", []),
    ("DIGEST-MD5", "plain", []),
    ("SCRAM-SHA-256", "plain", []),
    ("SCRAM-SHA-1", "plain", []),
    ("PLAIN", "starttls", ["--starttls"]),
    ("SCRAM-SHA-256", "starttls", ["--starttls"]),
])
def test_count_sessions_all_delivered(srv, mech, listener, extra):
    rcpt = f"bench-{mech.lower()}-{listener}@example.test"
    before = len(srv.messages(rcpt))
    p = bench(["--server", f"smtp://127.0.0.1:{srv.ports[listener]}",
               "--concurrency", "4", "--count", "24", "--duration", "60",
               "--mech", mech, "--user", "tim@example.test",
               "--from", "tim@example.test", "--to", rcpt,
               "--cafile", srv.cert, "--json"] + extra)
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert (out["sessions"], out["failures"]) == (24, 0), out
    assert len(srv.messages(rcpt)) - before == 24
    if mech.startswith("SCRAM-"):
        # RFC 5802 §5.1: the user's salt and iteration count stay the
        # same, so the run's one key cache derives once; the 23 other
        # sessions (4 at once, on one thread) reuse the keys.
        assert (out["scram_pbkdf2_runs"], out["scram_cache_hits"]) == \
            (1, 23), out


def test_scram_without_cache(srv):
    """--no-scram-cache: libpostern's SCRAM client derives the keys in
    every session, and every session still logs in."""
    rcpt = "bench-scram-nocache@example.test"
    before = len(srv.messages(rcpt))
    p = bench(["--server", f"smtp://127.0.0.1:{srv.ports['plain']}",
               "--concurrency", "2", "--count", "6", "--duration", "60",
               "--mech", "SCRAM-SHA-256", "--user", "tim@example.test",
               "--from", "tim@example.test", "--to", rcpt, "--json",
               "--no-scram-cache"])
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert (out["sessions"], out["failures"]) == (6, 0), out
    assert (out["scram_pbkdf2_runs"], out["scram_cache_hits"]) == (6, 0), out
    assert len(srv.messages(rcpt)) - before == 6


def test_plus_without_channel_binding_is_usage_error(srv):
    """A -PLUS mechanism needs TLS channel binding, which the bench does
    not do: refused once, before any connection (exit 64)."""
    p = bench(["--server", f"smtp://127.0.0.1:{srv.ports['plain']}",
               "--concurrency", "1", "--count", "1", "--duration", "5",
               "--mech", "SCRAM-SHA-256-PLUS", "--user", "tim@example.test"])
    assert p.returncode == 64, p.stdout + p.stderr
    assert "SCRAM-SHA-256-PLUS" in p.stderr, p.stderr


@pytest.mark.parametrize("mech", ["PLAIN", "SCRAM-SHA-256"])
def test_wrong_password_counts_failures(srv, mech):
    """The server refuses every session with 535 5.7.8 (RFC 4954 §6);
    with SCRAM the cache still derived once (the same wrong password,
    salt and iteration count)."""
    p = bench(["--server", f"smtp://127.0.0.1:{srv.ports['plain']}",
               "--concurrency", "2", "--count", "4", "--duration", "60",
               "--mech", mech, "--user", "tim@example.test", "--json"],
              password="wrong")
    assert p.returncode == 69, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert (out["sessions"], out["failures"]) == (0, 4), out
    assert out["failure_samples"][0]["stage"] == "AUTH", out
    assert out["failure_samples"][0]["reply"].startswith("535 5.7.8"), out
    if mech.startswith("SCRAM-"):
        assert (out["scram_pbkdf2_runs"], out["scram_cache_hits"]) == \
            (1, 3), out


def test_idle_connections_held(srv):
    p = bench(["--server", f"smtp://127.0.0.1:{srv.ports['plain']}",
               "--idle", "50", "--hold", "1", "--json"])
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert (out["connections"], out["established"], out["healthy"],
            out["failed"]) == (50, 50, 50, 0), out


class _Scripted(socketserver.BaseRequestHandler):
    """Sends script[0] on connect, then one reply per command line; a
    reply given as a tuple goes in pieces, 50 ms apart (separate reads
    for the client)."""

    def send(self, reply):
        for i, piece in enumerate(reply if isinstance(reply, tuple)
                                  else (reply,)):
            if i:
                time.sleep(0.05)
            self.request.sendall(piece)

    def handle(self):
        script = self.server.script
        self.send(script[0])
        f = self.request.makefile("rb")
        for reply in script[1:]:
            if not f.readline():
                return
            self.send(reply)
        while f.readline():
            pass


class _ScriptedServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def scripted():
    servers = []

    def start(script):
        srv = _ScriptedServer(("127.0.0.1", 0), _Scripted)
        srv.script = script
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv.server_address[1]
    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


LONGEST = 2046  # PST_SMTP_REPLY_MAX_LINE (2048) less the CRLF


@pytest.mark.parametrize("script,stage,reply", [
    # RFC 5321 §4.2: the code is three digits, [2-5] first.
    ([b"22O ready\r\n"], "greeting", "malformed reply line"),
    # Text is printable: a control octet is not.
    ([b"220 ready\x07\r\n"], "greeting", "malformed reply line"),
    # After the code: "-", " " or the end of the line.
    ([b"220 mail\r\n", b"250-mail\r\n250_PIPELINING\r\n"], "EHLO",
     "malformed reply line"),
    # RFC 5321 §4.2.1: every line of a reply has one code.
    ([b"220-mail\r\n221 bye\r\n"], "greeting",
     "reply lines with different codes"),
    # One octet over the validator's limit, with and without the CR.
    ([b"220 " + b"x" * (LONGEST - 3) + b"\r\n"], "greeting",
     "reply line too long"),
    ([b"220 " + b"x" * (LONGEST - 3) + b"\n"], "greeting",
     "reply line too long"),
    # Valid lines pass: UTF-8 text, the longest line, an enhanced code;
    # the failure is then the server's refusal, kept as sent.
    ([b"220 mail \xc3\xa9t\xc3\xa9 ready\r\n", b"250 mail\r\n",
      b"550 5.7.1 not you\r\n"], "MAIL", "550 5.7.1 not you"),
    ([b"220 " + b"x" * (LONGEST - 4) + b"\r\n", b"250 mail\r\n",
      b"550 5.7.1 not you\r\n"], "MAIL", "550 5.7.1 not you"),
    # Lines that span reads, the CR in one and its LF in the next.
    ([(b"220 mail", b" ready\r", b"\n"),
      (b"250-mail\r\n250", b" 8BITMIME\r\n"),
      (b"5", b"50 5.7.1 not you\r\n")], "MAIL", "550 5.7.1 not you"),
    # The longest line in two reads, then one octet more in two reads.
    ([(b"220 " + b"x" * 1000, b"x" * (LONGEST - 1004) + b"\r\n"),
      b"250 mail\r\n", b"550 5.7.1 not you\r\n"], "MAIL",
     "550 5.7.1 not you"),
    ([(b"220 " + b"x" * 1000, b"x" * (LONGEST - 1003) + b"\r\n")],
     "greeting", "reply line too long"),
])
def test_reply_lines_checked(scripted, script, stage, reply):
    """Every reply line goes through libpostern's validator
    (pst_smtp_reply_parse_line()): a bad one fails the session at its
    stage, with the reason."""
    port = scripted(script)
    p = bench(["--server", f"smtp://127.0.0.1:{port}", "--concurrency", "1",
               "--count", "2", "--duration", "60", "--timeout", "10",
               "--json"])
    assert p.returncode == 69, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert (out["sessions"], out["failures"]) == (0, 2), out
    assert out["failure_samples"][0] == {"stage": stage, "reply": reply}, out
