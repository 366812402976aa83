"""Every reply code of issue 4's Protocol section, triggered on purpose
over a raw socket against a running posternd, with its enhanced status
code (RFC 3463, RFC 4954 §4-§6, RFC 5321, RFC 1870).

Tests that can share a configuration use the module's posternd; those
that need another one (sender_check = off, timeouts, connection limits,
a small max_errors) start their own.
"""
import base64
import hashlib
import hmac
import os
import socket
import subprocess
import time

import pytest

from posternd_util import (ALL_SCHEMES, Posternd, b64, posternd_bin,
                           read_all_replies, unique_rcpt, wait_until)

USER = "tim@example.test"
PASSWORD = "tanstaaftanstaaf"
MAX_SIZE = 65536

LISTENERS = {
    "plain": "tls = none\nauth = required\nauth_before_tls = all\n",
    "optional": "tls = none\nauth = optional\nauth_before_tls = all\n",
    "starttls": "tls = starttls\nauth = required\nauth_before_tls = none\n",
    "implicit": "tls = implicit\nauth = required\n",
    "legacy": "tls = starttls\nauth = required\nauth_before_tls = challenge\n",
}

USERS = {
    USER: (PASSWORD, ALL_SCHEMES, ""),
    # allow_from=: an address and a whole domain.
    "ann@example.test": ("annannannann", "SHA512-CRYPT",
                         "allow_from=alias@example.test,@ann.test"),
    # A user whose name is not an address owns only its allow_from.
    "printer": ("printerprinter", "SHA512-CRYPT",
                "allow_from=scanner@example.test"),
}

OK_235 = (235, ["235 2.7.0 Authentication successful"])
BAD_535 = (535, ["535 5.7.8 Authentication credentials invalid"])
NEED_AUTH = (530, ["530 5.7.0 Authentication required"])
BAD_MECH = (504, ["504 5.5.4 Unrecognized authentication type"])
BAD_B64 = (501, ["501 5.5.2 Invalid base64 data"])
IR_REFUSED = (501, ["501 5.7.0 Initial response not allowed for this "
                    "mechanism"])
CANCELLED = (501, ["501 5.7.0 Authentication cancelled"])
NOT_OWNED = (553, ["553 5.7.1 Error: sender address not owned by the "
                   "authenticated user"])
MAIL_OK = (250, ["250 2.1.0 Ok"])
RCPT_OK = (250, ["250 2.1.5 Ok"])
DATA_GO = (354, ["354 End data with <CR><LF>.<CR><LF>"])


def start(tmp, extra="", listeners=None, users=None):
    if not os.access(posternd_bin(), os.X_OK):
        pytest.fail(f"{posternd_bin()} is not built")
    # A short grace period: a failed test may leave a session open.
    return Posternd(tmp, extra_global="grace_period = 2\n" + extra,
                    listeners=listeners or LISTENERS,
                    users=users or USERS).start()


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    p = start(tmp_path_factory.mktemp("replies"),
              f"max_message_size = {MAX_SIZE}\n")
    yield p
    rc = p.stop()
    assert rc == 0, f"posternd exit {rc}:\n{p.log()[-3000:]}"


def greeted(srv, listener="plain"):
    """A connection past the greeting and EHLO."""
    r = srv.raw(listener)
    assert r.reply() == (220, ["220 mail.example.test ESMTP ready"])
    code, _ = r.ehlo()
    assert code == 250
    return r


def authed(srv, listener="plain", user=USER, password=PASSWORD):
    r = greeted(srv, listener)
    assert r.login(user, password) == OK_235
    return r


def quit_ok(r):
    assert r.cmd("QUIT") == (221, ["221 2.0.0 Bye"])
    assert r.closed()
    r.close()


def nothing_delivered(srv, *rcpts):
    # A closed session drops its spool file just after it logs.
    assert wait_until(lambda: srv.spool_files() == []), srv.spool_files()
    for a in rcpts:
        assert srv.messages(a) == [], a
        assert srv.maildir_files(a) == [], a


# --- EHLO -------------------------------------------------------------------

def test_ehlo_keywords(srv):
    r = srv.raw("plain")
    r.reply()
    code, lines = r.cmd("EHLO client.example.test")
    assert (code, lines) == (250, [
        "250-mail.example.test",
        "250-PIPELINING",
        f"250-SIZE {MAX_SIZE}",
        "250-8BITMIME",
        "250-AUTH SCRAM-SHA-256 SCRAM-SHA-1 DIGEST-MD5 CRAM-MD5 PLAIN LOGIN",
        "250 ENHANCEDSTATUSCODES"])
    quit_ok(r)


