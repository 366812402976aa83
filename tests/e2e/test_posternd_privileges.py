"""posternd's privilege drop (DESIGN.md "Privileges", `user = NAME`).

Started as root with `user`, posternd must read its TLS key and user
file (both root's alone here, mode 0600) and bind as root, then run as
the user for good: /proc/PID/status shows the user's ids in all four
places (real, effective, saved, filesystem), the user's group as the
only supplementary group and no capability (so setuid(0) cannot
succeed), and /proc/PID belongs to root (PR_SET_DUMPABLE 0).  It must
still deliver (as the user: the Maildir files are the user's), serve
STARTTLS with the key it read as root, and reload on SIGHUP: what the
user may read is read again, the root-only key and user file stay as
loaded (reload_kept).

Without `user`, a posternd started as root works as before but warns
(running_as_root, and in posternd -t).  posternd -t names the user and
says which directories the user cannot write: the spool (an error) and
the mailboxes (warnings).

The tests run as root (the drop needs it) with a user of their own,
postern-e2e, made with useradd if missing.
"""
import os
import pwd
import re
import shutil
import smtplib
import subprocess
import tempfile

import pytest

from posternd_util import (Posternd, make_message, postern_bin, posternd_bin,
                           unique_rcpt)
from test_posternd_scram_probe import UNKNOWN, secret_salt, server_first

TEST_USER = "postern-e2e"
PW = "tanstaaftanstaaf"
USER = "tim@example.test"

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="the privilege drop needs root")


def need_posternd():
    if not os.access(posternd_bin(), os.X_OK):
        pytest.fail(f"{posternd_bin()} is not built")


@pytest.fixture(scope="module")
def account():
    """The test user (uid, gid), made if missing."""
    try:
        pw = pwd.getpwnam(TEST_USER)
    except KeyError:
        p = subprocess.run(["useradd", "--system", "--user-group",
                            "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", TEST_USER],
                           capture_output=True, text=True)
        # 9: made meanwhile by a test run next to this one.
        assert p.returncode in (0, 9), p.stderr
        pw = pwd.getpwnam(TEST_USER)
    assert pw.pw_uid != 0 and pw.pw_gid != 0
    return pw.pw_uid, pw.pw_gid


@pytest.fixture
def base():
    """A directory the test user can reach (pytest's tmp_path is under a
    root-only 0700 directory)."""
    d = tempfile.mkdtemp(prefix="postern-priv-")
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def prepared(base, account, user=TEST_USER, **kw):
    """A Posternd in base whose spool and mail root are the user's, the
    key and the user file root's alone."""
    uid, gid = account
    extra = kw.pop("extra_global", "")
    if user is not None:
        extra = f"user = {user}\n" + extra
    p = Posternd(base, extra_global=extra, **kw).prepare()
    for d in (p.spool, p.maildir_root):
        os.chown(d, uid, gid)
    for f in (p.key, p.userfile):
        os.chmod(f, 0o600)
        assert os.stat(f).st_uid == 0
    return p


def status(pid):
    """/proc/PID/status as a dict of its lines."""
    out = {}
    for line in open(f"/proc/{pid}/status"):
        k, _, v = line.partition(":")
        out[k] = v.split()
    return out


def check(conf):
    return subprocess.run([posternd_bin(), "-c", conf, "-t"],
                          capture_output=True, text=True, timeout=60)


def send(p, rcpt, listener="plain", tls=False):
    """Log in and send one message; returns its bytes."""
    msg = make_message(subject="as the user", to=rcpt)
    s = smtplib.SMTP("127.0.0.1", p.ports[listener], timeout=20)
    try:
        s.ehlo("client.example.test")
        if tls:
            s.starttls(context=p.ssl_context())
            s.ehlo("client.example.test")
        s.login(USER, PW)
        s.sendmail(USER, [rcpt], msg)
    finally:
        s.quit()
    return msg


