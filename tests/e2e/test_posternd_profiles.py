"""Per-client compatibility profiles (DESIGN.md "Per-client compatibility
profiles"): device-like clients from the loopback range.  127.0.0.2 is
"the scanner network" (the [profile scanners] applies), 127.0.0.1 is
everyone else (nothing changes); each key is checked from both, over a
raw socket whose source address the test binds, with exact replies, the
bytes in the Maildir and the log lines.
"""
import base64
import email.utils
import hashlib
import hmac
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import warnings

import pytest

from posternd_util import (Posternd, SMTPRaw, b64, free_port,
                           parse_log_line, posternd_bin, strip_received,
                           unique_rcpt)

USER = "tim@example.test"
PASSWORD = "tanstaaftanstaaf"
SCANNER = "127.0.0.2"      # the profile's network
OTHER = "127.0.0.1"        # everyone else
LAB = "127.0.0.3"          # [profile lab]: on the plain listener only

LISTENERS = {
    # Challenge mechanisms before TLS; the profile makes it "all".
    "plain": "tls = none\nauth = required\nauth_before_tls = challenge\n",
    # Mail without AUTH, for the DATA keys.
    "open": "tls = none\nauth = optional\nauth_before_tls = all\n",
    "starttls": "tls = starttls\nauth = required\nauth_before_tls = none\n",
    "implicit": "tls = implicit\nauth = required\n",
}

PROFILES = (
    "[profile scanners]\n"
    f"networks = {SCANNER}/32\n"
    "tls_min_version = TLSv1\n"
    "auth_before_tls = all\n"
    "helo_auth = yes\n"
    "bare_lf = normalize\n"
    "long_lines = fold\n"
    "add_missing_headers = yes\n"
    "legacy_auth_line = yes\n"
    # The first match applies: never this one.
    "[profile shadow]\n"
    f"networks = {SCANNER}/32 {LAB}/32\n"
    "listeners = open\n"
    "[profile lab]\n"
    f"networks = {LAB}/32\n"
    "listeners = plain\n"
    "helo_auth = yes\n"
)

ALL6 = "SCRAM-SHA-256 SCRAM-SHA-1 DIGEST-MD5 CRAM-MD5 PLAIN LOGIN"
CHALLENGE4 = "SCRAM-SHA-256 SCRAM-SHA-1 DIGEST-MD5 CRAM-MD5"
DATE = "Mon, 02 Feb 2026 10:00:00 +0000"
QUEUED = re.compile(r"^250 2\.0\.0 Ok: queued as (\S+)$")


class ProfilePosternd(Posternd):
    """A Posternd with [profile NAME] sections after its listeners."""

    def __init__(self, tmp, profiles=PROFILES, **kw):
        super().__init__(tmp, listeners=dict(LISTENERS), **kw)
        self.profiles = profiles

    def write_config(self):
        super().write_config()
        with open(self.conf, "a") as f:
            f.write(self.profiles)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    if not os.access(posternd_bin(), os.X_OK):
        pytest.skip("posternd not built")
    p = ProfilePosternd(tmp_path_factory.mktemp("profiles")).start()
    yield p
    assert p.stop() == 0, p.log()


def raw(srv, listener, src, context=None):
    """An SMTPRaw from source address src; the greeting is read."""
    r = SMTPRaw.__new__(SMTPRaw)
    r.sock = socket.create_connection(("127.0.0.1", srv.ports[listener]),
                                      timeout=10, source_address=(src, 0))
    r.buf = b""
    r.timeout = 10
    if context is not None:
        r.sock = context.wrap_socket(r.sock, server_hostname="127.0.0.1")
    assert r.reply()[0] == 220
    return r


def quit_ok(r):
    assert r.cmd("QUIT") == (221, ["221 2.0.0 Bye"])
    r.close()


def cram_response(challenge_b64, user=USER, password=PASSWORD):
    """RFC 2195 §2: "user hex(HMAC-MD5(password, challenge))"."""
    ch = base64.b64decode(challenge_b64)
    mac = hmac.new(password.encode(), ch, hashlib.md5).hexdigest()
    return b64(f"{user} {mac}")


def sid_of(srv, src, listener, after=0):
    """The session id of the last connection from src on listener whose
    connect line is among the log lines from index after on."""
    port_events = [parse_log_line(line) for line in
                   srv.log().splitlines()[after:]]
    for kv in reversed(port_events):
        if (kv.get("event") == "connect" and kv.get("peer") == src and
                kv.get("listener") == listener):
            return kv["sid"]
    raise AssertionError(f"no connect from {src} on {listener}:\n"
                         + srv.log())


