"""`postern send` against a scripted server (FakeSMTP): what posternd
cannot be made to do.  Every reply class maps to its sysexits code, the
server's words (enhanced code, every line) reach the error message, the
password never leaves when it must not, the exact AUTH bytes of the RFC
examples, the legacy AUTH= line, PIPELINING, SIZE, IPv6, servers that
fail to prove they know the password, and servers that say nothing."""
import base64
import hashlib
import hmac
import os
import re
import subprocess
import time

import pytest

from posternd_util import ROOT
from postern_client_util import (
    EX_NOPERM, EX_OK, EX_PROTOCOL, EX_TEMPFAIL, EX_UNAVAILABLE, EX_USAGE,
    FIXED_MSG, PASSWORD, USER, Close, FakeSMTP, TLSSayAndClose, describe,
    run_postern, secret_forms)


@pytest.fixture(scope="module")
def pwfile(tmp_path_factory):
    f = tmp_path_factory.mktemp("pw") / "password"
    f.write_text(PASSWORD + "\n")
    return f


def send(fake, pwfile, extra=(), user=USER, rcpts=(USER,), input=FIXED_MSG,
         timeout_opt=5, plain=True):
    a = ["send", "--server", fake.url, "--timeout", str(timeout_opt),
         "--from", USER]
    for r in rcpts:
        a += ["--to", r]
    if plain:
        a += ["--starttls=never", "--allow-plaintext-auth"]
    if user is not None:
        a += ["--user", user, "--password-file", pwfile]
    return run_postern(a + list(extra), input=input, timeout=60)


def auth_lines(fake):
    return [c for c in fake.commands if c.upper().startswith(b"AUTH")]


def assert_no_secret(fake):
    data = fake.all_received()
    for s in secret_forms() + secret_forms(user="tim"):
        assert s not in data, (s, data)


# --- the password stays home ----------------------------------------------

def test_forced_mech_not_offered_sends_nothing(pwfile):
    with FakeSMTP(ehlo=["AUTH CRAM-MD5 SCRAM-SHA-1"]) as f:
        p = send(f, pwfile, ["--mech", "PLAIN"])
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert "does not offer PLAIN (it offers: CRAM-MD5 SCRAM-SHA-1)" in \
        p.stderr.decode()
    assert auth_lines(f) == []
    assert not [c for c in f.commands if c.startswith(b"MAIL")]
    assert f.commands[-1] == b"QUIT"
    assert_no_secret(f)


@pytest.mark.parametrize("offered", ["AUTH PLAIN LOGIN", "AUTH LOGIN",
                                     "AUTH=PLAIN"])
def test_no_plaintext_auth_without_tls(pwfile, offered):
    with FakeSMTP(ehlo=[offered]) as f:
        p = send(f, pwfile, plain=False, extra=["--starttls=never"])
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert "--allow-plaintext-auth" in p.stderr.decode()
    assert auth_lines(f) == []
    assert_no_secret(f)


def test_no_auth_offered(pwfile):
    with FakeSMTP(ehlo=["PIPELINING"]) as f:
        p = send(f, pwfile)
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert "does not offer AUTH" in p.stderr.decode()
    assert_no_secret(f)


# --- exact bytes of the RFC examples -------------------------------------

CRAM_CHALLENGE = "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"


