"""Scale-out (issue 16, DESIGN.md "Scale"): Debian's HAProxy on one port
in front of two posternd instances (send-proxy-v2, health checks with
the PROXY header too), both with their users in one PostgreSQL (a
private cluster) and delivering into one shared mail store.

200 sessions (STARTTLS, AUTH PLAIN, one message each) from clients bound
to 127.0.0.2 and 127.0.0.3 go through HAProxy: every message is
delivered, the sessions are split across both instances, each instance
logs the true client addresses (never the balancer's), and the throttle
locks out the address that guesses passwords while the other one behind
the same balancer goes on.  The figures it measures are printed and
recorded in docs/operations.md.
"""
import concurrent.futures
import os
import shutil
import smtplib
import socket
import ssl
import subprocess
import time

import pytest

from pgsql_util import PgCluster, verifiers
from posternd_util import (Posternd, SMTPRaw, b64, free_port, postern_bin,
                           wait_until)

SESSIONS = 200
CONCURRENCY = 20
USERS = [f"dev{i:02d}@example.test" for i in range(10)]
PASSWORD = "scale-out-secret"
CLIENTS = ("127.0.0.2", "127.0.0.3")

pytestmark = pytest.mark.skipif(shutil.which("haproxy") is None,
                                reason="no haproxy (Debian package haproxy)")

LISTENER = ("tls = starttls\nauth = required\nauth_before_tls = none\n"
            "mechanisms = SCRAM-SHA-256 PLAIN LOGIN\n"
            "proxy_protocol = v2\nproxy_from = 127.0.0.1/32\n")


class PgInstance(Posternd):
    """A posternd behind the balancer: users in PostgreSQL, mail in the
    shared store."""

    def __init__(self, tmp, pg, mail_root, cert_dir):
        self.pgconn = pg.conninfo()
        super().__init__(tmp, users={}, listeners={"lb": LISTENER},
                         extra_global=(
                             "auth_throttle = yes\n"
                             "auth_throttle_delay = 0\n"
                             "auth_throttle_max_delay = 0\n"
                             "auth_throttle_lockout_failures = 3\n"
                             "auth_failure_delay = 0\n"
                             "userdb_timeout = 10\n"))
        self.maildir_root = mail_root
        # One certificate for the service name, as a real pair would share.
        self.cert = os.path.join(cert_dir, "cert.pem")
        self.key = os.path.join(cert_dir, "key.pem")

    def write_config(self):
        super().write_config()
        text = open(self.conf).read()
        text = text.replace(f"userdb = passwd-file:{self.userfile}\n",
                            f"userdb = pgsql:{self.pgconn}\n")
        with open(self.conf, "w") as f:
            f.write(text)


class HAProxy:
    def __init__(self, tmp, backends):
        self.dir = str(tmp)
        self.port = free_port()
        self.cfg = os.path.join(self.dir, "haproxy.cfg")
        self.logfile = os.path.join(self.dir, "haproxy.log")
        servers = "".join(
            f"    server p{i} 127.0.0.1:{port} send-proxy-v2 check "
            f"check-send-proxy inter 1s\n"
            for i, port in enumerate(backends, 1))
        with open(self.cfg, "w") as f:
            f.write("global\n"
                    "    maxconn 2000\n"
                    "defaults\n"
                    "    mode tcp\n"
                    "    timeout connect 5s\n"
                    "    timeout client 60s\n"
                    "    timeout server 60s\n"
                    "frontend submission\n"
                    f"    bind 127.0.0.1:{self.port}\n"
                    "    default_backend posternd\n"
                    "backend posternd\n"
                    "    balance roundrobin\n" + servers)
        self.proc = None

    def start(self):
        p = subprocess.run(["haproxy", "-c", "-f", self.cfg],
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stdout + p.stderr
        self.log = open(self.logfile, "wb")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", self.cfg],
                                     stdout=self.log, stderr=self.log)
        deadline = time.time() + 15
        while time.time() < deadline:
            assert self.proc.poll() is None, open(self.logfile).read()
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("haproxy did not start")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


@pytest.fixture(scope="module")
def farm(tmp_path_factory):
    pg = PgCluster()
    instances, lb = [], None
    try:
        pg.initdb().start().create_schema()
        for u in USERS:
            pg.set_user(u, verifiers(postern_bin(), u, PASSWORD,
                                     ["SHA512-CRYPT"], "mail.example.test"))
        base = tmp_path_factory.mktemp("scaleout")
        mail = str(base / "mail")
        os.makedirs(mail)
        subprocess.run([os.path.join(os.path.dirname(__file__), "..", "..",
                                     "tools", "gen-cert.sh"), "-t", "ec",
                        "mail.example.test", str(base)], check=True,
                       capture_output=True)
        for i in (1, 2):
            instances.append(PgInstance(base / f"posternd{i}", pg, mail,
                                        str(base)).start())
        lb = HAProxy(base, [p.ports["lb"] for p in instances]).start()
        yield pg, instances, lb, mail
    finally:
        if lb is not None:
            lb.stop()
        rcs = [p.stop() for p in instances]
        pg.destroy()
        assert rcs == [0] * len(instances)