def log_len(srv):
    return len(srv.log().splitlines())


def tls10_context():
    """A TLS 1.0-only client as an old device has (SECLEVEL=0: TLS 1.0
    signs with SHA-1, which OpenSSL 3 refuses at its default level)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT@SECLEVEL=0")
    return ctx


def send_message(srv, src, body, listener="open"):
    """MAIL, RCPT and DATA from src; returns (reply of the final dot, the
    recipient)."""
    rcpt = unique_rcpt("prof")
    r = raw(srv, listener, src)
    assert r.ehlo()[0] == 250
    assert r.cmd(f"MAIL FROM:<{USER}>") == (250, ["250 2.1.0 Ok"])
    assert r.cmd(f"RCPT TO:<{rcpt}>") == (250, ["250 2.1.5 Ok"])
    assert r.cmd("DATA")[0] == 354
    r.send(body + b".\r\n")
    reply = r.reply()
    quit_ok(r)
    return reply, rcpt


def stored(srv, rcpt):
    """The one message rcpt got, without the Received header."""
    msgs = srv.messages(rcpt)
    assert len(msgs) == 1, msgs
    return strip_received(msgs[0])


def headers(subject, date=True, msgid=True):
    h = f"From: <{USER}>\r\nTo: <bob@example.test>\r\nSubject: {subject}\r\n"
    if date:
        h += f"Date: {DATE}\r\n"
    if msgid:
        h += f"Message-ID: <{subject}.1@example.test>\r\n"
    return h.encode()


# --- Which profile applies ---------------------------------------------------

@pytest.mark.parametrize("src, listener, want", [
    (SCANNER, "plain", "scanners"),
    (SCANNER, "open", "scanners"),        # not shadow: the first match
    (SCANNER, "implicit", "scanners"),
    (LAB, "plain", "lab"),
    (LAB, "open", "shadow"),              # lab is for plain only
    (LAB, "starttls", None),
    (OTHER, "plain", None),
    (OTHER, "open", None),
])
def test_profile_picked(srv, src, listener, want):
    start = log_len(srv)
    ctx = tls10_context() if listener == "implicit" else None
    r = raw(srv, listener, src, ctx)
    quit_ok(r)
    sid = sid_of(srv, src, listener, start)
    got = srv.events("profile", sid=sid)
    if want is None:
        assert got == []
    else:
        assert len(got) == 1
        assert got[0]["peer"] == src and got[0]["listener"] == listener
        assert got[0]["profile"] == want


# --- helo_auth ------------------------------------------------------------

@pytest.mark.parametrize("src, listener", [(SCANNER, "plain"),
                                           (LAB, "plain")])
def test_helo_auth_allowed(srv, src, listener):
    """A device that says HELO, then AUTH (CRAM-MD5: offered before TLS
    on this listener to everyone)."""
    r = raw(srv, listener, src)
    assert r.cmd("HELO scanner.example.test") == (
        250, ["250 mail.example.test"])
    code, lines = r.cmd("AUTH CRAM-MD5")
    assert code == 334
    assert r.cmd(cram_response(lines[0][4:])) == (
        235, ["235 2.7.0 Authentication successful"])
    quit_ok(r)


@pytest.mark.parametrize("src, listener", [(OTHER, "plain"),
                                           (LAB, "open")])
def test_helo_auth_refused(srv, src, listener):
    r = raw(srv, listener, src)
    assert r.cmd("HELO scanner.example.test")[0] == 250
    assert r.cmd("AUTH CRAM-MD5") == (
        503, ["503 5.5.1 Error: send EHLO first"])
    quit_ok(r)


# --- auth_before_tls and legacy_auth_line --------------------------------

def test_auth_before_tls_and_legacy_line_scanner(srv):
    r = raw(srv, "plain", SCANNER)
    code, lines = r.cmd("EHLO scanner.example.test")
    assert code == 250
    assert f"250-AUTH {ALL6}" in lines
    assert f"250-AUTH={ALL6}" in lines
    assert r.login() == (235, ["235 2.7.0 Authentication successful"])
    quit_ok(r)
    # On a STARTTLS listener that offers nothing before TLS.
    r = raw(srv, "starttls", SCANNER)
    code, lines = r.cmd("EHLO scanner.example.test")
    assert f"250-AUTH {ALL6}" in lines
    assert r.cmd("AUTH LOGIN") == (334, ["334 VXNlcm5hbWU6"])
    assert r.cmd(b64(USER)) == (334, ["334 UGFzc3dvcmQ6"])
    assert r.cmd(b64(PASSWORD)) == (
        235, ["235 2.7.0 Authentication successful"])
    quit_ok(r)


def test_auth_before_tls_and_legacy_line_other(srv):
    r = raw(srv, "plain", OTHER)
    code, lines = r.cmd("EHLO client.example.test")
    assert code == 250
    assert f"250-AUTH {CHALLENGE4}" in lines
    assert not any(line.startswith("250-AUTH=") for line in lines)
    assert r.login() == (504, ["504 5.5.4 Unrecognized authentication type"])
    quit_ok(r)
    r = raw(srv, "starttls", OTHER)
    code, lines = r.cmd("EHLO client.example.test")
    assert not any(line[4:].startswith("AUTH") for line in lines), lines
    assert r.cmd("AUTH LOGIN") == (
        504, ["504 5.5.4 Unrecognized authentication type"])
    quit_ok(r)


# --- bare_lf -----------------------------------------------------------------

def test_bare_lf_normalized(srv):
    """A bare-LF message arrives with CRLF and otherwise identical."""
    lf = (headers("barelf").replace(b"\r\n", b"\n") +
          b"\nline one\nline two  \n\n\ttabbed\nlast\r\n")
    (code, lines), rcpt = send_message(srv, SCANNER, lf)
    assert code == 250 and QUEUED.match(lines[0]), lines
    assert stored(srv, rcpt) == lf.replace(b"\r\n", b"\n").replace(
        b"\n", b"\r\n")


def test_bare_lf_refused_elsewhere(srv):
    lf = headers("barelf") + b"\r\nline one\nline two\r\n"
    (code, lines), rcpt = send_message(srv, OTHER, lf)
    assert (code, lines) == (
        550, ["550 5.6.0 Error: bare <CR> or <LF> in message"])
    assert srv.messages(rcpt) == []


@pytest.mark.parametrize("end", [b"\n.\r\n", b"\n.\n", b"\r\n.\n",
                                 b"\r.\r\n"],
                         ids=["lf-dot-crlf", "lf-dot-lf", "crlf-dot-lf",
                              "cr-dot-crlf"])
def test_no_smuggling_with_normalize(srv, end):
    """RFC 5321 §2.3.8, CVE-2023-51764, with bare_lf = normalize: a "."
    line next to a bare LF ends nothing, so the commands after it are
    message text and the hidden message never exists; a bare CR is
    still refused."""
    outer, inner = unique_rcpt("outer"), unique_rcpt("smuggled")
    r = raw(srv, "open", SCANNER)
    assert r.ehlo()[0] == 250
    assert r.cmd(f"MAIL FROM:<{USER}>")[0] == 250
    assert r.cmd(f"RCPT TO:<{outer}>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(headers("outer") + b"\r\nhello" + end +
           f"MAIL FROM:<{USER}>\r\nRCPT TO:<{inner}>\r\nDATA\r\n".encode() +
           b"Subject: smuggled\r\n\r\nx\r\n.\r\n")
    code, lines = r.reply()
    assert r.cmd("NOOP") == (250, ["250 2.0.0 Ok"])
    quit_ok(r)
    assert srv.messages(inner) == []
    if end == b"\r.\r\n":
        assert (code, lines) == (
            550, ["550 5.6.0 Error: bare <CR> or <LF> in message"])
        assert srv.messages(outer) == []
        return
    assert code == 250, lines
    body = stored(srv, outer).split(b"\r\n\r\n", 1)[1]
    # The "." line is gone; everything else is text of the one message.
    assert body == (b"hello\r\n" +
                    f"MAIL FROM:<{USER}>\r\nRCPT TO:<{inner}>\r\n"
                    f"DATA\r\n".encode() +
                    b"Subject: smuggled\r\n\r\nx\r\n")


# --- long_lines -------------------------------------------------------------

def test_long_line_folded(srv):
    """A 1,500-octet line arrives in two pieces, at 998 octets (RFC 5322
    §2.1.1), no octet lost."""
    line = bytes((0x41 + i % 26) for i in range(1500))
    msg = headers("long") + b"\r\nbefore\r\n" + line + b"\r\nafter\r\n"
    (code, lines), rcpt = send_message(srv, SCANNER, msg)
    assert code == 250, lines
    assert stored(srv, rcpt) == (headers("long") + b"\r\nbefore\r\n" +
                                 line[:998] + b"\r\n" + line[998:] +
                                 b"\r\nafter\r\n")


def test_long_line_refused_elsewhere(srv):
    msg = headers("long") + b"\r\n" + b"x" * 1500 + b"\r\n"
    (code, lines), rcpt = send_message(srv, OTHER, msg)
    assert (code, lines) == (500, ["500 5.5.6 Error: message line too long"])
    assert srv.messages(rcpt) == []


# --- add_missing_headers ----------------------------------------------------

def test_missing_headers_added(srv):
    before = time.time()
    msg = headers("nohdr", date=False, msgid=False) + b"\r\nbody\r\n"
    (code, lines), rcpt = send_message(srv, SCANNER, msg)
    assert code == 250, lines
    qid = QUEUED.match(lines[0]).group(1)
    got = stored(srv, rcpt)
    hdr, body = got.split(b"\r\n\r\n", 1)
    fields = hdr.split(b"\r\n")
    # Exactly the two, after the device's own, before the empty line.
    assert fields[:3] == headers("nohdr", date=False,
                                 msgid=False).split(b"\r\n")[:3]
    assert len(fields) == 5
    assert fields[3].startswith(b"Date: ")
    assert fields[4] == f"Message-ID: <{qid}@mail.example.test>".encode()
    when = email.utils.parsedate_to_datetime(fields[3][6:].decode())
    assert before - 2 <= when.timestamp() <= time.time() + 2
    assert re.match(rb"^Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
                    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                    rb"\d{4} \d\d:\d\d:\d\d [+-]\d{4}$", fields[3])
    assert body == b"body\r\n"


def test_missing_headers_added_large_message(srv):
    """The message data goes to the spool on the thread pool (a write per
    64 KiB and more): the Return-Path, the Received header, the header
    section held back (60 KiB of it) with its additions, and 1 MiB of
    body, in that order, byte for byte."""
    filler = b"".join(b"X-Filler-%03d: %s\r\n" % (i, b"f" * 970)
                      for i in range(60))
    hdr = headers("bigbody", date=False, msgid=False) + filler
    body = b"".join(b"line %07d %s\r\n" % (i, b"b" * 60)
                    for i in range(1 << 14))
    assert len(hdr) < 65536 and len(body) > 1 << 20
    (code, lines), rcpt = send_message(srv, SCANNER, hdr + b"\r\n" + body)
    assert code == 250, lines
    qid = QUEUED.match(lines[0]).group(1)
    msg = srv.messages(rcpt)
    assert len(msg) == 1
    assert msg[0].startswith(f"Return-Path: <{USER}>\r\nReceived: "
                             .encode()), msg[0][:200]
    got = stored(srv, rcpt)
    head, rest = got.split(b"\r\n\r\n", 1)
    fields = (head + b"\r\n").split(b"\r\n")[:-1]
    assert head.startswith(hdr.rstrip(b"\r\n")), head[:300]
    assert len(fields) == len(hdr.split(b"\r\n")) - 1 + 2, fields[-3:]
    assert fields[-2].startswith(b"Date: ")
    assert fields[-1] == f"Message-ID: <{qid}@mail.example.test>".encode()
    assert rest == body


def test_missing_message_id_only(srv):
    msg = headers("dateonly", msgid=False) + b"\r\nbody\r\n"
    (code, lines), rcpt = send_message(srv, SCANNER, msg)
    qid = QUEUED.match(lines[0]).group(1)
    assert stored(srv, rcpt) == (
        headers("dateonly", msgid=False) +
        f"Message-ID: <{qid}@mail.example.test>\r\n".encode() +
        b"\r\nbody\r\n")


def test_long_header_section_passes_unchanged(srv):
    """add_missing_headers holds back 64 KiB of header section at most:
    past it the message passes as it came, and the log says so."""
    start = log_len(srv)
    hdr = b"".join(b"X-Filler-%03d: %s\r\n" % (i, b"f" * 970)
                   for i in range(70))
    msg = b"Subject: long\r\n" + hdr + b"\r\nbody\r\n"
    assert len(msg) > 65536
    (code, lines), rcpt = send_message(srv, SCANNER, msg)
    assert code == 250, lines
    assert stored(srv, rcpt) == msg
    sid = sid_of(srv, SCANNER, "open", start)
    ev = srv.wait_event("compat_headers_unchanged", sid=sid)
    assert ev and ev[0]["profile"] == "scanners"
    assert ev[0]["reason"] == "header section over 64 KiB"


@pytest.mark.parametrize("src, date, msgid", [
    (SCANNER, True, True),       # present: nothing added
    (OTHER, False, False),       # no profile: nothing added
])
def test_headers_unchanged(srv, src, date, msgid):
    msg = headers("kept", date=date, msgid=msgid) + b"\r\nbody\r\n"
    (code, lines), rcpt = send_message(srv, src, msg)
    assert code == 250, lines
    assert stored(srv, rcpt) == msg


# --- tls_min_version ---------------------------------------------------

@pytest.mark.parametrize("listener", ["implicit", "starttls"])
def test_tls10_from_scanner(srv, listener):
    """A TLS 1.0 handshake succeeds from the profile's network, and the
    session goes on to AUTH under it."""
    ctx = tls10_context()
    start = log_len(srv)
    if listener == "implicit":
        r = raw(srv, listener, SCANNER, ctx)
    else:
        r = raw(srv, listener, SCANNER)
        assert r.ehlo()[0] == 250
        assert r.cmd("STARTTLS") == (220, ["220 2.0.0 Ready to start TLS"])
        assert r.starttls(ctx) == b""
    assert r.sock.version() == "TLSv1"
    assert r.ehlo()[0] == 250
    assert r.login() == (235, ["235 2.7.0 Authentication successful"])
    quit_ok(r)
    sid = sid_of(srv, SCANNER, listener, start)
    assert srv.wait_event("tls", sid=sid)[0]["version"] == "TLSv1"
    assert srv.wait_event("compat", sid=sid)[0]["used"] == "tls_min_version"


@pytest.mark.parametrize("listener", ["implicit", "starttls"])
def test_tls10_refused_elsewhere(srv, listener):
    ctx = tls10_context()
    s = socket.create_connection(("127.0.0.1", srv.ports[listener]),
                                 timeout=10, source_address=(OTHER, 0))
    try:
        if listener == "starttls":
            f = s.makefile("rwb")
            assert f.readline().startswith(b"220 ")
            f.write(b"EHLO client.example.test\r\n")
            f.flush()
            while not f.readline().startswith(b"250 "):
                pass
            f.write(b"STARTTLS\r\n")
            f.flush()
            assert f.readline() == b"220 2.0.0 Ready to start TLS\r\n"
        with pytest.raises(ssl.SSLError) as e:
            ctx.wrap_socket(s)
        assert "PROTOCOL_VERSION" in str(e.value) or \
            "UNSUPPORTED_PROTOCOL" in str(e.value), e.value
    finally:
        s.close()


def test_tls10_openssl_s_client(srv):
    """The same with the command line tool an administrator has."""
    for src, ok in ((SCANNER, True), (OTHER, False)):
        p = subprocess.run(
            ["openssl", "s_client", "-connect",
             f"127.0.0.1:{srv.ports['implicit']}", "-bind", f"{src}:0",
             "-tls1", "-cipher", "DEFAULT@SECLEVEL=0", "-brief"],
            input=b"QUIT\r\n", capture_output=True, timeout=30)
        out = (p.stdout + p.stderr).decode("utf-8", "replace")
        if ok:
            assert "Protocol version: TLSv1\n" in out, out
            assert "220 mail.example.test ESMTP ready" in out, out
        else:
            assert p.returncode != 0, out
            assert "Protocol version" not in out, out


def test_modern_tls_unchanged_for_scanner(srv):
    """The profile lowers the floor; a client that can do better still
    gets TLS 1.3, and no exception is logged for it."""
    start = log_len(srv)
    r = raw(srv, "implicit", SCANNER,
            ssl.create_default_context(cafile=srv.cert))
    assert r.sock.version() == "TLSv1.3"
    quit_ok(r)
    sid = sid_of(srv, SCANNER, "implicit", start)
    assert srv.wait_event("disconnect", sid=sid)
    time.sleep(0.2)
    assert srv.events("compat", sid=sid) == []


# --- The log -----------------------------------------------------------

def test_compat_line_lists_each_use_once(srv):
    """One session that uses five exceptions, some of them twice: one
    line, each named once, in the order of the profile's keys."""
    start = log_len(srv)
    rcpts = [unique_rcpt("log"), unique_rcpt("log")]
    r = raw(srv, "plain", SCANNER)
    assert r.cmd("HELO scanner.example.test")[0] == 250
    assert r.login() == (235, ["235 2.7.0 Authentication successful"])
    for rcpt in rcpts:
        assert r.cmd(f"MAIL FROM:<{USER}>")[0] == 250
        assert r.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
        assert r.cmd("DATA")[0] == 354
        r.send(b"Subject: log\nFrom: <tim@example.test>\n\n" +
               b"y" * 1200 + b"\r\n.\r\n")
        assert r.reply()[0] == 250
    quit_ok(r)
    sid = sid_of(srv, SCANNER, "plain", start)
    ev = srv.wait_event("compat", sid=sid)
    assert len(ev) == 1
    assert ev[0]["profile"] == "scanners" and ev[0]["peer"] == SCANNER
    assert ev[0]["used"] == ("auth_before_tls,helo_auth,bare_lf,long_lines,"
                             "add_missing_headers")
    line = [ln for ln in srv.log().splitlines()
            if "event=compat " in ln and f"sid={sid} " in ln][0]
    assert re.search(r" level=info event=compat sid=\w+ peer=127\.0\.0\.2 "
                     r"profile=scanners used=auth_before_tls,helo_auth,"
                     r"bare_lf,long_lines,add_missing_headers$", line), line