@pytest.mark.parametrize("mech,auth,want", [
    # RFC 4616 / RFC 4954 §4.1: PLAIN with the initial response.
    ("PLAIN", ["235 2.7.0 ok"],
     [b"AUTH PLAIN AHRpbQB0YW5zdGFhZnRhbnN0YWFm"]),
    # LOGIN: no initial response (as msmtp and curl), the user name
    # after "Username:", the password after "Password:".
    ("LOGIN", ["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6", "235 2.7.0 ok"],
     [b"AUTH LOGIN", b"dGlt", b"dGFuc3RhYWZ0YW5zdGFhZg=="]),
    # RFC 2195 §2: the CRAM-MD5 example, byte for byte.
    ("CRAM-MD5", ["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"],
     [b"AUTH CRAM-MD5",
      b"dGltIGI5MTNhNjAyYzdlZGE3YTQ5NWI0ZTZlNzMzNGQzODkw"]),
])
def test_exact_auth_bytes(pwfile, mech, auth, want):
    with FakeSMTP(ehlo=["AUTH " + mech], auth=auth) as f:
        p = send(f, pwfile, ["--mech", mech], user="tim")
    assert p.returncode == EX_OK, describe(p)
    i = f.commands.index(want[0])
    assert f.commands[i:i + len(want)] == want
    assert f.messages == [FIXED_MSG]


def test_legacy_auth_equals_line(pwfile):
    """Only the pre-standard "AUTH=LOGIN" keyword: still understood."""
    with FakeSMTP(ehlo=["AUTH=LOGIN"],
                  auth=["334 VXNlcm5hbWU6", "334 UGFzc3dvcmQ6",
                        "235 2.7.0 ok"]) as f:
        p = send(f, pwfile, user="tim")
    assert p.returncode == EX_OK, describe(p)
    assert auth_lines(f) == [b"AUTH LOGIN"]
    assert f.messages == [FIXED_MSG]


def test_both_auth_lines_and_case(pwfile):
    """AUTH and AUTH= together, lower case: one list, the strongest."""
    with FakeSMTP(ehlo=["auth login cram-md5", "AUTH=LOGIN"],
                  auth=["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"]) as f:
        p = send(f, pwfile, user="tim")
    assert p.returncode == EX_OK, describe(p)
    assert auth_lines(f) == [b"AUTH CRAM-MD5"]


def test_mechs_we_do_not_know_are_skipped(pwfile):
    with FakeSMTP(ehlo=["AUTH XOAUTH2 GSSAPI NTLM CRAM-MD5 X-NEW"],
                  auth=["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"]) as f:
        p = send(f, pwfile, user="tim")
    assert p.returncode == EX_OK, describe(p)
    assert auth_lines(f) == [b"AUTH CRAM-MD5"]


# --- servers that do not prove they know the password --------------------

def scram_server_first(line):
    cf = base64.b64decode(line.split(b" ")[2])
    nonce = re.search(rb"r=([^,]+)", cf).group(1)
    sf = b"r=" + nonce + b"srvnonce,s=" + base64.b64encode(b"salt" * 4) + \
        b",i=4096"
    return "334 " + base64.b64encode(sf).decode()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_wrong_server_signature(pwfile, mech):
    size = 20 if mech == "SCRAM-SHA-1" else 32
    bad = "334 " + base64.b64encode(b"v=" + base64.b64encode(
        b"\0" * size)).decode()
    with FakeSMTP(ehlo=["AUTH " + mech],
                  auth=[scram_server_first, bad,
                        "501 5.7.0 Auth aborted"]) as f:
        p = send(f, pwfile)
    assert p.returncode == EX_NOPERM, describe(p)
    assert "failed to prove it knows the password" in p.stderr.decode()
    # RFC 4954 §4: the client cancels with "*".
    assert f.commands[f.commands.index(b"QUIT") - 1] == b"*"
    assert not [c for c in f.commands if c.startswith(b"MAIL")]


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_scram_success_without_proof(pwfile, mech):
    with FakeSMTP(ehlo=["AUTH " + mech],
                  auth=[scram_server_first, "235 2.7.0 ok"]) as f:
        p = send(f, pwfile)
    assert p.returncode == EX_NOPERM, describe(p)
    assert "without proving" in p.stderr.decode()
    assert not [c for c in f.commands if c.startswith(b"MAIL")]


DIGEST_CHALLENGE = base64.b64encode(
    b'realm="fake.example.test",nonce="OA6MG9tEQGm2hh",qop="auth",'
    b'algorithm=md5-sess,charset=utf-8').decode()