@pytest.mark.parametrize("listener, auth", [
    ("starttls", None),
    ("legacy", "SCRAM-SHA-256 SCRAM-SHA-1 DIGEST-MD5 CRAM-MD5"),
])
def test_ehlo_before_and_after_starttls(srv, listener, auth):
    """auth_before_tls decides what is offered before TLS; after it
    STARTTLS is gone and every mechanism is offered (RFC 3207 §4.2)."""
    r = srv.raw(listener)
    r.reply()
    code, kw = r.ehlo()
    assert "STARTTLS" in kw
    assert kw.get("AUTH") == auth
    assert r.cmd("STARTTLS") == (220, ["220 2.0.0 Ready to start TLS"])
    assert r.starttls(srv.ssl_context()) == b""
    code, kw = r.ehlo()
    assert code == 250
    assert "STARTTLS" not in kw
    assert kw["AUTH"] == \
        "SCRAM-SHA-256 SCRAM-SHA-1 DIGEST-MD5 CRAM-MD5 PLAIN LOGIN"
    assert r.cmd("STARTTLS") == (503, ["503 5.5.1 Error: TLS already active"])
    assert r.login() == OK_235
    quit_ok(r)


# --- RFC 5321 ------------------------------------------------------------------

def test_500_overlong_command_line(srv):
    """§4.5.3.1.4: 512 octets with CRLF; the session goes on."""
    r = greeted(srv)
    assert r.cmd("NOOP " + "x" * 600) == \
        (500, ["500 5.5.6 Error: line too long"])
    assert r.cmd("NOOP " + "x" * 5000)[0] == 500
    assert r.cmd("NOOP") == (250, ["250 2.0.0 Ok"])
    # 510 octets + CRLF is within the limit.
    assert r.cmd("NOOP " + "x" * 505) == (250, ["250 2.0.0 Ok"])
    assert r.cmd("NOOP " + "x" * 506) == \
        (500, ["500 5.5.6 Error: line too long"])
    quit_ok(r)


def test_500_unknown_command(srv):
    r = greeted(srv)
    assert r.cmd("FROB x") == (500, ["500 5.5.1 Error: command not recognized"])
    quit_ok(r)


@pytest.mark.parametrize("line, usage", [
    ("EHLO", "EHLO domain"),
    ("HELO", "HELO domain"),
    ("NOOP", None),
    ("AUTH", "AUTH mechanism [initial-response]"),
    ("QUIT now", "QUIT"),
])
def test_501_syntax(srv, line, usage):
    r = greeted(srv)
    code, lines = r.cmd(line)
    if usage is None:
        assert (code, lines) == (250, ["250 2.0.0 Ok"])
    else:
        assert (code, lines) == (501, [f"501 5.5.4 Syntax: {usage}"])
    quit_ok(r)


def test_501_mail_rcpt_syntax(srv):
    r = authed(srv)
    assert r.cmd("MAIL") == \
        (501, ["501 5.5.4 Syntax: MAIL FROM:<address>"])
    assert r.cmd("MAIL TO:<tim@example.test>") == \
        (501, ["501 5.5.4 Syntax: FROM:<address>"])
    assert r.cmd(f"MAIL FROM:<{USER}> SIZE=abc") == \
        (501, ["501 5.5.4 Bad parameter syntax"])
    # RFC 3463 5.1.7: bad sender mailbox syntax.
    assert r.cmd(f"MAIL FROM:<{USER}") == \
        (501, ["501 5.1.7 Bad sender address syntax"])
    assert r.cmd("MAIL FROM:") == \
        (501, ["501 5.1.7 Bad sender address syntax"])
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd("RCPT") == (501, ["501 5.5.4 Syntax: RCPT TO:<address>"])
    code, lines = r.cmd("RCPT TO:<no-at-sign>")
    assert code == 501 and lines[0].startswith("501 5.1.3 "), lines
    quit_ok(r)


def test_503_bad_sequence(srv):
    r = authed(srv)
    assert r.cmd("RCPT TO:<x@example.test>") == \
        (503, ["503 5.5.1 Error: need MAIL command"])
    assert r.cmd("DATA") == (503, ["503 5.5.1 Error: need MAIL command"])
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"MAIL FROM:<{USER}>") == \
        (503, ["503 5.5.1 Error: nested MAIL command"])
    code, lines = r.cmd("DATA")
    assert code == 503 and lines[0].startswith("503 5.5.1 "), lines
    quit_ok(r)


def test_503_before_ehlo(srv):
    r = srv.raw("plain")
    r.reply()
    code, lines = r.cmd("AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}"))
    assert code == 503 and lines[0].startswith("503 5.5.1 "), lines
    quit_ok(r)