def test_no_compat_line_without_use(srv):
    start = log_len(srv)
    for src in (SCANNER, OTHER):
        (code, _), _ = send_message(srv, src,
                                    headers("plainmsg") + b"\r\nok\r\n")
        assert code == 250
    for src in (SCANNER, OTHER):
        sid = sid_of(srv, src, "open", start)
        assert srv.wait_event("disconnect", sid=sid)
        time.sleep(0.2)
        assert srv.events("compat", sid=sid) == []


def test_refused_message_uses_nothing(srv):
    """Headers added to a message that is then refused (a bare CR, which
    no profile admits) are not a use: nothing was stored."""
    start = log_len(srv)
    (code, lines), rcpt = send_message(
        srv, SCANNER, b"Subject: x\r\n\r\nbad\rCR\r\n")
    assert (code, lines) == (
        550, ["550 5.6.0 Error: bare <CR> or <LF> in message"])
    assert srv.messages(rcpt) == []
    sid = sid_of(srv, SCANNER, "open", start)
    assert srv.wait_event("disconnect", sid=sid)
    time.sleep(0.2)
    assert srv.events("compat", sid=sid) == []


def test_counts_at_stop(tmp_path):
    """The counts per profile and exception, in the log when posternd
    stops: three sessions of scanners (two used helo_auth, one bare_lf
    and add_missing_headers), one of lab, none counted for others."""
    p = ProfilePosternd(tmp_path).start()
    try:
        for _ in range(2):
            r = raw(p, "plain", SCANNER)
            assert r.cmd("HELO s")[0] == 250
            assert r.cmd("AUTH CRAM-MD5")[0] == 334
            assert r.cmd("*")[0] == 501
            quit_ok(r)
        (code, _), _ = send_message(p, SCANNER, b"Subject: x\n\nbody\r\n")
        assert code == 250
        r = raw(p, "plain", LAB)
        assert r.cmd("HELO s")[0] == 250
        assert r.cmd("AUTH CRAM-MD5")[0] == 334
        assert r.cmd("*")[0] == 501
        quit_ok(r)
        r = raw(p, "plain", OTHER)
        assert r.cmd("HELO s")[0] == 250
        assert r.cmd("AUTH CRAM-MD5")[0] == 503
        quit_ok(r)
        assert p.wait_event("compat", count=4)
    finally:
        assert p.stop() == 0, p.log()
    stats = [ln for ln in p.log().splitlines() if "event=compat_stats" in ln]
    assert [re.sub(r"^ts=\S+ ", "", ln) for ln in stats] == [
        "level=info event=compat_stats profile=scanners sessions=3 "
        "helo_auth=2 bare_lf=1 add_missing_headers=1",
        "level=info event=compat_stats profile=lab sessions=1 helo_auth=1",
    ]