def test_challenge_after_the_end(pwfile):
    """One challenge too many (CRAM-MD5 has one): a protocol error of the
    server (76), cancelled with "*", not a bug of ours (70)."""
    with FakeSMTP(auth=["334 " + CRAM_CHALLENGE, "334 " + CRAM_CHALLENGE,
                        "501 5.7.0 Auth aborted"]) as f:
        p = send(f, pwfile, user="tim")
    assert p.returncode == EX_PROTOCOL, describe(p)
    assert "after the exchange was complete" in p.stderr.decode()
    assert b"*" in f.commands


def test_digest_md5_wrong_rspauth(pwfile):
    bad = "334 " + base64.b64encode(b"rspauth=" + b"0" * 32).decode()
    with FakeSMTP(ehlo=["AUTH DIGEST-MD5"],
                  auth=["334 " + DIGEST_CHALLENGE, bad,
                        "501 5.7.0 Auth aborted"]) as f:
        p = send(f, pwfile)
    assert p.returncode == EX_NOPERM, describe(p)
    assert "failed to prove" in p.stderr.decode()
    assert f.commands[f.commands.index(b"QUIT") - 1] == b"*"
    # The response the client sent is checkable: RFC 2831 §2.1.2.1.
    resp = base64.b64decode(f.commands[f.commands.index(
        b"AUTH DIGEST-MD5") + 1]).decode()
    fields = dict(re.findall(r'([a-z-]+)=("[^"]*"|[^,]*)', resp))
    fields = {k: v.strip('"') for k, v in fields.items()}
    assert fields["username"] == USER and fields["qop"] == "auth"
    assert fields["digest-uri"] == "smtp/127.0.0.1"
    a1 = hashlib.md5(("%s:%s:%s" % (USER, fields["realm"], PASSWORD))
                     .encode()).digest() + (":%s:%s" % (
                         fields["nonce"], fields["cnonce"])).encode()
    a2 = ("AUTHENTICATE:" + fields["digest-uri"]).encode()
    want = hashlib.md5(("%s:%s:%s:%s:auth:%s" % (
        hashlib.md5(a1).hexdigest(), fields["nonce"], fields["nc"],
        fields["cnonce"], hashlib.md5(a2).hexdigest())).encode()).hexdigest()
    assert fields["response"] == want


# --- every reply class ----------------------------------------------------