def test_252_vrfy_and_214_help(srv):
    r = greeted(srv)
    # auth = required: VRFY and HELP need AUTH too.
    assert r.cmd("VRFY tim") == NEED_AUTH
    assert r.cmd("HELP") == NEED_AUTH
    assert r.login() == OK_235
    assert r.cmd("VRFY tim") == (252, [
        "252 2.5.0 Cannot VRFY user, but will accept message and attempt "
        "delivery"])
    code, lines = r.cmd("HELP")
    assert code == 214 and lines[-1].startswith("214 2.0.0 "), lines
    quit_ok(r)


def test_530_mail_before_auth(srv):
    r = greeted(srv)
    assert r.cmd(f"MAIL FROM:<{USER}>") == NEED_AUTH
    assert r.cmd("RCPT TO:<x@example.test>") == NEED_AUTH
    assert r.cmd("DATA") == NEED_AUTH
    # RSET and NOOP are allowed (RFC 4954 §6).
    assert r.cmd("RSET") == (250, ["250 2.0.0 Ok"])
    assert r.cmd("NOOP") == (250, ["250 2.0.0 Ok"])
    quit_ok(r)


def test_552_size_parameter(srv):
    """RFC 1870 §6: SIZE= above the limit is refused at MAIL."""
    r = authed(srv)
    assert r.cmd(f"MAIL FROM:<{USER}> SIZE={MAX_SIZE + 1}") == (552, [
        "552 5.3.4 Message size exceeds fixed maximum message size"])
    assert r.cmd(f"MAIL FROM:<{USER}> SIZE={MAX_SIZE}") == MAIL_OK
    quit_ok(r)


def test_552_size_of_data(srv):
    """A message larger than max_message_size without SIZE=: 552 5.3.4
    after the final dot, nothing delivered, the session goes on."""
    rcpt = unique_rcpt("toobig")
    r = authed(srv)
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    r.send(b"Subject: big\r\n\r\n" + (b"y" * 998 + b"\r\n") * 70 + b".\r\n")
    assert r.reply() == (552, [
        "552 5.3.4 Error: message size exceeds fixed maximum message size"])
    assert r.cmd("NOOP") == (250, ["250 2.0.0 Ok"])
    quit_ok(r)
    nothing_delivered(srv, rcpt)


def test_500_overlong_text_line(srv):
    """§4.5.3.1.6: a text line of more than 1000 octets with CRLF."""
    rcpt = unique_rcpt("longline")
    r = authed(srv)
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    r.send(b"Subject: x\r\n\r\n" + b"y" * 999 + b"\r\n.\r\n")
    assert r.reply() == (500, ["500 5.5.6 Error: message line too long"])
    # 998 octets + CRLF is fine.
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    body = b"Subject: x\r\n\r\n" + b"y" * 998 + b"\r\n"
    r.send(body + b".\r\n")
    code, lines = r.reply()
    assert code == 250 and lines[0].startswith("250 2.0.0 Ok: queued as "), \
        lines
    quit_ok(r)
    msgs = srv.messages(rcpt)
    assert len(msgs) == 1 and msgs[0].endswith(b"\r\n\r\n" + body[14:])


@pytest.mark.parametrize("data", [
    b"Subject: x\r\n\r\nbare\nLF\r\n.\r\n",
    b"Subject: x\r\n\r\nbare\rCR\r\n.\r\n",
], ids=["bare-lf", "bare-cr"])
def test_550_bare_cr_lf_in_data(srv, data):
    rcpt = unique_rcpt("bare")
    r = authed(srv)
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    r.send(data)
    assert r.reply() == (550, ["550 5.6.0 Error: bare <CR> or <LF> in message"])
    assert r.cmd("NOOP") == (250, ["250 2.0.0 Ok"])
    quit_ok(r)
    nothing_delivered(srv, rcpt)


@pytest.mark.parametrize("end", [b"\n.\r\n", b"\n.\n", b"\r\n.\n", b"\r.\r\n"],
                         ids=["lf-dot-crlf", "lf-dot-lf", "crlf-dot-lf",
                              "cr-dot-crlf"])
def test_no_smuggling(srv, end):
    """RFC 5321 §2.3.8, CVE-2023-51764: only CRLF.CRLF ends the data; a
    message hidden behind another end-of-data form is never a second
    message, and its commands are never executed."""
    outer, inner = unique_rcpt("outer"), unique_rcpt("smuggled")
    r = authed(srv)
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{outer}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    r.send(b"Subject: outer\r\n\r\nhello" + end +
           f"MAIL FROM:<{USER}>\r\nRCPT TO:<{inner}>\r\nDATA\r\n".encode() +
           b"Subject: smuggled\r\n\r\nx\r\n.\r\n")
    code, lines = r.reply()
    # Refused whole (bare CR/LF), or stored as one message.
    assert code in (550, 250), lines
    assert r.cmd("NOOP") == (250, ["250 2.0.0 Ok"])
    quit_ok(r)
    assert srv.messages(inner) == []
    if code == 250:
        assert len(srv.messages(outer)) == 1
        assert b"Subject: smuggled" in srv.messages(outer)[0]
    else:
        assert lines == ["550 5.6.0 Error: bare <CR> or <LF> in message"]
        nothing_delivered(srv, outer)