def test_reload_keeps_counts_and_changes_profiles(tmp_path):
    """SIGHUP: new connections get the new profiles (here scanners loses
    helo_auth); the counts of a profile that keeps its name go on."""
    p = ProfilePosternd(tmp_path).start()
    try:
        r = raw(p, "plain", SCANNER)
        assert r.cmd("HELO s")[0] == 250
        assert r.cmd("AUTH CRAM-MD5")[0] == 334
        assert r.cmd("*")[0] == 501
        quit_ok(r)
        assert p.wait_event("compat", count=1)
        p.profiles = PROFILES.replace("helo_auth = yes\nbare_lf",
                                      "bare_lf")
        p.write_config()
        p.hup()
        assert p.wait_event("reloaded")
        r = raw(p, "plain", SCANNER)
        assert r.cmd("HELO s")[0] == 250
        assert r.cmd("AUTH CRAM-MD5") == (
            503, ["503 5.5.1 Error: send EHLO first"])
        quit_ok(r)
        (code, _), _ = send_message(p, SCANNER, b"Subject: x\n\nbody\r\n")
        assert code == 250
        assert p.wait_event("compat", count=2)
    finally:
        assert p.stop() == 0, p.log()
    stats = [re.sub(r"^ts=\S+ ", "", ln) for ln in p.log().splitlines()
             if "event=compat_stats" in ln]
    assert stats == [
        "level=info event=compat_stats profile=scanners sessions=2 "
        "helo_auth=1 bare_lf=1 add_missing_headers=1"]


