"""posternd against the real clients (issue 4, "Tests"): every mechanism
with every client that speaks it, right and wrong password, over STARTTLS,
implicit TLS and (where the client allows) the plain listener.

With the right password the message must land in the recipient's Maildir
byte for byte as the client sent it, apart from the Received header
posternd adds first; with a wrong one the client must see 535 5.7.8 and
nothing may be delivered.  Every test uses a recipient of its own, so one
posternd serves the whole module.
"""
import os
import re
import shutil
import smtplib
import subprocess

import pytest

from posternd_util import (Posternd, b64, posternd_bin, strip_received,
                           unique_rcpt)

USER = "tim@example.test"
PASSWORD = "tanstaaftanstaaf"
WRONG = "tanstaaftanstaaX"
TIMEOUT = 30  # seconds, for every client run

# Listener role -> how the client reaches it.
TRANSPORTS = ["starttls", "implicit", "plain"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    if not os.access(posternd_bin(), os.X_OK):
        pytest.fail(f"{posternd_bin()} is not built")
    p = Posternd(tmp_path_factory.mktemp("clients")).start()
    yield p
    rc = p.stop()
    assert rc == 0, f"posternd exit {rc}:\n{p.log()[-3000:]}"


def need(tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not installed: tools/deps.sh test")


def message(rcpt, tag):
    """What the client submits: headers every client leaves alone (msmtp
    adds Date and Message-ID when missing), a line that must be
    dot-stuffed on the wire, an empty line, CRLF line ends."""
    return (f"From: <{USER}>\r\n"
            f"To: <{rcpt}>\r\n"
            f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{tag}.{rcpt}>\r\n"
            f"Subject: {tag}\r\n"
            f"\r\n"
            f"Hello from {tag}.\r\n"
            f".A line that starts with a dot.\r\n"
            f"\r\n"
            f"-- \r\nend\r\n").encode()


# RFC 5321 §4.4 as posternd writes it: Return-Path, then Received.
RECEIVED = re.compile(
    rb"Return-Path: <tim@example\.test>\r\n"
    rb"Received: from (?P<helo>\S+) \(unknown \[127\.0\.0\.1\]\)\r\n"
    rb"(?P<tls>\t\(using TLSv1\.[23] with cipher [A-Z0-9_-]+\)\r\n)?"
    rb"\tby mail\.example\.test \(postern\) with (?P<with>ESMTPS?A) "
    rb"id (?P<id>[0-9A-F]+);\r\n"
    rb"\t[A-Z][a-z]{2}, \d{1,2} [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d "
    rb"[+-]\d{4}\r\n")


def auth_events(srv, kind):
    return len(srv.events(kind))


class Expect:
    """Checks around one client run: counts the auth log lines before, and
    afterwards asserts the delivery (or its absence) and the log."""

    def __init__(self, srv, rcpt, ok, mech, transport):
        self.srv, self.rcpt, self.ok = srv, rcpt, ok
        self.mech, self.transport = mech, transport
        self.n_ok = auth_events(srv, "auth_ok")
        self.n_failed = auth_events(srv, "auth_failed")

    def check(self, sent=None, detail="", helo="client.example.test",
              qid=None):
        srv = self.srv
        if self.ok:
            ev = srv.wait_event("auth_ok", count=self.n_ok + 1, user=USER)
            assert ev, f"no auth_ok in the log\n{detail}\n{srv.log()[-2000:]}"
            assert ev[-1]["mech"] == self.mech, \
                f"got mech {ev[-1]['mech']}, want {self.mech}"
            msgs = srv.messages(self.rcpt)
            assert len(msgs) == 1, f"got {len(msgs)} messages, want 1\n{detail}"
            got = strip_received(msgs[0])
            assert got == sent, f"got {got!r}, want {sent!r}"
            rcvd = msgs[0][:len(msgs[0]) - len(got)]
            m = RECEIVED.fullmatch(rcvd)
            assert m, f"bad Received header {rcvd!r}"
            assert m["helo"] == helo.encode(), rcvd
            # RFC 3848: ESMTPSA under TLS, ESMTPA without.
            tls = self.transport != "plain"
            assert m["with"] == (b"ESMTPSA" if tls else b"ESMTPA"), rcvd
            assert (m["tls"] is not None) == tls, rcvd
            if qid is not None:
                assert m["id"] == qid.encode(), (rcvd, qid)
        else:
            ev = srv.wait_event("auth_failed", count=self.n_failed + 1)
            assert ev, f"no auth_failed in the log\n{detail}"
            assert ev[-1]["mech"] == self.mech, \
                f"got mech {ev[-1]['mech']}, want {self.mech}"
            assert ev[-1]["error"] == "EAUTH", ev[-1]
            assert srv.messages(self.rcpt) == []
            assert srv.maildir_files(self.rcpt) == []
            assert auth_events(srv, "auth_ok") == self.n_ok
        # A password never reaches the log.
        log = srv.log()
        assert PASSWORD not in log and WRONG not in log
        assert b64(f"\0{USER}\0{PASSWORD}") not in log


def ids(mech, transport, ok):
    return f"{mech}-{transport}-{'ok' if ok else 'wrong'}"


def cases(mechs, transports=TRANSPORTS):
    return [pytest.param(m, t, ok, id=ids(m, t, ok))
            for m in mechs for t in transports for ok in (True, False)]


# --- Python smtplib -------------------------------------------------------

def smtplib_connect(srv, transport):
    ctx = srv.ssl_context()
    port = srv.ports[transport]
    if transport == "implicit":
        s = smtplib.SMTP_SSL("127.0.0.1", port, context=ctx, timeout=TIMEOUT)
    else:
        s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
    s.ehlo("client.example.test")
    if transport == "starttls":
        assert s.has_extn("starttls")
        assert not s.has_extn("auth"), "AUTH offered before TLS"
        code, _ = s.starttls(context=ctx)
        assert code == 220
        s.ehlo("client.example.test")
    return s


AUTH_OBJ = {"PLAIN": "auth_plain", "LOGIN": "auth_login",
            "CRAM-MD5": "auth_cram_md5"}


@pytest.mark.parametrize("mech, transport, ok",
                         cases(["PLAIN", "LOGIN", "CRAM-MD5"]))
def test_smtplib_login(srv, mech, transport, ok):
    """smtp.login() choosing the one mechanism left in the EHLO list."""
    rcpt = unique_rcpt(f"py-{mech}-{transport}")
    exp = Expect(srv, rcpt, ok, mech, transport)
    sent = message(rcpt, "smtplib")
    s = smtplib_connect(srv, transport)
    try:
        assert mech in s.esmtp_features["auth"].split()
        s.esmtp_features["auth"] = mech
        if ok:
            code, resp = s.login(USER, PASSWORD)
            assert (code, resp) == (235, b"2.7.0 Authentication successful")
            refused = s.sendmail(USER, [rcpt], sent)
            assert refused == {}
        else:
            with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                s.login(USER, WRONG)
            assert e.value.smtp_code == 535
            assert e.value.smtp_error == \
                b"5.7.8 Authentication credentials invalid"
            # Not signed in: MAIL is refused.
            assert s.mail(USER) == (530, b"5.7.0 Authentication required")
        assert s.quit()[0] == 221
    finally:
        s.close()
    exp.check(sent)


@pytest.mark.parametrize("initial_response", [True, False],
                         ids=["ir", "no-ir"])
@pytest.mark.parametrize("mech, transport, ok",
                         cases(["PLAIN", "LOGIN", "CRAM-MD5"],
                               ["starttls", "implicit"]))
def test_smtplib_auth_method(srv, mech, transport, ok, initial_response):
    """smtp.auth(mech, smtp.auth_xxx): smtplib sends PLAIN's response and
    LOGIN's user name as an initial response unless told not to."""
    rcpt = unique_rcpt(f"pyauth-{mech}-{transport}")
    exp = Expect(srv, rcpt, ok, mech, transport)
    sent = message(rcpt, "smtplib-auth")
    s = smtplib_connect(srv, transport)
    try:
        s.user, s.password = USER, PASSWORD if ok else WRONG
        authobj = getattr(s, AUTH_OBJ[mech])
        if ok:
            code, resp = s.auth(mech, authobj,
                                initial_response_ok=initial_response)
            assert (code, resp) == (235, b"2.7.0 Authentication successful")
            assert s.mail(USER) == (250, b"2.1.0 Ok")
            assert s.rcpt(rcpt) == (250, b"2.1.5 Ok")
            code, resp = s.data(sent)
            assert code == 250, resp
            qid = re.fullmatch(rb"2\.0\.0 Ok: queued as ([0-9A-F]+)",
                               resp)[1].decode()
        else:
            qid = None
            with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                s.auth(mech, authobj, initial_response_ok=initial_response)
            assert (e.value.smtp_code, e.value.smtp_error) == \
                (535, b"5.7.8 Authentication credentials invalid")
        assert s.quit()[0] == 221
    finally:
        s.close()
    exp.check(sent, qid=qid)


# --- swaks ------------------------------------------------------------------

@pytest.mark.parametrize("mech, transport, ok",
                         cases(["PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5"]))
def test_swaks(srv, tmp_path, mech, transport, ok):
    need("swaks")
    rcpt = unique_rcpt(f"swaks-{mech}-{transport}")
    exp = Expect(srv, rcpt, ok, mech, transport)
    body = message(rcpt, "swaks")
    # swaks ends the data with CRLF "." CRLF itself; a file without its
    # last CRLF is sent as it is, dot-stuffed.
    data = tmp_path / "msg.txt"
    data.write_bytes(body[:-2])
    argv = ["swaks", "--server", "127.0.0.1", "--port",
            str(srv.ports[transport]), "--helo", "client.example.test",
            "--auth", mech, "--auth-user", USER,
            "--auth-password", PASSWORD if ok else WRONG,
            "--from", USER, "--to", rcpt, "--data", f"@{data}",
            "--timeout", str(TIMEOUT)]
    if transport == "starttls":
        argv += ["--tls", "--tls-verify", "--tls-ca-path", srv.cert]
    elif transport == "implicit":
        argv += ["--tls-on-connect", "--tls-verify",
                 "--tls-ca-path", srv.cert]
    p = subprocess.run(argv, capture_output=True, text=True,
                       timeout=TIMEOUT + 10)
    out = p.stdout + p.stderr
    if ok:
        assert p.returncode == 0, f"swaks exit {p.returncode}\n{out}"
        assert "<~  235 2.7.0 Authentication successful" in out or \
            "<-  235 2.7.0 Authentication successful" in out, out
        m = re.search(r"<.  250 2\.0\.0 Ok: queued as ([0-9A-F]+)", out)
        assert m, out
        qid = m[1]
    else:
        # swaks: 28 = authentication failed.
        assert p.returncode == 28, f"swaks exit {p.returncode}\n{out}"
        assert re.search(r"<.\* 535 5\.7\.8 Authentication credentials "
                         r"invalid", out), out
        qid = None
    exp.check(body, out, qid=qid)


# --- curl -------------------------------------------------------------------

@pytest.mark.parametrize("mech, transport, ok",
                         cases(["PLAIN", "PLAIN-IR", "LOGIN", "CRAM-MD5",
                                "DIGEST-MD5"]))
def test_curl(srv, tmp_path, mech, transport, ok):
    """curl sends AUTH without an initial response unless --sasl-ir:
    PLAIN is tried both ways (the two-step form answers "334 ")."""
    need("curl")
    real = mech.replace("-IR", "")
    rcpt = unique_rcpt(f"curl-{mech}-{transport}")
    exp = Expect(srv, rcpt, ok, real, transport)
    body = message(rcpt, "curl")
    data = tmp_path / "msg.txt"
    data.write_bytes(body)
    port = srv.ports[transport]
    scheme = "smtps" if transport == "implicit" else "smtp"
    argv = ["curl", "-sS", "-v", "--max-time", str(TIMEOUT),
            "--url", f"{scheme}://127.0.0.1:{port}/client.example.test",
            "--login-options", f"AUTH={real}",
            "--user", f"{USER}:{PASSWORD if ok else WRONG}",
            "--mail-from", USER, "--mail-rcpt", rcpt,
            "--upload-file", str(data)]
    if transport != "plain":
        argv += ["--cacert", srv.cert]
    if transport == "starttls":
        argv += ["--ssl-reqd"]
    if mech.endswith("-IR"):
        argv += ["--sasl-ir"]
    p = subprocess.run(argv, capture_output=True, text=True,
                       timeout=TIMEOUT + 10)
    out = p.stderr
    if mech == "PLAIN-IR":
        assert re.search(r"^> AUTH PLAIN \S+$", out, re.M), out
    elif real in ("PLAIN", "LOGIN"):
        # The two-step form: an empty challenge ("334 ", RFC 4954 §4) for
        # PLAIN, "Username:" for LOGIN.
        assert re.search(rf"^> AUTH {real}$", out, re.M), out
        want = r"^< 334 $" if real == "PLAIN" else r"^< 334 VXNlcm5hbWU6$"
        assert re.search(want, out, re.M), out
    if ok:
        assert p.returncode == 0, f"curl exit {p.returncode}\n{out}"
        assert "< 235 2.7.0 Authentication successful" in out, out
        qid = re.search(r"^< 250 2\.0\.0 Ok: queued as ([0-9A-F]+)$", out,
                        re.M)[1]
    else:
        # curl: 67 = login denied.
        assert p.returncode == 67, f"curl exit {p.returncode}\n{out}"
        assert "< 535 5.7.8 Authentication credentials invalid" in out, out
        qid = None
    exp.check(body, out, qid=qid)


# --- msmtp ------------------------------------------------------------------

@pytest.mark.parametrize("mech, transport, ok",
                         cases(["PLAIN", "LOGIN", "CRAM-MD5", "DIGEST-MD5",
                                "SCRAM-SHA-1", "SCRAM-SHA-256"]))
def test_msmtp(srv, tmp_path, mech, transport, ok):
    need("msmtp")
    rcpt = unique_rcpt(f"msmtp-{mech}-{transport}")
    exp = Expect(srv, rcpt, ok, mech, transport)
    body = message(rcpt, "msmtp")
    pwfile = tmp_path / "pw"
    pwfile.write_text((PASSWORD if ok else WRONG) + "\n")
    argv = ["msmtp", "-C", "/dev/null", "--host=127.0.0.1",
            f"--port={srv.ports[transport]}", "--domain=client.example.test",
            f"--auth={mech.lower()}", f"--user={USER}",
            f"--passwordeval=cat {pwfile}", f"--from={USER}",
            f"--timeout={TIMEOUT}"]
    if transport == "plain":
        argv += ["--tls=off"]
    else:
        argv += ["--tls=on", f"--tls-trust-file={srv.cert}",
                 "--tls-starttls=" + ("on" if transport == "starttls"
                                      else "off")]
    argv += ["--", rcpt]
    p = subprocess.run(argv, input=body, capture_output=True,
                       timeout=TIMEOUT + 10)
    out = (p.stdout + p.stderr).decode(errors="replace")
    if ok:
        assert p.returncode == 0, f"msmtp exit {p.returncode}\n{out}"
    else:
        # msmtp: EX_NOPERM (77) when authentication fails.
        assert p.returncode == 77, f"msmtp exit {p.returncode}\n{out}"
        assert "535 5.7.8 Authentication credentials invalid" in out, out
    exp.check(body, out)


# --- gsasl (SMTP mode: authenticates, sends no message) ----------------------

@pytest.mark.parametrize("mech, transport, ok",
                         cases(["SCRAM-SHA-1", "SCRAM-SHA-256", "CRAM-MD5",
                                "DIGEST-MD5"], ["starttls", "plain"]))
def test_gsasl(srv, mech, transport, ok):
    """gsasl has no implicit-TLS mode.  --no-cb: gsasl 2.2.0 tries channel
    binding under TLS 1.3 (INTEROP.md)."""
    need("gsasl")
    exp = Expect(srv, unique_rcpt("gsasl"), ok, mech, transport)
    argv = ["gsasl", "--smtp", "--connect",
            f"127.0.0.1:{srv.ports[transport]}", "-m", mech,
            "-a", USER, "-p", PASSWORD if ok else WRONG,
            "-r", srv.hostname, "--quality-of-protection=qop-auth"]
    if transport == "plain":
        argv += ["--no-starttls"]
    else:
        argv += ["--starttls", "--no-cb", f"--x509-ca-file={srv.cert}"]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=TIMEOUT)
    out = p.stdout + p.stderr
    assert f"AUTH {mech}" in out, out
    if transport == "starttls":
        assert "220 2.0.0 Ready to start TLS" in out, out
    if ok:
        assert p.returncode == 0, f"gsasl exit {p.returncode}\n{out}"
        assert "235 2.7.0 Authentication successful" in out, out
        assert "221 2.0.0 Bye" in out, out
    else:
        assert p.returncode != 0, out
        assert "535 5.7.8 Authentication credentials invalid" in out, out
    # No message: check the log only.
    if ok:
        ev = srv.wait_event("auth_ok", count=exp.n_ok + 1, user=USER)
        assert ev and ev[-1]["mech"] == mech, srv.log()[-2000:]
    else:
        ev = srv.wait_event("auth_failed", count=exp.n_failed + 1)
        assert ev and ev[-1]["mech"] == mech and ev[-1]["error"] == "EAUTH", \
            ev
        assert auth_events(srv, "auth_ok") == exp.n_ok


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256", "SCRAM-SHA-1", "DIGEST-MD5",
                                  "PLAIN"])
