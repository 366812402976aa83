"""posternd with its users in a real PostgreSQL (userdb = pgsql:CONNINFO).

Each fixture makes a throwaway cluster (pgsql_util.PgCluster: initdb,
pg_ctl start, the users table) and a posternd whose userdb points at it
through the cluster's Unix socket.  Covered: `posternd -t` with a good,
bad and unreachable database and query; every mechanism with a user
stored in the table (smtplib, msmtp, `postern send`); wrong password and
unknown user (535 5.7.8); allow_from from the table (553 5.7.1 otherwise);
rows added, changed and removed taking effect at once; a row that cannot
be used; the database stopped (454 4.7.0, the session goes on; 451 4.3.0
for the sender check) and started again (AUTH works without restarting
posternd); posternd started before its database; a lookup slower than
userdb_timeout (454); 50 concurrent AUTHs; clients that leave while
their lookup is in flight; SIGHUP.
"""
import os
import re
import shutil
import smtplib
import socket
import subprocess
import threading
import time

import pytest

from pgsql_util import PgCluster, verifiers
from postern_client_util import (ALL_MECHS, EX_CONFIG, EX_NOPERM, EX_OK,
                                 FIXED_MSG, PASSWORD, USER, describe,
                                 run_postern)
from posternd_util import (Posternd, b64, postern_bin, posternd_bin,
                           strip_received, unique_rcpt, wait_until)

WRONG = "tanstaaftanstaaX"
REALM = "mail.example.test"
SCHEMES = ["SCRAM-SHA-256", "SCRAM-SHA-1", "CRAM-MD5", "DIGEST-MD5",
           "SHA512-CRYPT"]
ALLOWED = "boss@example.test, @example.org"
TIMEOUT = 30
LISTENERS = {
    "plain": "tls = none\nauth = required\nauth_before_tls = all\n",
    "starttls": "tls = starttls\nauth = required\nauth_before_tls = none\n",
}


