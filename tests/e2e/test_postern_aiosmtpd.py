"""`postern send` against an independent server: aiosmtpd (Debian's
python3-aiosmtpd 1.4.3) run in this process, with its own AUTH PLAIN and
LOGIN and a CRAM-MD5 mechanism written here (RFC 2195).  Plaintext AUTH
(auth_require_tls=False), so postern runs with --starttls=never and, for
PLAIN and LOGIN, --allow-plaintext-auth.  What reaches the handler must be
exactly what was sent.

INTEROP.md: aiosmtpd 1.4.3 sends no reply at all when an authenticator
returns a bare AuthResult(success=False): postern's --timeout bounds
that wait, and every test has a bounded run."""
import base64
import hashlib
import hmac
import logging
import os
import threading
import time
import warnings

import pytest

from postern_client_util import (
    EX_NOPERM, EX_OK, EX_TEMPFAIL, EX_UNAVAILABLE, FIXED_MSG, PASSWORD,
    describe, run_postern, secret_forms)

# python3-aiosmtpd is a test dependency (DESIGN.md): missing, it fails.
import aiosmtpd.controller as aiosmtpd_controller
from aiosmtpd.smtp import MISSING, AuthResult, LoginPassword, auth_mechanism

USER = "tim"
logging.getLogger("mail.log").setLevel(logging.ERROR)
# aiosmtpd 1.4.3 warns about its own deprecated paths, and about AUTH
# without TLS, which is what these tests ask for.
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning"),
              pytest.mark.filterwarnings("ignore:Requiring AUTH while not "
                                         "requiring TLS")]


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Handler:
    """Collects envelopes; speaks CRAM-MD5 when asked to.  (aiosmtpd takes
    every attribute named auth_* for a mechanism: none but the one.)"""

    def __init__(self, cram=True):
        self.envelopes = []
        self.cram_calls = []
        self.cram = cram
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.envelopes.append((envelope.mail_from,
                                   list(envelope.rcpt_tos),
                                   bytes(envelope.content),
                                   session.login_data,
                                   list(envelope.mail_options)))
        return "250 2.0.0 Ok: queued"

    # RFC 2195 §2: one challenge, "user hex(HMAC-MD5(password, challenge))".
    @auth_mechanism("CRAM-MD5")
    async def auth_CRAM_MD5(self, server, args):
        if not self.cram:
            await server.push("504 5.5.4 Unrecognized authentication type")
            return AuthResult(success=False, handled=True)
        if len(args) != 1:
            # RFC 4954 §4: CRAM-MD5 takes no initial response.
            await server.push("501 5.7.0 No initial response expected")
            return AuthResult(success=False, handled=True)
        challenge = ("<%d.%d@aiosmtpd.example.test>" % (
            os.getpid(), time.monotonic_ns())).encode()
        resp = await server.challenge_auth(challenge)
        if resp is MISSING:
            return AuthResult(success=False, handled=True)
        user, _, digest = resp.partition(b" ")
        want = hmac.new(PASSWORD.encode(), challenge,
                        hashlib.md5).hexdigest().encode()
        ok = user == USER.encode() and hmac.compare_digest(digest, want)
        self.cram_calls.append(("CRAM-MD5", user, ok))
        return AuthResult(success=ok, handled=False,
                          auth_data=LoginPassword(user, b""))


class Authenticator:
    """For aiosmtpd's PLAIN and LOGIN.  polite=False reproduces the
    INTEROP.md quirk: a failure with no reply at all."""

    def __init__(self, polite=True):
        self.polite = polite
        self.calls = []

    def __call__(self, server, session, envelope, mechanism, auth_data):
        ok = (isinstance(auth_data, LoginPassword) and
              auth_data.login == USER.encode() and
              auth_data.password == PASSWORD.encode())
        self.calls.append((mechanism, auth_data.login, ok))
        if ok:
            return AuthResult(success=True, auth_data=auth_data)
        if self.polite:
            return AuthResult(success=False, handled=False)
        return AuthResult(success=False)  # handled=True: aiosmtpd is silent