def test_dual_stack_and_ipv6(tmp_path):
    """A listener on [::] sees IPv4 clients as ::ffff:a.b.c.d (RFC 4291
    §2.5.5.2): an IPv4 network of a profile matches them all the same;
    an IPv6 network matches ::1."""
    port = free_port("::")
    p = ProfilePosternd(tmp_path, profiles=(
        f"[listener dual]\naddress = [::]:{port}\ntls = none\n"
        "auth_before_tls = challenge\n"
        "[profile scanners]\n"
        f"networks = {SCANNER}/32 ::1/128\n"
        "helo_auth = yes\n")).start()
    try:
        for src, host, want in ((SCANNER, "127.0.0.1", 334),
                                (OTHER, "127.0.0.1", 503),
                                ("::1", "::1", 334)):
            deadline = time.time() + 10
            while True:
                try:
                    sock = socket.create_connection(
                        (host, port), timeout=10, source_address=(src, 0))
                    break
                except ConnectionRefusedError:
                    assert time.time() < deadline
                    time.sleep(0.05)
            r = SMTPRaw.__new__(SMTPRaw)
            r.sock, r.buf, r.timeout = sock, b"", 10
            assert r.reply()[0] == 220
            assert r.cmd("HELO s")[0] == 250
            assert r.cmd("AUTH CRAM-MD5")[0] == want, (src, host)
            if want == 334:
                assert r.cmd("*")[0] == 501
            quit_ok(r)
        got = [(e["peer"], e["profile"]) for e in
               p.wait_event("profile", count=2) if e["listener"] == "dual"]
        assert got == [("::ffff:127.0.0.2", "scanners"),
                       ("::1", "scanners")]
    finally:
        assert p.stop() == 0, p.log()