class PgPosternd(Posternd):
    """A Posternd whose users are in PostgreSQL (no user file)."""

    def __init__(self, tmp, pg, extra_global="", conninfo=None, **kw):
        self.pg = pg
        self.conninfo = conninfo or pg.conninfo()
        super().__init__(tmp, users={}, listeners=dict(LISTENERS),
                         extra_global=extra_global, **kw)

    def write_config(self):
        super().write_config()
        text = open(self.conf).read()
        old = f"userdb = passwd-file:{self.userfile}\n"
        assert old in text
        text = text.replace(old, f"userdb = pgsql:{self.conninfo}\n")
        with open(self.conf, "w") as f:
            f.write(text)

    def check(self):
        """posternd -t: (exit code, stdout, stderr)."""
        p = subprocess.run([posternd_bin(), "-c", self.conf, "-t"],
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr


def need_posternd():
    if not os.access(posternd_bin(), os.X_OK):
        pytest.fail(f"{posternd_bin()} is not built")


def make_cluster():
    pg = PgCluster()
    try:
        pg.initdb().start().create_schema()
    except BaseException:
        pg.destroy()
        raise
    return pg


def add_tim(pg, allow_from=ALLOWED):
    pg.set_user(USER, verifiers(postern_bin(), USER, PASSWORD, SCHEMES, REALM),
                allow_from)


def stop_checked(p):
    rc = p.stop()
    assert rc == 0, f"posternd exit {rc}:\n{p.log()[-3000:]}"


@pytest.fixture(scope="module")
def pg():
    need_posternd()
    pg = make_cluster()
    try:
        add_tim(pg)
        yield pg
    finally:
        pg.destroy()


@pytest.fixture(scope="module")
def srv(pg, tmp_path_factory):
    p = PgPosternd(tmp_path_factory.mktemp("pgsql"), pg,
                   extra_global="userdb_timeout = 10\n").start()
    try:
        yield p
    finally:
        stop_checked(p)


def auth_plain(srv, user, password, listener="plain"):
    """(code, text) of AUTH PLAIN on a fresh connection."""
    r = srv.raw(listener)
    try:
        assert r.reply()[0] == 220
        assert r.ehlo()[0] == 250
        code, lines = r.login(user, password)
        r.cmd("QUIT")
        return code, lines[-1]
    finally:
        r.close()


# --- posternd -t -----------------------------------------------------------

def test_check_reachable(srv):
    rc, out, err = srv.check()
    assert rc == EX_OK, err
    assert out == (f"posternd: {srv.conf}: configuration OK (2 listeners, "
                   "userdb pgsql: database reachable, query OK)\n"), out
    # DESIGN.md "Privileges": run as root without `user`, -t warns.
    want = "" if os.geteuid() != 0 else (
        f"posternd: {srv.conf}: warning: no user = NAME: started as root, "
        "posternd keeps root's privileges (posternd.conf(5), user)\n")
    assert err == want


def test_check_bad_conninfo(pg, tmp_path):
    p = PgPosternd(tmp_path, pg, conninfo="host=/tmp nosuchoption=1").prepare()
    rc, out, err = p.check()
    assert rc == EX_CONFIG, (out, err)
    assert out == ""
    assert err == (f"posternd: {p.conf}: userdb pgsql: bad connection "
                   'string: invalid connection option "nosuchoption"\n'), err


def test_check_unreachable(pg, tmp_path):
    """No server there: a warning, and exit 0 (posternd starts without its
    database and answers AUTH with 454 until it is back)."""
    missing = str(tmp_path / "no-such-dir")
    p = PgPosternd(tmp_path, pg, conninfo=f"host={missing} port=5 "
                   "dbname=postern user=postgres").prepare()
    rc, out, err = p.check()
    assert rc == EX_OK, err
    assert out == (f"posternd: {p.conf}: configuration OK (2 listeners, "
                   "userdb pgsql: database unreachable)\n"), out
    assert err.startswith(f"posternd: {p.conf}: warning: userdb pgsql: "
                          "cannot connect: "), err
    assert missing in err and "454 4.7.0" in err, err


@pytest.mark.parametrize("query, want", [
    ("SELECT password FROM users WHERE name = $1",
     "the query returns 1 column; want password, allow_from"),
    ("SELECT password, allow_from FROM nosuchtable WHERE name = $1",
     'the server refuses the query: ERROR:  relation "nosuchtable" does '
     "not exist"),
    ("SELECT password, allow_from FROM users WHERE name = $1 AND name = $2",
     "the query takes 2 parameters; want one, $1, the user name"),
    ("SELECT password, allow_from FROM users",
     "the query takes 0 parameters; want one, $1, the user name"),
    ("SELEC password", "the server refuses the query: ERROR:  syntax error"),
], ids=["one-column", "no-table", "two-params", "no-param", "syntax"])
def test_check_bad_query(pg, tmp_path, query, want):
    p = PgPosternd(tmp_path, pg,
                   extra_global=f"userdb_query = {query}\n").prepare()
    rc, out, err = p.check()
    assert rc == EX_CONFIG, (out, err)
    assert out == ""
    assert err.startswith(f"posternd: {p.conf}: userdb pgsql: {want}"), err


def test_check_custom_query(pg, tmp_path):
    p = PgPosternd(tmp_path, pg, extra_global=(
        "userdb_query = SELECT password, allow_from, 1 AS extra FROM users "
        "WHERE lower(name) = lower($1)\n")).prepare()
    rc, out, err = p.check()
    assert rc == EX_OK, err
    assert "database reachable, query OK" in out


@pytest.mark.parametrize("key", ["userdb_query = SELECT 1, 2",
                                 "userdb_timeout = 3"])
def test_pgsql_keys_need_pgsql(tmp_path, key):
    need_posternd()
    p = Posternd(tmp_path, extra_global=key + "\n").prepare()
    r = subprocess.run([posternd_bin(), "-c", p.conf, "-t"],
                       capture_output=True, text=True)
    assert r.returncode == EX_CONFIG, r
    name = key.split()[0]
    assert f"{name} needs userdb = pgsql:CONNINFO" in r.stderr, r.stderr


# --- every mechanism, a user from the table ----------------------------------

def message(rcpt, tag):
    return (f"From: <{USER}>\r\nTo: <{rcpt}>\r\n"
            f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{tag}.{rcpt}>\r\nSubject: {tag}\r\n\r\n"
            f"Hello from {tag}.\r\n").encode()


def last_auth(srv, count, event):
    ev = srv.wait_event(event, count=count)
    assert ev, f"no {event} in the log:\n{srv.log()[-2000:]}"
    return ev[-1]


@pytest.mark.parametrize("ok", [True, False], ids=["ok", "wrong"])
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_smtplib(srv, mech, ok):
    rcpt = unique_rcpt(f"pg-py-{mech}")
    event = "auth_ok" if ok else "auth_failed"
    n = len(srv.events(event))
    sent = message(rcpt, "smtplib")
    s = smtplib.SMTP("127.0.0.1", srv.ports["starttls"], timeout=TIMEOUT)
    try:
        s.ehlo("client.example.test")
        s.starttls(context=srv.ssl_context())
        s.ehlo("client.example.test")
        s.esmtp_features["auth"] = mech
        if ok:
            assert s.login(USER, PASSWORD) == \
                (235, b"2.7.0 Authentication successful")
            assert s.sendmail(USER, [rcpt], sent) == {}
        else:
            with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                s.login(USER, WRONG)
            assert (e.value.smtp_code, e.value.smtp_error) == \
                (535, b"5.7.8 Authentication credentials invalid")
        s.quit()
    finally:
        s.close()
    assert last_auth(srv, n + 1, event)["mech"] == mech
    msgs = srv.messages(rcpt)
    if ok:
        assert len(msgs) == 1 and strip_received(msgs[0]) == sent
    else:
        assert msgs == []


@pytest.mark.parametrize("ok", [True, False], ids=["ok", "wrong"])
@pytest.mark.parametrize("mech", ["DIGEST-MD5", "SCRAM-SHA-1",
                                  "SCRAM-SHA-256"])
def test_msmtp(srv, tmp_path, mech, ok):
    if shutil.which("msmtp") is None:
        pytest.fail("msmtp is not installed; run as root: apt-get update && "
                    "apt-get install -y msmtp (or: tools/deps.sh test)")
    rcpt = unique_rcpt(f"pg-msmtp-{mech}")
    event = "auth_ok" if ok else "auth_failed"
    n = len(srv.events(event))
    body = message(rcpt, "msmtp")
    pwfile = tmp_path / "pw"
    pwfile.write_text((PASSWORD if ok else WRONG) + "\n")
    p = subprocess.run(["msmtp", "-C", "/dev/null", "--host=127.0.0.1",
                        f"--port={srv.ports['plain']}",
                        "--domain=client.example.test",
                        f"--auth={mech.lower()}", f"--user={USER}",
                        f"--passwordeval=cat {pwfile}", f"--from={USER}",
                        f"--timeout={TIMEOUT}", "--tls=off", "--", rcpt],
                       input=body, capture_output=True, timeout=TIMEOUT + 10)
    out = (p.stdout + p.stderr).decode(errors="replace")
    if ok:
        assert p.returncode == 0, out
        msgs = srv.messages(rcpt)
        assert len(msgs) == 1 and strip_received(msgs[0]) == body
    else:
        assert p.returncode == 77, out
        assert "535 5.7.8 Authentication credentials invalid" in out, out
        assert srv.messages(rcpt) == []
    assert last_auth(srv, n + 1, event)["mech"] == mech


@pytest.mark.parametrize("mech", ALL_MECHS)
def test_postern_send(srv, tmp_path, mech):
    rcpt = unique_rcpt(f"pg-send-{mech}")
    n = len(srv.events("auth_ok"))
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD + "\n")
    pwfile.chmod(0o600)
    p = run_postern(["send", "--server", f"smtp://127.0.0.1:"
                     f"{srv.ports['starttls']}", "--timeout", "20",
                     "--cafile", srv.cert, "--user", USER, "--password-file",
                     pwfile, "--mech", mech, "--from", USER, "--to", rcpt],
                    input=FIXED_MSG)
    assert p.returncode == EX_OK, describe(p)
    assert last_auth(srv, n + 1, "auth_ok")["mech"] == mech
    msgs = srv.messages(rcpt)
    assert len(msgs) == 1 and strip_received(msgs[0]) == FIXED_MSG