def test_dot_unstuffing(srv):
    rcpt = unique_rcpt("dots")
    r = authed(srv)
    assert r.cmd(f"MAIL FROM:<{USER}> BODY=8BITMIME") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    r.send(b"Subject: dots\r\n\r\n..one\r\n...two\r\n.\r\n")
    assert r.reply()[0] == 250
    quit_ok(r)
    msgs = srv.messages(rcpt)
    assert len(msgs) == 1
    assert msgs[0].endswith(b"\r\nSubject: dots\r\n\r\n.one\r\n..two\r\n")


@pytest.mark.parametrize("rcpt, want", [
    ("../x@example.test", "501 5.1.3 Bad recipient address syntax"),
    (".hidden@example.test", "501 5.1.3 Bad recipient address syntax"),
    ("x@..", "501 5.1.3 Bad recipient address syntax"),
    ("", "501 5.1.3 Bad recipient address syntax"),
    ("a/b@example.test", "553 5.1.3 Recipient address not accepted here"),
])
def test_rcpt_address_refused(srv, rcpt, want):
    """Addresses that could leave the mailbox template's directory never
    name a Maildir (the RFC 5321 syntax check or config_mailbox_expand)."""
    before = sorted(os.listdir(srv.maildir_root))
    r = authed(srv)
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{rcpt}>") == (int(want[:3]), [want])
    # RFC 5321 §3.3: 554 when a RCPT was refused, 503 when none parsed.
    assert r.cmd("DATA") in [(554, ["554 5.5.1 Error: no valid recipients"]),
                             (503, ["503 5.5.1 Error: need RCPT command"])]
    quit_ok(r)
    assert sorted(os.listdir(srv.maildir_root)) == before


def test_recipient_domain_lowercased(srv):
    """%d is the domain lowercased (RFC 5321 §2.4)."""
    local = unique_rcpt("case").split("@")[0]
    r = authed(srv)
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{local}@EXAMPLE.Test>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    r.send(b"Subject: case\r\n\r\nx\r\n.\r\n")
    assert r.reply()[0] == 250
    quit_ok(r)
    assert len(srv.messages(f"{local}@example.test")) == 1


def test_unauthenticated_mail_on_optional_listener(srv):
    """auth = optional: mail without AUTH is accepted, the sender is not
    checked, AUTH=<> on MAIL is accepted (RFC 4954 §5), and Received says
    ESMTP (no A: RFC 3848)."""
    rcpt = unique_rcpt("optional")
    r = greeted(srv, "optional")
    assert r.cmd("MAIL FROM:<someone@example.org> AUTH=<>") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    r.send(b"Subject: anon\r\n\r\nx\r\n.\r\n")
    assert r.reply()[0] == 250
    quit_ok(r)
    msgs = srv.messages(rcpt)
    assert len(msgs) == 1
    assert b"\r\n\tby mail.example.test (postern) with ESMTP id " in msgs[0]


def test_helo_then_auth(srv):
    """AUTH is an ESMTP extension: after HELO it is a bad sequence, and
    MAIL parameters are unknown."""
    r = srv.raw("optional")
    r.reply()
    assert r.cmd("HELO client.example.test") == \
        (250, ["250 mail.example.test"])
    assert r.cmd("AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}")) == \
        (503, ["503 5.5.1 Error: send EHLO first"])
    assert r.cmd("MAIL FROM:<a@example.org> SIZE=10") == \
        (555, ["555 5.5.4 Unsupported parameter"])
    quit_ok(r)


# --- AUTH (RFC 4954) ----------------------------------------------------------

def test_334_empty_challenge_and_235(srv):
    """§4: PLAIN without an initial response gets exactly "334 " (the
    space is mandatory), then the response; success is 235 2.7.0."""
    r = greeted(srv)
    r.send("AUTH PLAIN\r\n")
    deadline = time.time() + 10
    while b"\r\n" not in r.buf and time.time() < deadline:
        r.buf += r.sock.recv(4096)
    assert r.buf == b"334 \r\n"
    r.buf = b""
    assert r.cmd(b64(f"\0{USER}\0{PASSWORD}")) == OK_235
    quit_ok(r)