def session(lb_port, n):
    """One client session through the balancer; returns (source,
    seconds)."""
    source = CLIENTS[n % 2]
    user = USERS[n % len(USERS)]
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    t0 = time.monotonic()
    with smtplib.SMTP("127.0.0.1", lb_port, timeout=30,
                      source_address=(source, 0)) as s:
        s.ehlo("client.example.test")
        s.starttls(context=ctx)
        s.ehlo("client.example.test")
        s.login(user, PASSWORD)
        msg = (f"From: <{user}>\r\nTo: <box@example.test>\r\n"
               f"Subject: scale-out {n}\r\n"
               f"Message-ID: <scale-{n}@example.test>\r\n\r\n"
               f"Session {n} from {source}.\r\n")
        refused = s.sendmail(user, ["box@example.test"], msg)
        assert refused == {}
    return source, time.monotonic() - t0


def test_200_sessions_through_haproxy(farm):
    pg, instances, lb, mail = farm
    t0 = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(CONCURRENCY) as ex:
        results = list(ex.map(lambda n: session(lb.port, n),
                              range(SESSIONS)))
    elapsed = time.monotonic() - t0
    # Every message delivered, once, into the shared store.
    new = os.path.join(mail, "example.test", "box", "new")
    assert wait_until(lambda: len(os.listdir(new)) == SESSIONS, 10)
    subjects = set()
    for name in os.listdir(new):
        with open(os.path.join(new, name), "rb") as f:
            for line in f:
                if line.startswith(b"Subject: scale-out "):
                    subjects.add(int(line.split()[2]))
    assert subjects == set(range(SESSIONS))
    # Split across both instances, and each logged the true clients.
    per = []
    for p in instances:
        accepted = p.events("message_accepted")
        sids = {e["sid"] for e in accepted}
        peers = {}
        for e in p.events("connect"):
            if e["sid"] in sids:
                peers[e["peer"]] = peers.get(e["peer"], 0) + 1
        assert set(peers) <= set(CLIENTS), peers
        assert sum(peers.values()) == len(accepted)
        # The header's client in the proxy line, the balancer as proxy=.
        for e in p.events("proxy"):
            if e["sid"] in sids:
                assert e["peer"] in CLIENTS and e["proxy"] == "127.0.0.1"
        for e in p.events("auth_ok"):
            assert e["peer"] in CLIENTS, e
        per.append((len(accepted), peers))
    counts = [n for n, _ in per]
    assert sum(counts) == SESSIONS
    assert min(counts) >= SESSIONS // 4, counts   # round robin: ~100 each
    for client in CLIENTS:
        assert sum(peers.get(client, 0) for _, peers in per) == SESSIONS // 2
    times = sorted(t for _, t in results)
    print(f"\nscale-out: {SESSIONS} sessions, {CONCURRENCY} at a time, "
          f"{elapsed:.2f} s, {SESSIONS / elapsed:.0f} sessions/s; "
          f"per session p50 {times[len(times) // 2] * 1000:.0f} ms, "
          f"p95 {times[int(len(times) * 0.95)] * 1000:.0f} ms; "
          f"split {counts}")
    assert elapsed < 45


def test_throttle_by_the_true_address(farm):
    """127.0.0.3 guesses passwords through the balancer until both
    instances lock it out; 127.0.0.2, behind the same balancer, is not
    locked out anywhere."""
    pg, instances, lb, mail = farm
    replies = []
    for i in range(20):
        s = socket.socket()
        s.settimeout(10)
        s.bind(("127.0.0.3", 0))
        s.connect(("127.0.0.1", lb.port))
        r = SMTPRaw.__new__(SMTPRaw)
        r.sock, r.buf, r.timeout = s, b"", 10
        code, _ = r.reply()
        if code == 220:
            r.ehlo()
            assert r.cmd("STARTTLS")[0] == 220
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            r.starttls(ctx)
            r.ehlo()
            code = r.cmd("AUTH PLAIN " +
                         b64(f"\0{USERS[0]}\0guess-{i}"))[0]
        r.close()
        replies.append(code)
        if replies[-2:] == [421, 421]:
            break
    assert replies[-2:] == [421, 421], replies
    assert 535 in replies
    for p in instances:
        assert p.wait_event("connect", peer="127.0.0.3",
                            refused="auth lockout"), p.log()[-2000:]
        assert not p.events("connect", peer="127.0.0.2",
                            refused="auth lockout")
        assert not p.events("auth_lockout", peer="127.0.0.2")
    # The other client still logs in, on both instances.
    for _ in range(2):
        source, _ = session(lb.port, 0)
        assert source == "127.0.0.2"
    before = sum(len(p.events("auth_ok", peer="127.0.0.2"))
                 for p in instances)
    assert before >= SESSIONS // 2 + 2