def test_postern_send_wrong_password(srv, tmp_path):
    pwfile = tmp_path / "pw"
    pwfile.write_text(WRONG + "\n")
    pwfile.chmod(0o600)
    p = run_postern(["send", "--server", f"smtp://127.0.0.1:"
                     f"{srv.ports['starttls']}", "--timeout", "20",
                     "--cafile", srv.cert, "--user", USER, "--password-file",
                     pwfile, "--mech", "SCRAM-SHA-256", "--from", USER,
                     "--to", unique_rcpt("pg-send-wrong")], input=FIXED_MSG)
    assert p.returncode == EX_NOPERM, describe(p)
    assert "535 5.7.8" in p.stderr.decode(), describe(p)


# --- users as the table has them ----------------------------------------------

def test_unknown_user(srv):
    n = len(srv.events("auth_failed"))
    assert auth_plain(srv, "nobody@example.test", PASSWORD) == \
        (535, "535 5.7.8 Authentication credentials invalid")
    ev = last_auth(srv, n + 1, "auth_failed")
    assert (ev["user"], ev["error"]) == ("nobody@example.test", "EAUTH")


def test_name_is_a_parameter(srv, pg):
    """The user name goes to the server as $1, never into the SQL text:
    quotes and SQL in it are just characters of a name."""
    for name in ["x' OR '1'='1", "x'; DROP TABLE users; --@example.test",
                 "%@example.test", "tim@example.test' --"]:
        assert auth_plain(srv, name, PASSWORD)[0] == 535, name
    quoted = "o'brien\\x@example.test"
    pg.set_user(quoted, verifiers(postern_bin(), quoted, "pw-of-o'brien",
                                  ["PLAIN"], REALM))
    try:
        assert auth_plain(srv, quoted, "pw-of-o'brien")[0] == 235
    finally:
        pg.delete_user(quoted)
    assert auth_plain(srv, USER, PASSWORD)[0] == 235
    assert "userdb_query_failed" not in srv.log()