class Server:
    def __init__(self, handler=None, authenticator=None, exclude=(),
                 auth_required=True):
        self.handler = handler or Handler()
        self.auth = authenticator or Authenticator()
        self.port = free_port()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.ctl = aiosmtpd_controller.Controller(
                self.handler, hostname="127.0.0.1", port=self.port,
                server_hostname="aiosmtpd.example.test",
                authenticator=self.auth, auth_require_tls=False,
                auth_required=auth_required,
                auth_exclude_mechanism=list(exclude), ready_timeout=10)

    def __enter__(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.ctl.start()
        return self

    def __exit__(self, *exc):
        self.ctl.stop()

    @property
    def url(self):
        return "smtp://127.0.0.1:%d" % self.port


@pytest.fixture(scope="module")
def pwfile(tmp_path_factory):
    f = tmp_path_factory.mktemp("pw") / "password"
    f.write_text(PASSWORD + "\n")
    return f


@pytest.fixture(scope="module")
def badpwfile(tmp_path_factory):
    f = tmp_path_factory.mktemp("badpw") / "password"
    f.write_text("not the password\n")
    return f


def send(srv, pwfile, extra=(), input=FIXED_MSG, rcpts=("rcpt@example.test",),
         timeout_opt=10):
    a = ["send", "--server", srv.url, "--starttls=never", "--timeout",
         str(timeout_opt), "--user", USER, "--password-file", pwfile,
         "--from", "tim@example.test"]
    for r in rcpts:
        a += ["--to", r]
    return run_postern(a + list(extra), input=input, timeout=60)


def wait_for(cond, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_each_mechanism(pwfile, mech):
    with Server() as s:
        extra = ["--mech", mech]
        if mech != "CRAM-MD5":
            extra.append("--allow-plaintext-auth")
        p = send(s, pwfile, extra, rcpts=["a@example.test", "b@example.test"])
        assert p.returncode == EX_OK, describe(p)
        assert wait_for(lambda: s.handler.envelopes)
    frm, rcpts, content, login, opts = s.handler.envelopes[0]
    assert frm == "tim@example.test"
    assert rcpts == ["a@example.test", "b@example.test"]
    assert content == FIXED_MSG
    assert login == USER.encode()
    assert "SIZE=%d" % len(FIXED_MSG) in opts
    if mech == "CRAM-MD5":
        assert s.handler.cram_calls == [("CRAM-MD5", b"tim", True)]
    else:
        assert s.auth.calls == [(mech, b"tim", True)]


def test_default_picks_cram_md5(pwfile):
    """aiosmtpd offers CRAM-MD5 LOGIN PLAIN: the strongest is CRAM-MD5,
    and it needs no --allow-plaintext-auth."""
    with Server() as s:
        p = send(s, pwfile, ["-v"])
        assert p.returncode == EX_OK, describe(p)
        assert wait_for(lambda: s.handler.envelopes)
    assert s.handler.cram_calls == [("CRAM-MD5", b"tim", True)]
    assert s.auth.calls == []
    assert b"C: AUTH CRAM-MD5\n" in p.stderr
    for x in secret_forms(user=USER):
        assert x not in p.stderr


def test_only_login_offered(pwfile):
    with Server(exclude=["PLAIN", "CRAM-MD5"]) as s:
        p = send(s, pwfile, ["--allow-plaintext-auth"])
        assert p.returncode == EX_OK, describe(p)
        assert wait_for(lambda: s.handler.envelopes)
    assert s.auth.calls == [("LOGIN", b"tim", True)]
    assert s.handler.envelopes[0][2] == FIXED_MSG


def test_only_login_offered_no_plaintext(pwfile):
    """Without --allow-plaintext-auth the client will not use LOGIN in
    clear: exit 69, and aiosmtpd never sees an AUTH."""
    with Server(exclude=["PLAIN", "CRAM-MD5"]) as s:
        p = send(s, pwfile)
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert "--allow-plaintext-auth" in p.stderr.decode()
    assert s.auth.calls == [] and s.handler.envelopes == []


def test_forced_mech_not_offered(pwfile):
    with Server(exclude=["PLAIN", "CRAM-MD5"]) as s:
        p = send(s, pwfile, ["--mech", "CRAM-MD5"])
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert "does not offer CRAM-MD5 (it offers: LOGIN)" in p.stderr.decode()
    assert s.handler.cram_calls == [] and s.auth.calls == []


def test_message_from_stdin_normalised(pwfile):
    """Bare LF, dot lines, a missing final newline: what arrives is the
    CRLF text with every dot where it was written."""
    text = (b"From: <tim@example.test>\nTo: <rcpt@example.test>\n"
            b"Subject: dots\nDate: Mon, 02 Feb 2026 10:00:00 +0000\n"
            b"Message-ID: <dots.1@example.test>\n\n"
            b".one\n..two\n.\nlast")
    with Server() as s:
        p = send(s, pwfile, input=text)
        assert p.returncode == EX_OK, describe(p)
        assert wait_for(lambda: s.handler.envelopes)
    assert s.handler.envelopes[0][2] == text.replace(b"\n", b"\r\n") + \
        b"\r\n"


def test_8bit_and_binary_attachment(pwfile, tmp_path):
    import email
    import email.policy
    data = os.urandom(100000) + b"\r\n.\r\n"
    (tmp_path / "scan.pdf").write_bytes(data)
    with Server() as s:
        p = send(s, pwfile, ["--subject", "Größe", "--attach",
                             tmp_path / "scan.pdf"], input=b"")
        assert p.returncode == EX_OK, describe(p)
        assert wait_for(lambda: s.handler.envelopes)
    m = email.message_from_bytes(s.handler.envelopes[0][2],
                                 policy=email.policy.default)
    assert m["subject"] == "Größe"
    att = list(m.iter_attachments())[0]
    assert att.get_content_type() == "application/pdf"
    assert att.get_payload(decode=True) == data


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_wrong_password(badpwfile, mech):
    with Server() as s:
        p = send(s, badpwfile, ["--mech", mech, "--allow-plaintext-auth"])
    assert p.returncode == EX_NOPERM, describe(p)
    assert "authentication failed: 535 5.7.8" in p.stderr.decode()
    assert s.handler.envelopes == []


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_wrong_password_silent_server(badpwfile, mech):
    """The INTEROP.md quirk: no reply at all.  --timeout ends the wait
    (temporary failure, 75), well before the test's own limit."""
    with Server(authenticator=Authenticator(polite=False)) as s:
        t0 = time.time()
        p = send(s, badpwfile, ["--mech", mech, "--allow-plaintext-auth"],
                 timeout_opt=2)
        took = time.time() - t0
    assert p.returncode == EX_TEMPFAIL, describe(p)
    assert "timed out" in p.stderr.decode()
    assert took < 20, took
    assert s.handler.envelopes == []


def test_no_auth_when_not_asked(pwfile):
    with Server(auth_required=False) as s:
        p = run_postern(["send", "--server", s.url, "--starttls=never",
                         "--timeout", "10", "--from", "tim@example.test",
                         "--to", "x@example.test"], input=FIXED_MSG)
        assert p.returncode == EX_OK, describe(p)
        assert wait_for(lambda: s.handler.envelopes)
    assert s.handler.envelopes[0][3] is None  # not authenticated
    assert s.handler.envelopes[0][2] == FIXED_MSG


def test_auth_required_refused_without_user():
    with Server() as s:
        p = run_postern(["send", "--server", s.url, "--starttls=never",
                         "--timeout", "10", "--from", "tim@example.test",
                         "--to", "x@example.test"], input=FIXED_MSG)
    # aiosmtpd: "530 5.7.0 Authentication required" to MAIL.
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert "530 5.7.0" in p.stderr.decode()