CASES = {
    "greeting-554": (dict(greeting=Close("554 5.3.2 No service here")),
                     EX_UNAVAILABLE, "554 5.3.2 No service here"),
    "greeting-421": (dict(greeting=Close("421 4.3.2 Busy, try later")),
                     EX_TEMPFAIL, "421 4.3.2 Busy, try later"),
    "auth-454": (dict(auth=["454 4.7.0 Temporary authentication failure"]),
                 EX_TEMPFAIL, "454 4.7.0 Temporary authentication failure"),
    "auth-535-multiline": (
        dict(auth=["535-5.7.8 Authentication credentials invalid\r\n"
                   "535 5.7.8 see https://example.test/auth"]),
        EX_NOPERM, "authentication failed: 535-5.7.8 Authentication "
                   "credentials invalid\n535 5.7.8 see "
                   "https://example.test/auth"),
    "auth-534": (dict(auth=["534 5.7.9 Authentication mechanism is too "
                            "weak"]), EX_NOPERM, "534 5.7.9"),
    "auth-504": (dict(auth=["504 5.5.4 Unrecognized authentication type"]),
                 EX_UNAVAILABLE, "504 5.5.4"),
    "auth-432": (dict(auth=["432 4.7.12 A password transition is needed"]),
                 EX_TEMPFAIL, "432 4.7.12"),
    "mail-451": (dict(replies={"MAIL": "451 4.3.0 Try again"}),
                 EX_TEMPFAIL, "451 4.3.0 Try again"),
    "mail-553": (dict(replies={"MAIL": "553 5.7.1 Sender not yours"}),
                 EX_UNAVAILABLE, "553 5.7.1 Sender not yours"),
    "rcpt-550": (dict(replies={"RCPT": "550 5.1.1 No such user"}),
                 EX_UNAVAILABLE, "550 5.1.1 No such user"),
    "rcpt-452": (dict(replies={"RCPT": "452 4.5.3 Too many recipients"}),
                 EX_TEMPFAIL, "452 4.5.3"),
    "data-554": (dict(replies={"DATA": "554 5.5.1 No valid recipients"}),
                 EX_UNAVAILABLE, "554 5.5.1"),
    "dot-452": (dict(replies={".": "452 4.3.1 Insufficient storage"}),
                EX_TEMPFAIL, "452 4.3.1 Insufficient storage"),
    "dot-554": (dict(replies={".": "554 5.6.0 Message refused"}),
                EX_UNAVAILABLE, "554 5.6.0 Message refused"),
    "dot-421-close": (dict(replies={".": Close("421 4.4.2 Timeout")}),
                      EX_TEMPFAIL, "421 4.4.2 Timeout"),
    "malformed": (dict(replies={"MAIL": "25O oops"}), EX_PROTOCOL,
                  "malformed"),
    "close-after-greeting": (dict(replies={"EHLO": Close("")}),
                             EX_TEMPFAIL, "closed the connection"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_reply_classes(pwfile, case):
    kw, code, text = CASES[case]
    kw = dict(kw)
    kw.setdefault("ehlo", ["PIPELINING", "AUTH CRAM-MD5"])
    kw.setdefault("auth", ["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"])
    with FakeSMTP(**kw) as f:
        p = send(f, pwfile, user="tim")
    assert p.returncode == code, describe(p)
    assert text in p.stderr.decode(), describe(p)
    if code != EX_OK:
        assert f.messages == [] or case.startswith("dot")


def test_one_recipient_refused_no_data(pwfile):
    def rcpt(line):
        return ("550 5.1.1 <bad@example.test>: unknown" if b"bad@" in line
                else "250 2.1.5 Ok")
    with FakeSMTP(replies={"RCPT": rcpt},
                  auth=["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"]) as f:
        p = send(f, pwfile, user="tim",
                 rcpts=["good@example.test", "bad@example.test"])
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert "<bad@example.test>" in p.stderr.decode()
    assert b"DATA" not in f.commands
    assert f.messages == []


def test_helo_fallback(pwfile):
    with FakeSMTP(replies={"EHLO": "502 5.5.1 EHLO not implemented"}) as f:
        p = send(f, pwfile, user=None)
    assert p.returncode == EX_OK, describe(p)
    assert [c.split(b" ")[0] for c in f.commands[:2]] == [b"EHLO", b"HELO"]
    assert f.messages == [FIXED_MSG]


# --- silence ------------------------------------------------------------

@pytest.mark.parametrize("where", ["greeting", "AUTH", "RCPT", "."])
def test_silent_server_times_out(pwfile, where):
    kw = {"auth": ["334 " + CRAM_CHALLENGE, None]} if where == "AUTH" else {}
    if where == "greeting":
        kw["greeting"] = None
    elif where != "AUTH":
        kw["replies"] = {where: None}
        kw["auth"] = ["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"]
    with FakeSMTP(**kw) as f:
        t0 = time.time()
        p = send(f, pwfile, user="tim", timeout_opt=2)
        took = time.time() - t0
    assert p.returncode == EX_TEMPFAIL, describe(p)
    assert "timed out" in p.stderr.decode()
    assert 1.5 < took < 20, took


# --- PIPELINING, SIZE, 8BITMIME, IPv6 ----------------------------------------

def test_pipelining_used_when_offered(pwfile):
    rcpts = ["a@example.test", "b@example.test", "c@example.test"]
    with FakeSMTP(ehlo=["PIPELINING", "SIZE 1000000", "AUTH CRAM-MD5"],
                  auth=["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"]) as f:
        p = send(f, pwfile, user="tim", rcpts=rcpts)
    assert p.returncode == EX_OK, describe(p)
    mail = [pend for ln, pend in f.pending if ln.startswith(b"MAIL")][0]
    # RFC 2920: MAIL and every RCPT in one group; DATA waits for them.
    assert mail == b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in rcpts)
    assert [c for c in f.commands if c.startswith(b"MAIL")] == [
        b"MAIL FROM:<%s> SIZE=%d" % (USER.encode(), len(FIXED_MSG))]


@pytest.mark.parametrize("text", [
    b"Subject: lf\n\nbare LF\nlines\n",
    b"Subject: mixed\r\n\nCR\ronly\r\nand no end",
    FIXED_MSG,
])
def test_size_counts_crlf(pwfile, text):
    """RFC 1870 §3: SIZE is what is sent, CRLF line ends included."""
    msg = text
    if b"Date:" not in text:
        msg = FIXED_MSG.split(b"\r\n\r\n")[0] + b"\r\n" + text
    with FakeSMTP(ehlo=["SIZE 100000", "AUTH CRAM-MD5"],
                  auth=["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"]) as f:
        p = send(f, pwfile, user="tim", input=msg)
    assert p.returncode == EX_OK, describe(p)
    mail = [c for c in f.commands if c.startswith(b"MAIL")][0]
    assert mail == b"MAIL FROM:<%s> SIZE=%d" % (USER.encode(),
                                                len(f.messages[0])), mail


def test_no_pipelining_no_size(pwfile):
    with FakeSMTP(ehlo=["AUTH CRAM-MD5"],
                  auth=["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"]) as f:
        p = send(f, pwfile, user="tim", rcpts=["a@example.test",
                                                "b@example.test"])
    assert p.returncode == EX_OK, describe(p)
    assert all(pend == b"" for ln, pend in f.pending
               if ln.startswith((b"MAIL", b"RCPT"))), f.pending
    assert b"MAIL FROM:<%s>" % USER.encode() in f.commands


def test_8bitmime_declared(pwfile):
    msg = FIXED_MSG.replace(b"last line", "Grüße".encode())
    with FakeSMTP(ehlo=["8BITMIME", "SIZE", "AUTH CRAM-MD5"],
                  auth=["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"]) as f:
        p = send(f, pwfile, user="tim", input=msg)
    assert p.returncode == EX_OK, describe(p)
    assert b"MAIL FROM:<%s> SIZE=%d BODY=8BITMIME" % (
        USER.encode(), len(msg)) in f.commands
    assert f.messages == [msg]


def test_ipv6(pwfile):
    with FakeSMTP(host="::1",
                  auth=["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"]) as f:
        p = send(f, pwfile, user="tim")
        assert f.url.startswith("smtp://[::1]:")
    assert p.returncode == EX_OK, describe(p)
    assert f.messages == [FIXED_MSG]
    # RFC 5321 §4.1.3: an IPv6 address literal for EHLO when the host
    # name is not a domain.
    ehlo = f.commands[0]
    assert ehlo.startswith(b"EHLO "), ehlo


def test_without_user_no_auth(pwfile):
    with FakeSMTP() as f:
        p = send(f, pwfile, user=None)
    assert p.returncode == EX_OK, describe(p)
    assert auth_lines(f) == []
    assert f.messages == [FIXED_MSG]


# --- STARTTLS refused, and a reply that arrives with the close ---------------

# The EHLO of a server without STARTTLS, and of one that offers it and
# then refuses it as a downgrading attacker on the path would (RFC 3207
# §4: 454 4.7.0), both offering AUTH in clear.
NO_TLS = dict(ehlo=["PIPELINING", "AUTH CRAM-MD5 PLAIN"])
TLS_REFUSED = dict(ehlo=["PIPELINING", "STARTTLS", "AUTH CRAM-MD5 PLAIN"],
                   replies={"STARTTLS": "454 4.7.0 TLS not available"})


def no_auth_no_mail(f):
    assert auth_lines(f) == [], f.commands
    assert not [c for c in f.commands if c.upper().startswith(
        (b"MAIL", b"RCPT", b"DATA"))], f.commands
    assert f.messages == []
    assert f.commands[-1] == b"QUIT", f.commands
    assert_no_secret(f)


@pytest.mark.parametrize("server", ["omitted", "refused"])
@pytest.mark.parametrize("mode,user", [
    (None, USER), (None, None), ("required", USER), ("required", None),
    ("auto", USER)], ids=["default-user", "default", "required-user",
                          "required", "auto-user"])
def test_no_tls_nothing_sent(pwfile, server, mode, user):
    """smtp:// without TLS: no AUTH, no MAIL, exit 69 and why.  The
    default is --starttls=required; auto goes on in clear only without a
    user."""
    kw = NO_TLS if server == "omitted" else TLS_REFUSED
    extra = ["--starttls=" + mode] if mode else []
    with FakeSMTP(auth=["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"],
                  **kw) as f:
        p = send(f, pwfile, user=user, plain=False, extra=extra)
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    err = p.stderr.decode()
    why = ("the server does not offer STARTTLS" if server == "omitted"
           else "the server refused STARTTLS: 454 4.7.0 TLS not available")
    if mode == "auto":
        want = ("postern send: %s; not authenticating without TLS "
                "(--starttls=auto goes on in clear only without a user)\n"
                % why)
    else:
        want = ("postern send: %s; not %s without TLS (--starttls=required"
                "%s; --starttls=never to send in clear)\n" % (
                    why, "authenticating or sending" if user else "sending",
                    ", the default" if mode is None else ""))
    assert err == want, describe(p)
    if server == "refused":
        assert b"STARTTLS" in f.commands
    else:
        assert b"STARTTLS" not in f.commands
    no_auth_no_mail(f)


@pytest.mark.parametrize("server", ["omitted", "refused"])
def test_no_tls_auto_without_user_goes_on(pwfile, server):
    kw = NO_TLS if server == "omitted" else TLS_REFUSED
    with FakeSMTP(**kw) as f:
        p = send(f, pwfile, user=None, plain=False,
                 extra=["--starttls=auto"])
    assert p.returncode == EX_OK, describe(p)
    assert p.stderr == b"", describe(p)
    assert (b"STARTTLS" in f.commands) == (server == "refused")
    assert auth_lines(f) == []
    assert f.messages == [FIXED_MSG]


def test_no_tls_never_authenticates_in_clear(pwfile):
    """--starttls=never is the explicit way: a mechanism that does not
    send the password, in clear, and the message."""
    with FakeSMTP(auth=["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"],
                  **TLS_REFUSED) as f:
        p = send(f, pwfile, user="tim", plain=False,
                 extra=["--starttls=never"])
    assert p.returncode == EX_OK, describe(p)
    assert b"STARTTLS" not in f.commands
    assert auth_lines(f) == [b"AUTH CRAM-MD5"]
    assert f.messages == [FIXED_MSG]


def test_starttls_421_is_temporary(pwfile):
    """421 to STARTTLS is the server closing, not a refusal of TLS."""
    with FakeSMTP(ehlo=["STARTTLS", "AUTH CRAM-MD5"],
                  replies={"STARTTLS": Close("421 4.3.2 Shutting down")}) as f:
        p = send(f, pwfile, user="tim", plain=False)
    assert p.returncode == EX_TEMPFAIL, describe(p)
    assert "421 4.3.2 Shutting down" in p.stderr.decode()
    assert auth_lines(f) == []


def test_starttls_reply_injection(pwfile):
    """RFC 3207 §4.2 (CVE-2011-0411 class): a reply pipelined behind the
    220 of STARTTLS, before the handshake, is an attack: stop at once,
    without a handshake and without AUTH."""
    with FakeSMTP(ehlo=["STARTTLS", "AUTH CRAM-MD5"],
                  replies={"STARTTLS": "220 go ahead\r\n250 injected"}) as f:
        t0 = time.time()
        p = send(f, pwfile, user="tim", plain=False, timeout_opt=10)
        took = time.time() - t0
    assert p.returncode == EX_PROTOCOL, describe(p)
    assert "unexpected data" in p.stderr.decode()
    assert took < 5, took
    assert auth_lines(f) == []


@pytest.fixture(scope="module")
def cert(tmp_path_factory):
    d = tmp_path_factory.mktemp("cert")
    subprocess.run([os.path.join(ROOT, "tools", "gen-cert.sh"), "-t", "ec",
                    "mail.example.test", str(d)], check=True,
                   capture_output=True, timeout=60)
    return d / "cert.pem", d / "key.pem"


@pytest.mark.parametrize("text,code", [
    (b"554 5.7.1 No service for you\r\n", EX_UNAVAILABLE),
    (b"421 4.3.2 Shutting down\r\n", EX_TEMPFAIL),
])
def test_reply_with_tls_close(pwfile, cert, text, code):
    """The greeting and the close_notify in one read: the reply is what
    the user is told, not "the server closed the TLS session"."""
    with TLSSayAndClose(cert[0], cert[1], text) as t:
        p = run_postern(["send", "--server", t.url, "--cafile", cert[0],
                         "--timeout", "10", "--from", USER, "--to", USER,
                         "--user", USER, "--password-file", pwfile],
                        input=FIXED_MSG)
    assert not t.errors, t.errors
    assert p.returncode == code, describe(p)
    assert text.decode().strip() in p.stderr.decode(), describe(p)


# --- the choice of mechanism ---------------------------------------------------

@pytest.mark.parametrize("offered,want", [
    ("LOGIN PLAIN CRAM-MD5 DIGEST-MD5 SCRAM-SHA-1 SCRAM-SHA-256",
     "SCRAM-SHA-256"),
    ("LOGIN PLAIN CRAM-MD5 DIGEST-MD5 SCRAM-SHA-1", "SCRAM-SHA-1"),
    ("LOGIN PLAIN CRAM-MD5 DIGEST-MD5", "DIGEST-MD5"),
    ("LOGIN PLAIN CRAM-MD5", "CRAM-MD5"),
    ("LOGIN PLAIN", "PLAIN"),
    ("LOGIN", "LOGIN"),
])
def test_strongest_first(pwfile, offered, want):
    with FakeSMTP(ehlo=["AUTH " + offered]) as f:
        p = send(f, pwfile)
    assert p.returncode == EX_NOPERM, describe(p)  # the fake says 535
    assert [l.split(b" ")[1] for l in auth_lines(f)] == [want.encode()]


# --- recipients --------------------------------------------------------------

def test_many_recipients(pwfile):
    """More recipients than replies awaited at once (pipelined in a
    window): all go, DATA after the last reply."""
    rcpts = ["r%03d@example.test" % i for i in range(300)]
    with FakeSMTP(auth=["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"]) as f:
        p = send(f, pwfile, user="tim", rcpts=rcpts)
    assert p.returncode == EX_OK, describe(p)
    got = [c for c in f.commands if c.startswith(b"RCPT")]
    assert got == [b"RCPT TO:<%s>" % r.encode() for r in rcpts]
    assert f.messages == [FIXED_MSG]


@pytest.mark.parametrize("opt", ["--to", "--cc", "--bcc"])
def test_address_with_display_name_is_usage_error(pwfile, opt):
    with FakeSMTP() as f:
        a = ["send", "--server", f.url, "--starttls=never", "--from",
             USER, "--to", USER, opt, "Alice <alice@example.test>"]
        p = run_postern(a, input=FIXED_MSG)
    assert p.returncode == EX_USAGE, describe(p)
    assert "'Alice <alice@example.test>' is not an address" in \
        p.stderr.decode()
    assert f.commands == []