def test_login_two_step(srv):
    r = greeted(srv)
    assert r.cmd("AUTH LOGIN") == (334, ["334 VXNlcm5hbWU6"])
    assert r.cmd(b64(USER)) == (334, ["334 UGFzc3dvcmQ6"])
    assert r.cmd(b64(PASSWORD)) == OK_235
    quit_ok(r)


def test_login_initial_response(srv):
    """smtplib sends LOGIN's user name as an initial response."""
    r = greeted(srv)
    assert r.cmd("AUTH LOGIN " + b64(USER)) == (334, ["334 UGFzc3dvcmQ6"])
    assert r.cmd(b64(PASSWORD)) == OK_235
    quit_ok(r)


@pytest.mark.parametrize("mech", ["LOGIN", "PLAIN", "CRAM-MD5", "DIGEST-MD5",
                                  "SCRAM-SHA-1", "SCRAM-SHA-256"])
def test_501_cancel(srv, mech):
    """§4: "*" cancels the exchange: 501 5.7.0."""
    r = greeted(srv)
    code, _ = r.cmd(f"AUTH {mech}")
    assert code == 334
    assert r.cmd("*") == CANCELLED
    assert r.login() == OK_235
    quit_ok(r)


@pytest.mark.parametrize("mech", ["CRAM-MD5", "DIGEST-MD5"])
def test_501_initial_response_to_server_first(srv, mech):
    """§4: an initial response to a mechanism where the server speaks
    first is 501 5.7.0."""
    r = greeted(srv)
    assert r.cmd(f"AUTH {mech} " + b64("tim 0123")) == IR_REFUSED
    quit_ok(r)


@pytest.mark.parametrize("ir", ["=AAA", "AAA=BBB", "AH!p", "A"])
def test_501_bad_base64_initial_response(srv, ir):
    r = greeted(srv)
    assert r.cmd(f"AUTH PLAIN {ir}") == BAD_B64
    assert r.login() == OK_235
    quit_ok(r)


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN", "CRAM-MD5"])
def test_501_bad_base64_response(srv, mech):
    r = greeted(srv)
    assert r.cmd(f"AUTH {mech}")[0] == 334
    assert r.cmd("!!notbase64!!") == BAD_B64
    quit_ok(r)


@pytest.mark.parametrize("mech", ["FROB", "GSSAPI", "EXTERNAL", "PLAIN-X",
                                  "SCRAM-SHA-256-PLUS"])
def test_504_unknown_mechanism(srv, mech):
    r = greeted(srv)
    assert r.cmd(f"AUTH {mech}") == BAD_MECH
    quit_ok(r)


@pytest.mark.parametrize("listener, mech, offered", [
    ("starttls", "PLAIN", False),
    ("starttls", "LOGIN", False),
    ("starttls", "CRAM-MD5", False),
    ("starttls", "SCRAM-SHA-256", False),
    ("legacy", "PLAIN", False),
    ("legacy", "LOGIN", False),
    ("legacy", "CRAM-MD5", True),
    ("legacy", "SCRAM-SHA-1", True),
])
def test_504_mechanism_not_offered_before_tls(srv, listener, mech, offered):
    """§4: a mechanism not offered in the current state (PLAIN before
    TLS) is 504 5.5.4 (538 is historical)."""
    r = greeted(srv, listener)
    ir = " " + b64(f"\0{USER}\0{PASSWORD}") if mech == "PLAIN" else ""
    code, lines = r.cmd(f"AUTH {mech}{ir}")
    if offered:
        assert code == 334, lines
        assert r.cmd("*") == CANCELLED
    else:
        assert (code, lines) == BAD_MECH
    quit_ok(r)


@pytest.mark.parametrize("user, password", [
    (USER, "wrong"),
    (USER, PASSWORD + "x"),
    (USER.upper(), PASSWORD),
    ("nobody@example.test", PASSWORD),
    ("ann@example.test", PASSWORD),
])
def test_535_wrong_credentials(srv, user, password):
    r = greeted(srv)
    assert r.login(user, password) == BAD_535
    assert r.cmd(f"MAIL FROM:<{USER}>") == NEED_AUTH
    quit_ok(r)


@pytest.mark.parametrize("message", [
    f"\0{USER}\0",                   # empty password (RFC 4616 §2: 1*SAFE)
    f"\0\0{PASSWORD}",               # empty authcid
    f"{USER}{PASSWORD}",             # no NUL
    f"\0{USER}\0{PASSWORD}\0x",       # one NUL too many
])
def test_501_malformed_plain(srv, message):
    """A PLAIN message that does not parse is a syntax error, 501 5.5.2;
    no user is looked up."""
    r = greeted(srv)
    assert r.cmd("AUTH PLAIN " + b64(message)) == \
        (501, ["501 5.5.2 Malformed authentication response"])
    assert r.login() == OK_235
    quit_ok(r)


