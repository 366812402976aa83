"""postern bench against a real posternd: the load generator's counts
must match what the server delivered (no timing is asserted)."""
import json
import os
import subprocess

import pytest

from posternd_util import Posternd, postern_bin

PASSWORD = "tanstaaftanstaaf"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    p = Posternd(tmp_path_factory.mktemp("bench")).start()
    yield p
    assert p.stop() == 0


def bench(args, timeout=120):
    env = dict(os.environ, POSTERN_PASSWORD=PASSWORD)
    return subprocess.run([postern_bin(), "bench"] + args, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_self_test():
    p = bench(["--self-test"])
    assert p.returncode == 0, p.stderr


@pytest.mark.parametrize("mech,listener,extra", [
    ("PLAIN", "plain", []),
    ("CRAM-MD5", "plain", []),
    ("SCRAM-SHA-256", "plain", []),
    ("PLAIN", "starttls", ["--starttls"]),
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


def test_wrong_password_counts_failures(srv):
    env = dict(os.environ, POSTERN_PASSWORD="wrong")
    p = subprocess.run([postern_bin(), "bench", "--server",
                        f"smtp://127.0.0.1:{srv.ports['plain']}",
                        "--concurrency", "2", "--count", "4",
                        "--duration", "60", "--mech", "PLAIN",
                        "--user", "tim@example.test", "--json"],
                       env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    out = json.loads(p.stdout)
    assert (out["sessions"], out["failures"]) == (0, 4), out
    assert out["failure_samples"][0]["reply"].startswith("535 5.7.8"), out


def test_idle_connections_held(srv):
    p = bench(["--server", f"smtp://127.0.0.1:{srv.ports['plain']}",
               "--idle", "50", "--hold", "1", "--json"])
    assert p.returncode == 0, p.stdout + p.stderr
    out = json.loads(p.stdout)
    assert (out["connections"], out["established"], out["healthy"],
            out["failed"]) == (50, 50, 50, 0), out