def add_user(p, name, password=PW):
    r = subprocess.run([postern_bin(), "user", "add", "-f", p.userfile, name,
                        "-s", "SCRAM-SHA-256,CRAM-MD5,SHA512-CRYPT", "-r",
                        p.hostname], input=password + "\n",
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# --- The drop -------------------------------------------------------------

@pytest.mark.parametrize("env", [{}, {"POSTERN_MAILDIR_NO_TMPFILE": "1"}],
                         ids=["tmpfile", "named-spool-files"])
def test_runs_as_user_and_delivers(base, account, env):
    need_posternd()
    uid, gid = account
    p = prepared(base, account, env=env).start()
    try:
        st = status(p.proc.pid)
        assert st["Uid"] == [str(uid)] * 4, st["Uid"]
        assert st["Gid"] == [str(gid)] * 4, st["Gid"]
        assert st["Groups"] == [str(gid)], st["Groups"]
        # No capability left: setuid(0) cannot succeed.
        for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
            assert int(st[cap][0], 16) == 0, (cap, st[cap])
        # PR_SET_DUMPABLE 0: the kernel gives the private files of
        # /proc/PID to root (task_dump_owner()); a dumpable process owns
        # them.
        for name in ("environ", "fd"):
            assert os.stat(f"/proc/{p.proc.pid}/{name}").st_uid == 0, name
        ev = p.wait_event("privileges_dropped")
        assert ev and ev[0]["user"] == TEST_USER, p.log()
        assert ev[0]["uid_gid"] == f"{uid}:{gid}"
        assert not p.events("running_as_root")
        # Bound before the drop, served after it.
        rcpt = unique_rcpt("priv")
        msg = send(p, rcpt)
        got = p.messages(rcpt)
        assert len(got) == 1 and got[0].endswith(msg)
        new = os.path.join(p.maildir(rcpt), "new")
        for path in [new, os.path.join(new, os.listdir(new)[0]),
                     p.maildir(rcpt)]:
            s = os.stat(path)
            assert (s.st_uid, s.st_gid) == (uid, gid), path
        assert os.stat(os.path.join(p.spool, "tmp")).st_uid == uid
        # The key only root may read was read before the drop.
        rcpt = unique_rcpt("priv-tls")
        send(p, rcpt, listener="starttls", tls=True)
        assert len(p.messages(rcpt)) == 1
    finally:
        assert p.stop() == 0, p.log()[-3000:]


def test_scram_secret_and_the_drop(base, account):
    """scram_secret_file is read at start-up, before the drop: made by
    root, it is the user's (0600), like the spool it is in, so that a
    start as the user and posternd -t read it too; one only root may
    read serves as well (the TLS key's way).  Either way the salts are
    HMAC(secret, user NUL mechanism)."""
    need_posternd()
    uid, gid = account
    p = prepared(base, account)
    path = os.path.join(p.spool, "scram.secret")
    p.start()
    try:
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (uid, gid)
        assert st.st_mode & 0o777 == 0o600
        secret = open(path, "rb").read().rstrip(b"\n")
        assert len(secret) == 64
        assert server_first(p, UNKNOWN)[:2] == \
            (secret_salt(secret, UNKNOWN), "4096")
    finally:
        assert p.stop() == 0, p.log()[-3000:]
    t = check(p.conf)
    assert (t.returncode, t.stderr) == (0, ""), t.stderr
    # Root's alone now: read before the drop, the same salts.
    os.chown(path, 0, 0)
    p.start()
    try:
        assert open(path, "rb").read().rstrip(b"\n") == secret
        assert server_first(p, UNKNOWN)[:2] == \
            (secret_salt(secret, UNKNOWN), "4096")
        assert status(p.proc.pid)["Uid"] == [str(uid)] * 4
        # A reload does not read it again (the user could not).
        p.hup()
        assert p.wait_event("reloaded", count=1), p.log()
        assert server_first(p, UNKNOWN)[:2] == \
            (secret_salt(secret, UNKNOWN), "4096")
    finally:
        assert p.stop() == 0, p.log()[-3000:]


def test_reload_as_user(base, account):
    need_posternd()
    uid, gid = account
    p = prepared(base, account).start()
    try:
        # Everything root's alone stays as loaded; the rest is re-read.
        p.hup()
        assert p.wait_event("reloaded", count=1), p.log()
        kept = {e["what"]: e for e in p.events("reload_kept")}
        assert set(kept) == {"user file", "tls_cert and tls_key"}, kept
        assert kept["user file"]["file"] == p.userfile
        assert kept["tls_cert and tls_key"]["file"] == p.key
        assert kept["user file"]["uid"] == str(uid)
        assert not p.events("reload_failed")
        rcpt = unique_rcpt("priv-reload")
        send(p, rcpt, listener="starttls", tls=True)
        assert len(p.messages(rcpt)) == 1
        # Given to the user's group, the user file is read again.
        add_user(p, "new@example.test")
        os.chown(p.userfile, 0, gid)
        os.chmod(p.userfile, 0o640)
        p.hup()
        assert p.wait_event("reloaded", count=2), p.log()
        assert p.events("reloaded")[1]["users"] == "2"
        assert len(p.events("reload_kept")) == 3
        s = smtplib.SMTP("127.0.0.1", p.ports["plain"], timeout=20)
        try:
            s.ehlo("client.example.test")
            assert s.login("new@example.test", PW)[0] == 235
        finally:
            s.quit()
        # A user file broken now: refused, the previous one serves.
        with open(p.userfile, "a") as f:
            f.write("bad@example.test:{NOPE}x\n")
        p.hup()
        assert p.wait_event("reload_failed", count=1)
        # The user cannot change without a restart.
        text = open(p.conf).read().replace(f"user = {TEST_USER}",
                                           "user = nobody")
        open(p.conf, "w").write(text)
        with open(p.userfile, "w") as f:
            f.write(open(p.userfile).read().replace(
                "bad@example.test:{NOPE}x\n", ""))
        p.hup()
        assert p.wait_event("reload_failed", count=2)
        assert p.events("reload_failed")[1]["error"] == \
            "user changed; restart posternd to change it"
        assert status(p.proc.pid)["Uid"] == [str(uid)] * 4
        rcpt = unique_rcpt("priv-after")
        send(p, rcpt)
        assert len(p.messages(rcpt)) == 1
    finally:
        assert p.stop() == 0, p.log()[-3000:]


def test_spool_not_writable_stops_start(base, account):
    """A spool/tmp left root's (by a posternd that ran as root): posternd
    stops at start-up saying so, rather than answer 451 to every
    message."""
    need_posternd()
    p = prepared(base, account)
    tmp = os.path.join(p.spool, "tmp")
    os.makedirs(tmp, exist_ok=True)
    os.chown(tmp, 0, 0)
    os.chmod(tmp, 0o700)
    with pytest.raises(RuntimeError):
        p.start(timeout=10)
    assert p.proc.returncode == 78, p.log()
    ev = p.events("not_writable")
    assert len(ev) == 1, p.log()
    assert ev[0]["error"] == (f"spool {tmp}: not writable by {TEST_USER} "
                              f"(uid {account[0]}): owner uid 0, mode 0700")


def test_user_must_start_as_root_or_itself(base, account):
    need_posternd()
    p = prepared(base, account, user="nobody")
    uid, gid = account
    os.chmod(p.key, 0o644)
    os.chmod(p.userfile, 0o644)

    def become():
        os.setgroups([gid])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)

    # The build may sit where the account cannot go (a checkout under
    # /root, mode 0700): a copy of the binary (linked statically with
    # libpostern) beside the configuration.
    exe = os.path.join(p.dir, "posternd")
    shutil.copy(posternd_bin(), exe)
    os.chmod(exe, 0o755)
    r = subprocess.run([exe, "-c", p.conf], preexec_fn=become,
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 78, r.stderr
    assert re.search(r"event=privileges_failed user=nobody error=\"posternd "
                     rf"runs as uid {uid}: start it as root \(or as nobody\)",
                     r.stderr), r.stderr


# --- Without user -----------------------------------------------------------

def test_root_without_user_warns(tmp_path):
    need_posternd()
    p = Posternd(tmp_path).start()
    try:
        ev = p.wait_event("running_as_root")
        assert ev, p.log()
        assert "no user = NAME" in ev[0]["reason"]
        assert not p.events("privileges_dropped")
        assert status(p.proc.pid)["Uid"] == ["0"] * 4
        rcpt = unique_rcpt("root")
        send(p, rcpt)
        assert len(p.messages(rcpt)) == 1
    finally:
        assert p.stop() == 0
    t = check(p.conf)
    assert t.returncode == 0, t.stderr
    assert t.stdout == (f"posternd: {p.conf}: configuration OK "
                        "(4 listeners, 1 user)\n")
    assert t.stderr == (f"posternd: {p.conf}: warning: no user = NAME: "
                        "started as root, posternd keeps root's privileges "
                        "(posternd.conf(5), user)\n")


# --- posternd -t -------------------------------------------------------------

def test_check_names_the_user(base, account):
    need_posternd()
    p = prepared(base, account)
    t = check(p.conf)
    assert t.returncode == 0, t.stderr
    assert t.stdout == (f"posternd: {p.conf}: configuration OK "
                        f"(4 listeners, 1 user, runs as {TEST_USER})\n")
    assert t.stderr == ""
    # -t made the spool's tmp/, and made it the user's.
    assert os.stat(os.path.join(p.spool, "tmp")).st_uid == account[0]


def test_check_unwritable_mailboxes_and_spool(base, account):
    need_posternd()
    uid, gid = account
    p = prepared(base, account)
    # Mailboxes made by a posternd that ran as root, and one of the user's.
    roots = []
    def maildir(path):
        for sub in ("cur", "new", "tmp"):
            os.makedirs(os.path.join(path, sub))
        for top, dirs, _ in os.walk(os.path.dirname(path)):
            os.chmod(top, 0o700)

    for local in ("ann", "bob"):
        d = os.path.join(p.maildir_root, "example.test", local)
        maildir(d)
        roots.append(d)
    ok = os.path.join(p.maildir_root, "example.org", "cat")
    maildir(ok)
    for top, dirs, _ in os.walk(os.path.join(p.maildir_root, "example.org")):
        os.chown(top, uid, gid)
    os.chown(os.path.join(p.maildir_root, "example.test"), uid, gid)
    # bob's new/ stayed root's; ann's whole Maildir did.
    for top, dirs, _ in os.walk(roots[1]):
        os.chown(top, uid, gid)
    os.chown(os.path.join(roots[1], "new"), 0, 0)
    os.symlink("/etc", os.path.join(p.maildir_root, "example.test", "eve"))
    t = check(p.conf)
    assert t.returncode == 0, t.stderr
    assert t.stdout.endswith(f"runs as {TEST_USER})\n"), t.stdout
    who = f"{TEST_USER} (uid {uid})"
    want = {
        f"posternd: {p.conf}: warning: mailbox {roots[0]}: not writable by "
        f"{who}: owner uid 0, mode 0700; delivery to it fails with 451 "
        "4.3.0",
        f"posternd: {p.conf}: warning: mailbox {roots[1]}/new: not "
        f"writable by {who}: owner uid 0, mode 0700; delivery to it fails "
        "with 451 4.3.0",
        f"posternd: {p.conf}: warning: mailbox {p.maildir_root}/"
        "example.test/eve: a symbolic link (delivery refuses to follow it)",
    }
    assert set(t.stderr.splitlines()) == want, t.stderr
    # The spool: an error, and -t fails.
    os.chown(p.spool, 0, 0)
    os.chmod(p.spool, 0o700)
    t = check(p.conf)
    assert t.returncode == 78, (t.stdout, t.stderr)
    assert t.stdout == ""
    assert (f"posternd: {p.conf}: spool {p.spool}: not writable by {who}: "
            "owner uid 0, mode 0700\n") in t.stderr, t.stderr


@pytest.mark.parametrize("user, want", [
    ("postern-no-such-user", "user = postern-no-such-user: no such user"),
    ("root", "user = root: has uid 0 (root); name an unprivileged user of "
             "its own (posternd.conf(5))"),
])
def test_check_bad_user(base, account, user, want):
    need_posternd()
    p = prepared(base, account, user=user)
    t = check(p.conf)
    assert t.returncode == 78, (t.stdout, t.stderr)
    assert t.stdout == ""
    assert t.stderr == f"posternd: {p.conf}: {want}\n", t.stderr
    # And posternd does not start.
    with pytest.raises(RuntimeError):
        p.start(timeout=10)
    assert p.proc.returncode == 78
    assert want in p.log()


def test_check_queue(base, account):
    """With a relay the queue must be the user's too (SPOOL/queue by
    default): missing is fine if the spool can take it; root's is an
    error."""
    need_posternd()
    uid, _ = account
    p = prepared(base, account, extra_global="[relay r]\n"
                 "host = smtp.example.test:587\n")
    t = check(p.conf)
    assert t.returncode == 0, t.stderr
    assert t.stderr == ""
    queue = os.path.join(p.spool, "queue")
    os.mkdir(queue, 0o700)
    t = check(p.conf)
    assert t.returncode == 78, (t.stdout, t.stderr)
    assert t.stderr == (f"posternd: {p.conf}: queue {queue}: not writable "
                        f"by {TEST_USER} (uid {uid}): owner uid 0, mode "
                        "0700\n"), t.stderr