@pytest.mark.skipif(os.geteuid() != 0,
                    reason="the privilege drop needs root")
def test_reload_as_user_keeps_profile_tls():
    """DESIGN.md "Privileges": started as root with user = NAME, posternd
    read the root-only key for the profile's own TLS context too; after
    SIGHUP, running as the user, it keeps that context (reload_kept) and
    the scanner still gets TLS 1.0."""
    user = "postern-e2e"
    try:
        pw = pwd.getpwnam(user)
    except KeyError:
        r = subprocess.run(["useradd", "--system", "--user-group",
                            "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", user],
                           capture_output=True, text=True)
        assert r.returncode in (0, 9), r.stderr   # 9: made meanwhile
        pw = pwd.getpwnam(user)
    base = tempfile.mkdtemp(prefix="postern-profile-priv-")
    os.chmod(base, 0o755)
    try:
        p = ProfilePosternd(base, extra_global=f"user = {user}\n").prepare()
        for d in (p.spool, p.maildir_root):
            os.chown(d, pw.pw_uid, pw.pw_gid)
        os.chmod(p.key, 0o600)
        p.start()
        try:
            assert p.wait_event("privileges_dropped"), p.log()
            p.hup()
            assert p.wait_event("reloaded"), p.log()
            kept = {e["what"] for e in p.events("reload_kept")}
            assert "[profile scanners] tls_cert and tls_key" in kept, kept
            r = raw(p, "implicit", SCANNER, tls10_context())
            assert r.sock.version() == "TLSv1"
            quit_ok(r)
        finally:
            assert p.stop() == 0, p.log()[-3000:]
    finally:
        shutil.rmtree(base, ignore_errors=True)