def test_535_challenge_mechanism_without_verifier(srv):
    """A user with no verifier for CRAM-MD5 fails like a wrong password
    (DESIGN.md, "The user file")."""
    r = greeted(srv)
    code, lines = r.cmd("AUTH CRAM-MD5")
    assert code == 334
    chal = base64.b64decode(lines[0][4:])
    digest = hmac.new(b"annannannann", chal, hashlib.md5).hexdigest()
    assert r.cmd(b64(f"ann@example.test {digest}")) == BAD_535
    quit_ok(r)


def test_503_auth_after_auth(srv):
    r = authed(srv)
    assert r.cmd("AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}")) == \
        (503, ["503 5.5.1 Error: already authenticated"])
    assert r.cmd("AUTH CRAM-MD5") == \
        (503, ["503 5.5.1 Error: already authenticated"])
    quit_ok(r)


def test_503_auth_inside_transaction(srv):
    """auth = optional: a transaction can start before AUTH; AUTH inside
    it is 503 5.5.1 (RFC 4954 §4)."""
    r = greeted(srv, "optional")
    assert r.cmd("MAIL FROM:<someone@example.org>") == MAIL_OK
    assert r.cmd("AUTH PLAIN " + b64(f"\0{USER}\0{PASSWORD}")) == \
        (503, ["503 5.5.1 Error: MAIL transaction in progress"])
    assert r.cmd("RSET") == (250, ["250 2.0.0 Ok"])
    assert r.login() == OK_235
    quit_ok(r)


def test_500_auth_line_too_long(srv):
    """§4: an AUTH line or a continuation longer than 12288 octets (CRLF
    excluded) is 500 5.5.6; 12288 is read whole (and then fails for what
    it says, 501)."""
    r = greeted(srv)
    assert r.cmd("AUTH PLAIN " + "A" * (12289 - 11)) == \
        (500, ["500 5.5.6 Error: line too long"])
    assert r.cmd("AUTH PLAIN " + "A" * (12288 - 11)) == BAD_B64
    assert r.cmd("AUTH PLAIN") == (334, ["334 "])
    assert r.cmd("A" * 12289) == \
        (500, ["500 5.5.6 Authentication Exchange line is too long"])
    assert r.cmd("AUTH PLAIN") == (334, ["334 "])
    assert r.cmd("A" * 12288) == \
        (501, ["501 5.5.2 Malformed authentication response"])
    # An AUTH line longer than 512 octets but within 12288 is read whole.
    assert r.login(USER, "p" * 1000) == BAD_535
    assert r.login() == OK_235
    quit_ok(r)


def test_three_failed_auths_keep_the_connection(srv):
    """§9: not dropped before 3 failures; the 4th attempt still works."""
    r = greeted(srv)
    for _ in range(3):
        assert r.login(USER, "wrong") == BAD_535
    assert r.cmd("NOOP") == (250, ["250 2.0.0 Ok"])
    assert r.login() == OK_235
    quit_ok(r)


def test_mail_auth_parameter(srv):
    """§5: AUTH= on MAIL is accepted (<> and an xtext address)."""
    rcpt = unique_rcpt("authparam")
    r = authed(srv)
    assert r.cmd(f"MAIL FROM:<{USER}> AUTH=<>") == MAIL_OK
    assert r.cmd("RSET")[0] == 250
    assert r.cmd(f"MAIL FROM:<{USER}> AUTH=tim+40example.test") == MAIL_OK
    assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    r.send(b"Subject: a\r\n\r\nx\r\n.\r\n")
    assert r.reply()[0] == 250
    quit_ok(r)
    assert len(srv.messages(rcpt)) == 1


def test_auth_lines_redacted_in_log(srv):
    r = greeted(srv)
    assert r.login(USER, "s3cr3t-wrong") == BAD_535
    assert r.cmd("AUTH LOGIN") == (334, ["334 VXNlcm5hbWU6"])
    assert r.cmd(b64(USER)) == (334, ["334 UGFzc3dvcmQ6"])
    assert r.cmd(b64("s3cr3t-wrong")) == BAD_535
    quit_ok(r)
    log = srv.log()
    assert "s3cr3t" not in log
    assert b64(f"\0{USER}\0s3cr3t-wrong") not in log
    assert b64("s3cr3t-wrong") not in log


# --- Sender check -------------------------------------------------------------

