"""No user enumeration through SCRAM (issue "Hardening, round 2", item 3).

A client that starts AUTH SCRAM-SHA-256 and reads the server-first
message learns a salt and an iteration count.  A real user's are the
stored ones, the same at every attempt; an unknown user used to get a
random salt each time (two attempts and a `*` told who exists), and its
334 came about 1 ms later (PBKDF2 of made-up keys, on the event loop).

Now every salt that is not stored (unknown users, keys derived from
{PLAIN}) is HMAC(server secret, user NUL mechanism) (scram_secret_file,
made at the first start, 0600, kept across restarts), the iteration
count the configured one, and made-up keys cost no PBKDF2: the 334 of an
unknown user takes what a stored verifier's does.  The timing comparison
is test_posternd_timing.py's (no duration asserted); figures in
docs/SECURITY.md, "SCRAM and unknown users".
"""
import base64
import hashlib
import hmac
import os
import random
import shutil
import stat
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from posternd_util import Posternd, SMTPRaw, b64, posternd_bin
from test_posternd_timing import effect_size

STORED = "tim@example.test"            # {SCRAM-SHA-256}, 4096
PLAIN_ONLY = "plain@example.test"      # {PLAIN} only: keys derived
UNKNOWN = "nobody@example.test"
MECH = "SCRAM-SHA-256"
N = 40
K = 3
THREADS = 4
SEED = 7


def start(tmp, **kw):
    if not os.access(posternd_bin(), os.X_OK):
        pytest.fail(f"{posternd_bin()} is not built")
    return Posternd(tmp, users={
        STORED: ("tanstaaftanstaaf", "SCRAM-SHA-256", ""),
        PLAIN_ONLY: ("plainplainplain", "PLAIN", ""),
    }, listeners={"plain": "tls = none\nauth = required\n"
                           "auth_before_tls = all\n"}, **kw).start()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    p = start(tmp_path_factory.mktemp("scramprobe"))
    yield p
    assert p.stop() == 0, p.log()[-3000:]


def server_first(p, user, mech=MECH):
    """(salt, iterations, seconds): AUTH with a client-first message on a
    fresh connection, timed from the command to its 334, then `*`."""
    r = SMTPRaw(p.ports["plain"], timeout=20)
    try:
        assert r.reply()[0] == 220
        assert r.ehlo()[0] == 250
        line = f"AUTH {mech} " + b64(f"n,,n={user},r=fyko+d2lbbFgONRv9qkxd")
        t0 = time.perf_counter()
        code, lines = r.cmd(line)
        t = time.perf_counter() - t0
        assert code == 334, lines
        first = base64.b64decode(lines[0][4:]).decode()
        attrs = dict(a.split("=", 1) for a in first.split(","))
        assert r.cmd("*")[0] == 501
        return attrs["s"], attrs["i"], t
    finally:
        r.close()


def secret_salt(secret, user, mech=MECH):
    """What posternd.conf(5) promises, computed here on its own."""
    mac = hmac.new(secret, user.encode() + b"\0" + mech.encode(),
                   hashlib.sha256).digest()
    return base64.b64encode(mac[:16]).decode()


def read_secret(p):
    with open(os.path.join(p.spool, "scram.secret"), "rb") as f:
        return f.read().rstrip(b"\r\n \t")


def test_salts_stable_and_alike(srv):
    """Two attempts each: an existing user's and an unknown user's salt
    and count do not move; the unknown user's and the {PLAIN} user's are
    HMAC(secret, user NUL mechanism)."""
    secret = read_secret(srv)
    seen = {}
    for user in (STORED, PLAIN_ONLY, UNKNOWN, STORED, PLAIN_ONLY, UNKNOWN):
        salt, it, _ = server_first(srv, user)
        seen.setdefault(user, set()).add((salt, it))
    for user, got in seen.items():
        assert len(got) == 1, f"{user}: {got}"
    assert seen[UNKNOWN] == {(secret_salt(secret, UNKNOWN), "4096")}
    assert seen[PLAIN_ONLY] == {(secret_salt(secret, PLAIN_ONLY), "4096")}
    # SCRAM-SHA-1 has a salt of its own.
    salt1, it1, _ = server_first(srv, UNKNOWN, "SCRAM-SHA-1")
    assert (salt1, it1) == (secret_salt(secret, UNKNOWN, "SCRAM-SHA-1"),
                            "4096")