# --- posternd -t -------------------------------------------------------------

def check(tmp_path, profiles):
    """posternd -t on a file with profiles after the listeners; p.at(n)
    is the line number of the profiles' line n (from 1), p.root the
    warnings posternd -t gives before the profiles' when run as root
    without user = NAME (DESIGN.md "Privileges")."""
    p = ProfilePosternd(tmp_path, profiles=profiles).prepare()
    base = (len(open(p.conf).read().splitlines()) -
            len(profiles.splitlines()))
    p.at = lambda n: base + n
    p.root = [] if os.geteuid() != 0 else [
        f"posternd: {p.conf}: warning: no user = NAME: started as root, "
        "posternd keeps root's privileges (posternd.conf(5), user)"]
    return subprocess.run([posternd_bin(), "-c", p.conf, "-t"],
                          capture_output=True, text=True, timeout=30), p


def test_check_shows_profiles(tmp_path):
    res, p = check(tmp_path, PROFILES)
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == (f"posternd: {p.conf}: configuration OK (4 listeners, "
                        "1 user)")
    assert lines[1:] == [
        f"posternd: profile scanners (line {p.at(1)}): 127.0.0.2/32 on "
        "every listener: tls_min_version = TLSv1, auth_before_tls = all, "
        "helo_auth = yes, bare_lf = normalize, long_lines = fold, "
        "add_missing_headers = yes, legacy_auth_line = yes",
        f"posternd: profile shadow (line {p.at(10)}): 127.0.0.2/32 "
        "127.0.0.3/32 on "
        "open: no exceptions",
        f"posternd: profile lab (line {p.at(13)}): 127.0.0.3/32 on plain: "
        "helo_auth = yes",
    ]
    assert res.stderr.splitlines() == p.root