def test_allow_from(srv):
    """MAIL FROM an address the user does not own by name: the table's
    allow_from decides (a list with spaces, an @domain)."""
    r = srv.raw("plain")
    try:
        r.reply()
        r.ehlo()
        assert r.login()[0] == 235
        for sender, want in [
                ("boss@example.test", 250), ("BOSS@Example.Test", 250),
                ("anyone@example.org", 250), ("other@example.test", 553),
                ("boss@example.net", 553), (USER, 250)]:
            code, lines = r.cmd(f"MAIL FROM:<{sender}>")
            assert code == want, (sender, lines)
            if code == 553:
                assert lines[-1].startswith("553 5.7.1 "), lines
            else:
                assert r.cmd("RSET")[0] == 250
    finally:
        r.close()
    assert srv.events("sender_refused", sender="other@example.test")


def test_rows_take_effect_at_once(srv, pg):
    """No reload: a user added works, a password changed changes, a
    user removed is gone, allow_from changed applies."""
    name = "newbie@example.test"
    assert auth_plain(srv, name, "first-pw")[0] == 535
    pg.set_user(name, verifiers(postern_bin(), name, "first-pw",
                                ["SHA512-CRYPT"], REALM))
    assert auth_plain(srv, name, "first-pw")[0] == 235
    pg.set_user(name, verifiers(postern_bin(), name, "second-pw",
                                ["PLAIN"], REALM), "x@example.net")
    assert auth_plain(srv, name, "first-pw")[0] == 535
    assert auth_plain(srv, name, "second-pw")[0] == 235
    r = srv.raw("plain")
    try:
        r.reply()
        r.ehlo()
        assert r.login(name, "second-pw")[0] == 235
        assert r.cmd("MAIL FROM:<x@example.net>")[0] == 250
        assert r.cmd("RSET")[0] == 250
        pg.set_user(name, verifiers(postern_bin(), name, "second-pw",
                                    ["PLAIN"], REALM), None)
        assert r.cmd("MAIL FROM:<x@example.net>")[0] == 553
    finally:
        r.close()
    pg.delete_user(name)
    assert auth_plain(srv, name, "second-pw")[0] == 535
    assert "reloaded" not in srv.log()


def test_unusable_row(srv, pg):
    """A password column that is no verifier: 535 like a wrong password,
    the reason in the log only."""
    name = "broken@example.test"
    pg.set_user(name, "{CRAM-MD5}not-hex")
    try:
        assert auth_plain(srv, name, "whatever")[0] == 535
        ev = srv.wait_event("userdb_bad_row", user=name)
        assert ev and "CRAM-MD5" in ev[-1]["reason"], srv.log()[-2000:]
    finally:
        pg.delete_user(name)