def send_one(r, sender, rcpt):
    assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
    assert r.cmd("DATA") == DATA_GO
    r.send(f"From: <{sender}>\r\nSubject: s\r\n\r\nx\r\n.\r\n")
    code, lines = r.reply()
    assert code == 250, lines


def test_553_sender_not_owned(srv):
    rcpt = unique_rcpt("sender")
    r = authed(srv)
    for sender in ["bob@example.test", "tim@example.org", "tim@example.test.x",
                   "alias@example.test"]:
        assert r.cmd(f"MAIL FROM:<{sender}>") == NOT_OWNED, sender
        assert r.cmd(f"RCPT TO:<{rcpt}>") == \
            (503, ["503 5.5.1 Error: need MAIL command"])
    assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
    quit_ok(r)
    nothing_delivered(srv, rcpt)
    assert srv.events("sender_refused", user=USER, sender="bob@example.test")


@pytest.mark.parametrize("user, password, allowed, refused", [
    ("ann@example.test", "annannannann",
     ["ann@example.test", "alias@example.test", "anyone@ann.test"],
     ["tim@example.test", "alias2@example.test", "x@sub.ann.test"]),
    ("printer", "printerprinter",
     ["scanner@example.test"],
     ["printer@example.test", "tim@example.test"]),
])
def test_sender_allow_from(srv, user, password, allowed, refused):
    """allow_from= in the user file's extra fields (a comma list of
    addresses and @domains)."""
    rcpt = unique_rcpt("allow")
    r = authed(srv, user=user, password=password)
    for sender in refused:
        assert r.cmd(f"MAIL FROM:<{sender}>") == NOT_OWNED, sender
    for sender in allowed:
        assert r.cmd(f"MAIL FROM:<{sender}>") == MAIL_OK, sender
        send_one(r, sender, rcpt)
    quit_ok(r)
    msgs = srv.messages(rcpt)
    assert len(msgs) == len(allowed)


def test_sender_check_off(tmp_path):
    p = start(tmp_path, "sender_check = off\nlegacy_auth_line = yes\n",
              listeners={"plain": LISTENERS["plain"]})
    try:
        rcpt = unique_rcpt("off")
        r = p.raw("plain")
        r.reply()
        code, kw = r.ehlo()
        # legacy_auth_line: also "250-AUTH=..." naming offered mechanisms.
        legacy = [k for k in kw if k.startswith("AUTH=")]
        assert len(legacy) == 1, kw
        mechs = (legacy[0][5:] + " " + kw[legacy[0]]).split()
        assert "PLAIN" in mechs and "LOGIN" in mechs, kw
        assert set(mechs) <= set(kw["AUTH"].split()), kw
        assert r.login() == OK_235
        assert r.cmd("MAIL FROM:<bob@example.org>") == MAIL_OK
        send_one(r, "bob@example.org", rcpt)
        quit_ok(r)
        assert len(p.messages(rcpt)) == 1
    finally:
        assert p.stop() == 0


# --- Limits and timeouts (their own posternd) ----------------------------------


def test_421_too_many_errors(tmp_path):
    p = start(tmp_path, "max_errors = 5\n",
              listeners={"plain": LISTENERS["plain"]})
    try:
        r = greeted(p)
        # Pipelined: the errors are counted one by one all the same.
        r.send("FROB\r\n" * 8)
        got = read_all_replies(r)
        want = [(500, ["500 5.5.1 Error: command not recognized"])] * 5 + \
            [(421, ["421 4.7.0 mail.example.test Error: too many errors"])]
        assert got == want
        # Every error of the session counts: a success between errors
        # does not start the count again (4 errors, NOOP, the fifth ends).
        r = greeted(p)
        for _ in range(4):
            assert r.cmd("FROB")[0] == 500
        assert r.cmd("NOOP")[0] == 250
        assert r.cmd("FROB") == \
            (500, ["500 5.5.1 Error: command not recognized"])
        assert read_all_replies(r) == \
            [(421, ["421 4.7.0 mail.example.test Error: too many errors"])]
    finally:
        assert p.stop() == 0


def test_452_too_many_recipients(tmp_path):
    p = start(tmp_path, "max_recipients = 2\n",
              listeners={"plain": LISTENERS["plain"]})
    try:
        a, b, c = (unique_rcpt(x) for x in "abc")
        r = authed(p)
        assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
        assert r.cmd(f"RCPT TO:<{a}>") == RCPT_OK
        assert r.cmd(f"RCPT TO:<{b}>") == RCPT_OK
        assert r.cmd(f"RCPT TO:<{c}>") == \
            (452, ["452 4.5.3 Error: too many recipients"])
        assert r.cmd("DATA") == DATA_GO
        r.send(b"Subject: two\r\n\r\nx\r\n.\r\n")
        assert r.reply()[0] == 250
        quit_ok(r)
        assert len(p.messages(a)) == len(p.messages(b)) == 1
        assert p.messages(c) == []
    finally:
        assert p.stop() == 0