@pytest.mark.parametrize("authzid, ok", [(USER, True),
                                         ("bob@example.test", False)])
def test_gsasl_authzid(srv, mech, authzid, ok):
    """An authorization identity equal to the user is "no proxying"
    (mutt, neomutt send one: INTEROP.md); another one is refused."""
    need("gsasl")
    n_ok = auth_events(srv, "auth_ok")
    p = subprocess.run(["gsasl", "--smtp", "--connect",
                        f"127.0.0.1:{srv.ports['plain']}", "-m", mech,
                        "-a", USER, "-z", authzid, "-p", PASSWORD,
                        "-r", srv.hostname, "--no-starttls",
                        "--quality-of-protection=qop-auth"],
                       stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=TIMEOUT)
    out = p.stdout + p.stderr
    if ok:
        assert p.returncode == 0, out
        assert "235 2.7.0 Authentication successful" in out, out
        assert srv.wait_event("auth_ok", count=n_ok + 1)
    else:
        assert p.returncode != 0, out
        assert "535 5.7.8 Authentication credentials invalid" in out, out
        assert auth_events(srv, "auth_ok") == n_ok


@pytest.mark.parametrize("mech, offered", [
    ("CRAM-MD5", True), ("DIGEST-MD5", True), ("SCRAM-SHA-1", True),
    ("SCRAM-SHA-256", True), ("PLAIN", False), ("LOGIN", False)])