def test_concurrent_auths(srv, pg):
    """50 clients at once, right and wrong passwords and unknown users,
    on a pool of four connections: every one gets its own answer."""
    cases = []
    for i in range(50):
        kind = ("ok", "wrong", "unknown")[i % 3]
        user = USER if kind != "unknown" else f"ghost{i}@example.test"
        cases.append((kind, user, WRONG if kind == "wrong" else PASSWORD))
    results = [None] * len(cases)
    start = threading.Barrier(len(cases))

    def run(i):
        kind, user, pw = cases[i]
        try:
            start.wait(timeout=30)
            results[i] = auth_plain(srv, user, pw)
        except Exception as e:  # noqa: BLE001 - reported below
            results[i] = ("error", repr(e))

    threads = [threading.Thread(target=run, args=(i,))
               for i in range(len(cases))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for (kind, user, _), got in zip(cases, results):
        want = (235, "235 2.7.0 Authentication successful") if kind == "ok" \
            else (535, "535 5.7.8 Authentication credentials invalid")
        assert got == want, (kind, user, got)
    # Never more connections than the pools hold: four per worker (each
    # event loop has its own pool; "started ... workers=N" says how many).
    m = re.search(r"event=started .*workers=(\d+)", srv.log())
    assert m, srv.log()
    workers = int(m.group(1))
    n = int(pg.psql("SELECT count(*) FROM pg_stat_activity WHERE "
                    "application_name = 'posternd';", db="postgres"))
    assert 1 <= n <= 4 * workers, (n, workers)


def test_reload_keeps_serving(srv):
    r = srv.raw("plain")
    try:
        r.reply()
        r.ehlo()
        n = len(srv.events("reloaded"))
        srv.hup()
        assert srv.wait_event("reloaded", count=n + 1), srv.log()[-2000:]
        # No user count for PostgreSQL (it would take a query).
        assert srv.events("reloaded")[-1].get("userdb") == "pgsql"
        assert "users" not in srv.events("reloaded")[-1]
        # The connection made before the reload, and a new one.
        assert r.login()[0] == 235
        assert auth_plain(srv, USER, PASSWORD)[0] == 235
    finally:
        r.close()


# --- the database away, slow, late -------------------------------------------

@pytest.fixture
def own_pg():
    need_posternd()
    pg = make_cluster()
    try:
        add_tim(pg)
        yield pg
    finally:
        pg.destroy()


def test_auth_454_store_unavailable(own_pg, tmp_path):
    """RFC 4954 §6: 454 4.7.0 while the database is down, at once, and the
    session goes on; MAIL's sender check gets 451 4.3.0.  Started again,
    the database serves AUTH without a restart of posternd."""
    pg = own_pg
    p = PgPosternd(tmp_path, pg, extra_global="userdb_timeout = 10\n").start()
    try:
        r = p.raw("plain")
        r.reply()
        r.ehlo()
        assert r.login()[0] == 235          # connected to the database
        pg.stop()
        assert p.wait_event("userdb_disconnected"), p.log()[-2000:]
        code, lines = r.cmd("MAIL FROM:<boss@example.test>")
        assert (code, lines[-1]) == (451, "451 4.3.0 Error: sender check "
                                     "failed, try again later"), lines
        r.close()
        r = p.raw("plain")
        r.reply()
        r.ehlo()
        t0 = time.time()
        code, lines = r.login()
        assert (code, lines[-1]) == \
            (454, "454 4.7.0 Temporary authentication failure"), lines
        assert time.time() - t0 < 5, "454 only after the lookup timeout"
        # The session goes on: not authenticated, still talking.
        assert r.cmd("NOOP")[0] == 250
        assert r.cmd("MAIL FROM:<tim@example.test>")[0] == 530
        code, lines = r.login()
        assert code == 454, lines
        ev = p.events("auth_failed", error="ETEMP")
        assert len(ev) >= 2, p.log()[-2000:]
        assert p.events("userdb_down"), p.log()[-2000:]
        pg.start()
        # Back without a restart, within the reconnection delay (new
        # connections: each 454 counts towards max_errors).
        assert wait_until(lambda: auth_plain(p, USER, PASSWORD)[0] == 235,
                          timeout=20, interval=0.2), p.log()[-3000:]
        assert p.wait_event("userdb_up", count=2)
        # The session that got the 454s, too: its event loop has its own
        # pool, back at the end of that pool's reconnection delay (at most
        # USERDB_PGSQL_BACKOFF_MAX_MS); until then its AUTH gets 454.
        codes = []
        assert wait_until(lambda: codes.append(r.login()[0]) or
                          codes[-1] == 235, timeout=20, interval=0.5), codes
        assert set(codes[:-1]) <= {454}, codes
        assert r.cmd("MAIL FROM:<boss@example.test>")[0] == 250
        r.close()
    finally:
        stop_checked(p)


def test_started_before_the_database(own_pg, tmp_path):
    pg = own_pg
    pg.stop()
    p = PgPosternd(tmp_path, pg).start()
    try:
        assert auth_plain(p, USER, PASSWORD) == \
            (454, "454 4.7.0 Temporary authentication failure")
        pg.start()
        assert wait_until(lambda: auth_plain(p, USER, PASSWORD)[0] == 235,
                          timeout=20, interval=0.2), p.log()[-3000:]
    finally:
        stop_checked(p)


def test_tcp_conninfo(own_pg, tmp_path):
    """The database over TCP (hostaddr=127.0.0.1) rather than its socket."""
    p = PgPosternd(tmp_path, own_pg, conninfo=own_pg.conninfo(tcp=True))
    p.start()
    try:
        assert p.check()[0] == EX_OK
        assert auth_plain(p, USER, PASSWORD)[0] == 235
        assert auth_plain(p, USER, WRONG)[0] == 535
    finally:
        stop_checked(p)


def test_query_refused_at_run_time(own_pg, tmp_path):
    """posternd does not check the query when it starts (the database may
    be away): a query the server refuses makes AUTH 454 4.7.0, with the
    server's reason logged, and the session goes on."""
    p = PgPosternd(tmp_path, own_pg, extra_global=(
        "userdb_query = SELECT password, nosuchcolumn FROM users "
        "WHERE name = $1\n")).start()
    try:
        r = p.raw("plain")
        try:
            r.reply()
            r.ehlo()
            code, lines = r.login()
            assert (code, lines[-1]) == \
                (454, "454 4.7.0 Temporary authentication failure"), lines
            assert r.cmd("NOOP")[0] == 250
        finally:
            r.close()
        ev = p.wait_event("userdb_query_failed", user=USER)
        assert ev and 'column "nosuchcolumn" does not exist' in \
            ev[-1]["error"], p.log()[-2000:]
    finally:
        stop_checked(p)


SLOW = ("userdb_query = SELECT u.password, u.allow_from FROM users u, "
        "pg_sleep({s}) WHERE u.name = $1\n")


def test_lookup_timeout(own_pg, tmp_path):
    """A lookup slower than userdb_timeout: 454 4.7.0 after the timeout."""
    p = PgPosternd(tmp_path, own_pg, extra_global=(
        SLOW.format(s=3) + "userdb_timeout = 1\n")).start()
    try:
        t0 = time.time()
        assert auth_plain(p, USER, PASSWORD) == \
            (454, "454 4.7.0 Temporary authentication failure")
        took = time.time() - t0
        assert 0.9 <= took < 2.9, took
        assert p.wait_event("userdb_timeout", user=USER)
    finally:
        stop_checked(p)


def test_client_leaves_during_lookup(own_pg, tmp_path):
    """Clients that close while their lookup runs (pg_sleep): posternd
    drops the answers and goes on serving."""
    p = PgPosternd(tmp_path, own_pg, extra_global=(
        SLOW.format(s=1) + "userdb_timeout = 10\n")).start()
    try:
        socks = []
        for _ in range(12):
            s = socket.create_connection(("127.0.0.1", p.ports["plain"]))
            s.sendall(b"EHLO x\r\nAUTH PLAIN " +
                      b64(f"\0{USER}\0{PASSWORD}").encode() + b"\r\n")
            socks.append(s)
        # Their lookups are in flight: the session waits for them.
        assert wait_until(lambda: len(p.events("connect")) >= 12)
        time.sleep(0.3)
        for s in socks:
            s.close()
        # (Two more: Posternd.start() probing the listeners.)
        assert p.wait_event("disconnect", count=14), p.log()[-3000:]
        # Every query ends on the server; posternd still serves.
        assert auth_plain(p, USER, PASSWORD) == \
            (235, "235 2.7.0 Authentication successful")
        assert p.proc.poll() is None
        # Only that last one: the others' answers were dropped.
        assert len(p.events("auth_ok")) == 1, p.log()[-3000:]
    finally:
        stop_checked(p)


def test_lookup_in_flight_at_shutdown(own_pg, tmp_path):
    """SIGTERM while a lookup runs: the session finishes within the grace
    period and posternd exits 0."""
    p = PgPosternd(tmp_path, own_pg, extra_global=(
        SLOW.format(s=1) + "grace_period = 5\n")).start()
    r = p.raw("plain")
    try:
        r.reply()
        r.ehlo()
        r.send("AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}") + "\r\n")
        time.sleep(0.2)
        p.proc.send_signal(15)
        assert r.reply()[0] == 235
    finally:
        r.close()
        assert p.wait_exit() == 0, p.log()[-2000:]