def test_421_after_failed_auths_not_before_three(tmp_path):
    """max_errors = 3 (the smallest RFC 4954 §9 allows): three failed
    AUTHs, then the session may end."""
    p = start(tmp_path, "max_errors = 3\n",
              listeners={"plain": LISTENERS["plain"]})
    try:
        r = greeted(p)
        assert r.login(USER, "wrong") == BAD_535
        assert r.login(USER, "wrong") == BAD_535
        assert r.login(USER, "wrong") == BAD_535
        got = read_all_replies(r)
        assert got == \
            [(421, ["421 4.7.0 mail.example.test Error: too many errors"])]
    finally:
        assert p.stop() == 0


@pytest.mark.parametrize("value", [1, 2])
def test_max_errors_below_three_refused(tmp_path, value):
    """The session needs max_errors >= 3 (RFC 4954 §9); a configuration
    with less must be refused up front, not by closing every connection
    without a word."""
    p = Posternd(tmp_path, extra_global=f"max_errors = {value}\n",
                 listeners={"plain": LISTENERS["plain"]}, users=USERS)
    with pytest.raises(RuntimeError):
        p.start()
    assert p.proc.returncode == 78
    assert "max_errors" in p.log()
    t = subprocess.run([posternd_bin(), "-c", p.conf, "-t"],
                       capture_output=True, text=True, timeout=30)
    assert t.returncode == 78
    assert "max_errors" in t.stderr


def test_421_connection_limit_per_ip(tmp_path):
    p = start(tmp_path, "max_connections_per_ip = 2\n",
              listeners={"plain": LISTENERS["plain"],
                         "implicit": LISTENERS["implicit"]})
    try:
        # start() probed each port; those connections count until the
        # event loop that took them has seen them close.
        assert wait_until(lambda: len(p.events("disconnect")) ==
                          len(p.events("connect")) >= len(p.ports))
        a = greeted(p)
        b = greeted(p)
        c = p.raw("plain")
        assert read_all_replies(c) == [(421, [
            "421 4.7.0 mail.example.test Error: too many connections, "
            "try again later"])]
        # Implicit TLS: no 421 in clear; the connection just closes.
        with pytest.raises((OSError, EOFError)):
            d = p.raw("implicit")
            d.reply()
        # One leaves: a new connection is served again.
        quit_ok(a)
        deadline = time.time() + 10
        while True:
            e = p.raw("plain")
            code, lines = e.reply()
            if code == 220 or time.time() > deadline:
                break
            e.close()
        assert (code, lines) == (220, ["220 mail.example.test ESMTP ready"])
        quit_ok(e)
        quit_ok(b)
        assert p.events("connect", refused="too many connections")
    finally:
        assert p.stop() == 0


TIMEOUT_421 = (421, ["421 4.4.2 mail.example.test Error: timeout exceeded"])


def test_421_command_timeout(tmp_path):
    """RFC 5321 §4.5.3.2: 421 4.4.2 and close when no command comes; a
    TLS handshake that never starts is just closed."""
    p = start(tmp_path, "timeout_command = 1\n",
              listeners={"plain": LISTENERS["plain"],
                         "implicit": LISTENERS["implicit"]})
    try:
        r = p.raw("plain")
        assert r.reply()[0] == 220
        assert read_all_replies(r) == [TIMEOUT_421]
        s = socket.create_connection(("127.0.0.1", p.ports["implicit"]),
                                     timeout=10)
        assert s.recv(100) == b""
        s.close()
        assert p.wait_event("timeout", count=2)
        assert p.wait_event("disconnect", count=2, reason="timeout")
    finally:
        assert p.stop() == 0


def test_421_data_timeout(tmp_path):
    """A message cut off by the data timeout leaves nothing behind."""
    p = start(tmp_path, "timeout_data = 1\n",
              listeners={"plain": LISTENERS["plain"]})
    try:
        rcpt = unique_rcpt("timeout")
        r = authed(p)
        assert r.cmd(f"MAIL FROM:<{USER}>") == MAIL_OK
        assert r.cmd(f"RCPT TO:<{rcpt}>") == RCPT_OK
        assert r.cmd("DATA") == DATA_GO
        r.send(b"Subject: cut off\r\n\r\npart of it\r\n")
        assert read_all_replies(r) == [TIMEOUT_421]
        assert p.wait_event("timeout", state="data")
        nothing_delivered(p, rcpt)
    finally:
        assert p.stop() == 0