def test_msmtp_legacy_listener_without_tls(srv, mech, offered):
    """auth_before_tls = challenge: an old device that cannot do TLS may
    use the mechanisms that never send the password, and only those."""
    need("msmtp")
    rcpt = unique_rcpt(f"legacy-{mech}")
    body = message(rcpt, "legacy")
    argv = ["msmtp", "-C", "/dev/null", "--host=127.0.0.1",
            f"--port={srv.ports['legacy']}", "--domain=printer.example.test",
            f"--auth={mech.lower()}", f"--user={USER}",
            f"--passwordeval=echo {PASSWORD}", f"--from={USER}",
            f"--timeout={TIMEOUT}", "--tls=off", "--", rcpt]
    exp = Expect(srv, rcpt, True, mech, "plain")
    p = subprocess.run(argv, input=body, capture_output=True,
                       timeout=TIMEOUT + 10)
    out = (p.stdout + p.stderr).decode(errors="replace")
    if offered:
        assert p.returncode == 0, f"msmtp exit {p.returncode}\n{out}"
        exp.check(body, out, helo="printer.example.test")
    else:
        assert p.returncode != 0, out
        assert f"does not support authentication method {mech}" in out, out
        assert srv.messages(rcpt) == []


@pytest.mark.parametrize("host, ok", [
    (None, True),                   # digest-uri="smtp/127.0.0.1"
    ("mail.example.test", True),    # the configured host name
    ("other.example.test", False),  # someone else's server
])
def test_gsasl_digest_uri(srv, host, ok):
    """DIGEST-MD5's digest-uri must name this server: its host name or the
    address the client connected to (INTEROP.md), service "smtp"."""
    need("gsasl")
    n_ok = auth_events(srv, "auth_ok")
    argv = ["gsasl", "--smtp", "--connect",
            f"127.0.0.1:{srv.ports['plain']}", "-m", "DIGEST-MD5",
            "-a", USER, "-p", PASSWORD, "-r", srv.hostname, "--no-starttls",
            "--quality-of-protection=qop-auth"]
    if host is not None:
        argv.append(f"--hostname={host}")
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=TIMEOUT)
    out = p.stdout + p.stderr
    if ok:
        assert p.returncode == 0, out
        assert srv.wait_event("auth_ok", count=n_ok + 1)
    else:
        assert p.returncode != 0, out
        assert "535 5.7.8 Authentication credentials invalid" in out, out
        assert auth_events(srv, "auth_ok") == n_ok