def test_secret_file(tmp_path):
    """Made at the first start (0600, 64 hex digits), kept across a
    restart; a server given a copy shows the same salts (several servers
    behind a load balancer); a file others may read is refused."""
    p = start(tmp_path / "a")
    path = os.path.join(p.spool, "scram.secret")
    try:
        st = os.stat(path)
        assert stat.S_IMODE(st.st_mode) == 0o600
        text = open(path, "rb").read()
        assert len(text) == 65 and text.endswith(b"\n")
        int(text[:64], 16)
        before = server_first(p, UNKNOWN)[:2]
    finally:
        assert p.stop() == 0
    p.start()
    try:
        assert open(path, "rb").read() == text
        assert server_first(p, UNKNOWN)[:2] == before
    finally:
        assert p.stop() == 0
    q = Posternd(tmp_path / "b", users=p.users, listeners=p.listener_spec)
    q.prepare()
    shutil.copy(path, os.path.join(q.spool, "scram.secret"))
    q.start()
    try:
        assert server_first(q, UNKNOWN)[:2] == before
    finally:
        assert q.stop() == 0
    os.chmod(path, 0o640)
    try:
        with pytest.raises(RuntimeError, match="chmod 600"):
            p.start()
    finally:
        p.kill()


def measure(p, user_a, user_b):
    """N samples of each, each the fastest of K timed 334s on fresh
    connections, the two interleaved in a seeded random order."""
    rng = random.Random(f"{SEED}/{user_a}/{user_b}")
    for _ in range(5):
        server_first(p, user_a)
        server_first(p, user_b)
    order = []
    for i in range(N):
        for _ in range(K):
            names = [user_a, user_b]
            rng.shuffle(names)
            order += [(i, n) for n in names]

    def one(task):
        i, name = task
        return i, name, server_first(p, name)[2]

    best = [{user_a: [], user_b: []} for _ in range(N)]
    with ThreadPoolExecutor(THREADS) as pool:
        for i, name, t in pool.map(one, order):
            best[i][name].append(t)
    return ([min(b[user_a]) for b in best], [min(b[user_b]) for b in best])


def figures(a_name, a, b_name, b):
    ma, mb = statistics.median(a), statistics.median(b)
    e = effect_size(a, b)
    return ma, mb, e, (f"334 to AUTH {MECH}: median {a_name} "
                       f"{ma * 1e3:.3f} ms, {b_name} {mb * 1e3:.3f} ms "
                       f"(ratio {ma / mb:.2f}), A = P({a_name} > "
                       f"{b_name}) = {e:.2f}, N = {N} x min of {K}")


def test_server_first_timing_alike(srv):
    """The 334 of an unknown user and of a user with a stored verifier:
    the same distribution (as test_posternd_timing.py judges it)."""
    known, unknown = measure(srv, STORED, UNKNOWN)
    mk, mu, a, text = figures("stored", known, "unknown", unknown)
    print("\n" + text)
    assert 0.5 <= mk / mu <= 2.0, text
    assert 0.2 <= a <= 0.8, text


def test_plain_only_user_figures(srv):
    """For the record (docs/SECURITY.md): a {PLAIN}-only user's keys
    are derived on the thread pool (PBKDF2, 4096 rounds), which shows
    in the 334; nothing is asserted but that it works."""
    plain, unknown = measure(srv, PLAIN_ONLY, UNKNOWN)
    print("\n" + figures("plain-only", plain, "unknown", unknown)[3])