def test_check_warns_for_wide_networks(tmp_path):
    res, p = check(tmp_path,
                   "[profile office]\n"
                   "networks = 10.0.0.0/8 192.168.0.0/16 2001:db8::/32\n"
                   "tls_min_version = TLSv1\n"
                   "[profile anyone]\n"
                   "networks = 0.0.0.0/0 ::/0\n"
                   "listeners = plain\n"
                   "auth_before_tls = all\n")
    assert res.returncode == 0, res.stderr
    assert res.stderr.splitlines() == p.root + [
        f"posternd: {p.conf}:{p.at(1)}: warning: [profile office] relaxes "
        "tls_min_version (TLSv1) for 10.0.0.0/8: wider than a /16",
        f"posternd: {p.conf}:{p.at(1)}: warning: [profile office] relaxes "
        "tls_min_version (TLSv1) for 2001:db8::/32: wider than a /48",
        f"posternd: {p.conf}:{p.at(4)}: warning: [profile anyone] relaxes "
        "auth_before_tls (all: passwords before TLS) for 0.0.0.0/0: every "
        "IPv4 address",
        f"posternd: {p.conf}:{p.at(4)}: warning: [profile anyone] relaxes "
        "auth_before_tls (all: passwords before TLS) for ::/0: every IPv6 "
        "address",
    ]


@pytest.mark.parametrize("profiles, want", [
    ("[profile p]\nnetworks = 127.0.0.2\nlisteners = nope\n",
     "{conf}:{line3}: [profile p]: no [listener nope] section"),
    ("[profile p]\nnetworks = 127.0.0.2\nlisteners = plain\n"
     "auth_before_tls = none\n",
     "{conf}:{line4}: [profile p]: auth_before_tls = none leaves no "
     "mechanism "
     "to offer on [listener plain] (tls = none)"),
])
def test_check_refuses(tmp_path, profiles, want):
    res, p = check(tmp_path, profiles)
    assert res.returncode == 78, res.stdout
    assert res.stderr == "posternd: " + want.format(
        conf=p.conf, line3=p.at(3), line4=p.at(4)) + "\n"
