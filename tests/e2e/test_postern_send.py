"""`postern send` against a real posternd: every mechanism over STARTTLS
and implicit TLS, the default choice, wrong passwords, mechanisms the
server does not offer (the password never leaves the client), plaintext
rules, certificate checks, messages from stdin and composed ones (decoded
back with Python's email package), recipients, the -v transcript and the
three password sources.  Exit codes are sysexits.h exactly."""
import base64
import email
import email.policy
import os
import re
import shutil
import subprocess

import pytest

from posternd_util import ROOT, Posternd, postern_bin, strip_received
from postern_client_util import (
    ALL_MECHS, EX_NOPERM, EX_OK, EX_DATAERR, EX_TEMPFAIL, EX_UNAVAILABLE,
    EX_USAGE, FIXED_MSG, PASSWORD, USER, LogMark, clean_env, describe,
    run_postern, run_pty, secret_forms, settled)

DEBUG = "log_level = debug\nauth_throttle = no\n"


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    d = tmp_path_factory.mktemp("posternd")
    p = settled(Posternd(d, extra_global=DEBUG).start())
    yield p
    assert p.stop() == 0, p.log()


@pytest.fixture(scope="module")
def pwfile(tmp_path_factory):
    f = tmp_path_factory.mktemp("pw") / "password"
    f.write_text(PASSWORD + "\n")
    f.chmod(0o600)
    return f


@pytest.fixture(scope="module")
def badpwfile(tmp_path_factory):
    f = tmp_path_factory.mktemp("badpw") / "password"
    f.write_text("not-the-password\n")
    return f


@pytest.fixture
def rcpt(request):
    """An address no other test uses (posternd delivers to any)."""
    local = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    return local[:60] + "@example.test"


def url(srv, listener, host="127.0.0.1"):
    scheme = "smtps" if listener == "implicit" else "smtp"
    return "%s://%s:%d" % (scheme, host, srv.ports[listener])


def send(srv, listener, args, pwfile=None, input=FIXED_MSG, host="127.0.0.1",
         cafile=True, env=None, timeout=60):
    a = ["send", "--server", url(srv, listener, host), "--timeout", "20"]
    if cafile:
        a += ["--cafile", srv.cert]
    if pwfile is not None:
        a += ["--user", USER, "--password-file", pwfile]
    return run_postern(a + list(args), input=input, env=env, timeout=timeout)


def auth_events(mark):
    return ([(e["event"], e.get("mech")) for e in mark.events("auth_ok")] +
            [(e["event"], e.get("mech")) for e in mark.events("auth_failed")])


def no_auth_sent(mark):
    """From posternd's side: the connections since mark ended, none saw
    an AUTH command or anything resembling the password."""
    sids = mark.sessions_done()
    assert sids, "no connection reached posternd:\n" + mark.text()
    assert not mark.events("auth_ok") and not mark.events("auth_failed"), \
        mark.text()
    for sid in sids:
        lines = mark.client_lines(sid)
        assert lines, "no debug trace for sid %s:\n%s" % (sid, mark.text())
        assert not [l for l in lines if l.upper().startswith("AUTH")], lines
    text = mark.text().encode()
    for s in secret_forms():
        assert s not in text


# --- mechanisms --------------------------------------------------------------

@pytest.mark.parametrize("listener", ["starttls", "implicit"])
@pytest.mark.parametrize("mech", ALL_MECHS)
def test_forced_mechanism(srv, pwfile, rcpt, listener, mech):
    mark = LogMark(srv)
    p = send(srv, listener, ["--mech", mech, "--from", USER, "--to", rcpt],
             pwfile)
    assert p.returncode == EX_OK, describe(p)
    assert mark.wait(r"event=message_accepted"), mark.text()
    assert auth_events(mark) == [("auth_ok", mech)], mark.text()
    assert mark.events("tls"), mark.text()
    msgs = srv.messages(rcpt)
    assert len(msgs) == 1
    # Date and Message-ID were there: not one byte changed.
    assert strip_received(msgs[0]) == FIXED_MSG
    assert b"with ESMTPSA" in msgs[0]


@pytest.mark.parametrize("listener", ["starttls", "implicit", "legacy"])
def test_default_picks_strongest(srv, pwfile, rcpt, listener):
    mark = LogMark(srv)
    p = send(srv, listener, ["--from", USER, "--to", rcpt], pwfile)
    assert p.returncode == EX_OK, describe(p)
    assert mark.wait(r"event=auth_ok"), mark.text()
    assert auth_events(mark) == [("auth_ok", "SCRAM-SHA-256")], mark.text()
    assert len(srv.messages(rcpt)) == 1


@pytest.mark.parametrize("mech", ALL_MECHS)
def test_wrong_password(srv, badpwfile, rcpt, mech):
    mark = LogMark(srv)
    p = send(srv, "starttls", ["--mech", mech, "--from", USER, "--to", rcpt],
             badpwfile)
    assert p.returncode == EX_NOPERM, describe(p)
    err = p.stderr.decode()
    # The server's reply, enhanced status code included.
    assert "authentication failed: 535 5.7.8" in err, err
    mark.sessions_done()
    assert auth_events(mark) == [("auth_failed", mech)], mark.text()
    assert srv.messages(rcpt) == []
    assert not mark.events("message_accepted")


def test_unknown_user(srv, pwfile, rcpt):
    p = run_postern(["send", "--server", url(srv, "starttls"), "--cafile",
                     srv.cert, "--user", "nobody@example.test",
                     "--password-file", pwfile, "--from", USER, "--to", rcpt],
                    input=FIXED_MSG)
    assert p.returncode == EX_NOPERM, describe(p)
    assert srv.messages(rcpt) == []


@pytest.fixture(scope="module")
def srv_few(tmp_path_factory):
    """A posternd that offers only SCRAM-SHA-256 and CRAM-MD5."""
    d = tmp_path_factory.mktemp("posternd-few")
    p = Posternd(d, extra_global=DEBUG, listeners={
        "starttls": "tls = starttls\nauth = required\n"
                    "auth_before_tls = none\n"
                    "mechanisms = SCRAM-SHA-256 CRAM-MD5\n",
    }).start()
    settled(p)
    yield p
    assert p.stop() == 0, p.log()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-1", "DIGEST-MD5", "PLAIN",
                                  "LOGIN"])
def test_forced_mechanism_not_offered(srv_few, pwfile, rcpt, mech):
    mark = LogMark(srv_few)
    p = send(srv_few, "starttls", ["--mech", mech, "--from", USER, "--to",
                                   rcpt], pwfile)
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    err = p.stderr.decode()
    assert "does not offer %s" % mech in err, err
    assert "SCRAM-SHA-256 CRAM-MD5" in err, err  # what it does offer
    no_auth_sent(mark)
    assert srv_few.messages(rcpt) == []


def test_forced_mechanism_offered_by_the_few(srv_few, pwfile, rcpt):
    mark = LogMark(srv_few)
    p = send(srv_few, "starttls", ["--mech", "CRAM-MD5", "--from", USER,
                                   "--to", rcpt], pwfile)
    assert p.returncode == EX_OK, describe(p)
    mark.sessions_done()
    assert auth_events(mark) == [("auth_ok", "CRAM-MD5")]


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_plaintext_mech_refused_without_tls(srv, pwfile, rcpt, mech):
    """The plain listener offers every mechanism before TLS; PLAIN and
    LOGIN must not be used there unless asked for."""
    mark = LogMark(srv)
    p = send(srv, "plain", ["--starttls=never", "--mech", mech, "--from",
                            USER, "--to", rcpt], pwfile, cafile=False)
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert "--allow-plaintext-auth" in p.stderr.decode()
    no_auth_sent(mark)
    assert srv.messages(rcpt) == []


@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_plaintext_mech_allowed_when_asked(srv, pwfile, rcpt, mech):
    mark = LogMark(srv)
    p = send(srv, "plain", ["--starttls=never", "--mech", mech,
                            "--allow-plaintext-auth", "--from", USER,
                            "--to", rcpt], pwfile, cafile=False)
    assert p.returncode == EX_OK, describe(p)
    mark.sessions_done()
    assert auth_events(mark) == [("auth_ok", mech)]
    assert not mark.events("tls")
    assert strip_received(srv.messages(rcpt)[0]) == FIXED_MSG


def test_never_without_tls_uses_a_challenge_mech(srv, pwfile, rcpt):
    mark = LogMark(srv)
    p = send(srv, "plain", ["--starttls=never", "--from", USER, "--to",
                            rcpt], pwfile, cafile=False)
    assert p.returncode == EX_OK, describe(p)
    mark.sessions_done()
    assert auth_events(mark) == [("auth_ok", "SCRAM-SHA-256")]


@pytest.mark.parametrize("mode", [None, "auto"])
def test_default_and_auto_refuse_auth_without_tls(srv, pwfile, rcpt, mode):
    """The plain listener offers SCRAM before TLS and no STARTTLS: the
    default (required) and auto with a user send neither AUTH nor MAIL."""
    mark = LogMark(srv)
    extra = ["--starttls=" + mode] if mode else []
    p = send(srv, "plain", extra + ["--from", USER, "--to", rcpt], pwfile,
             cafile=False)
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert p.stderr.decode().startswith(
        "postern send: the server does not offer STARTTLS; not "), describe(p)
    no_auth_sent(mark)
    for sid in mark.sessions_done():
        assert not [l for l in mark.client_lines(sid)
                    if l.upper().startswith(("MAIL", "RCPT"))]
    assert srv.messages(rcpt) == []


def test_auto_without_user_sends_in_clear(srv, rcpt):
    """auto goes on without TLS when there is no user (the plain listener
    requires AUTH, so posternd refuses MAIL: what matters is that the
    client went on)."""
    mark = LogMark(srv)
    p = send(srv, "plain", ["--starttls=auto", "--from", USER, "--to",
                            rcpt], cafile=False)
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert "refused at MAIL: 530 5.7.0" in p.stderr.decode(), describe(p)
    mark.sessions_done()


def test_legacy_listener_before_tls(srv, pwfile, rcpt):
    """auth_before_tls = challenge: with --starttls=never the client may
    use SCRAM but not PLAIN (not offered there, and no TLS)."""
    mark = LogMark(srv)
    p = send(srv, "legacy", ["--starttls=never", "--from", USER, "--to",
                             rcpt], pwfile)
    assert p.returncode == EX_OK, describe(p)
    mark.sessions_done()
    assert auth_events(mark) == [("auth_ok", "SCRAM-SHA-256")]
    assert not mark.events("tls")
    mark = LogMark(srv)
    p = send(srv, "legacy", ["--starttls=never", "--mech", "PLAIN",
                             "--allow-plaintext-auth", "--from", USER,
                             "--to", rcpt], pwfile)
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert "does not offer PLAIN" in p.stderr.decode()
    no_auth_sent(mark)


# --- STARTTLS ------------------------------------------------------------------

def test_starttls_required_but_not_offered(srv, pwfile, rcpt):
    mark = LogMark(srv)
    p = send(srv, "plain", ["--starttls=required", "--from", USER, "--to",
                            rcpt], pwfile, cafile=False)
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert "STARTTLS" in p.stderr.decode()
    no_auth_sent(mark)
    assert srv.messages(rcpt) == []


def test_starttls_never_against_tls_only_auth(srv, pwfile, rcpt):
    mark = LogMark(srv)
    p = send(srv, "starttls", ["--starttls=never", "--from", USER, "--to",
                               rcpt], pwfile)
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert "does not offer AUTH" in p.stderr.decode(), describe(p)
    no_auth_sent(mark)
    assert not mark.events("tls")


def test_starttls_required_and_offered(srv, pwfile, rcpt):
    p = send(srv, "starttls", ["--starttls=required", "--from", USER, "--to",
                               rcpt], pwfile)
    assert p.returncode == EX_OK, describe(p)


# --- certificates --------------------------------------------------------------

@pytest.fixture(scope="module")
def other_ca(tmp_path_factory):
    d = tmp_path_factory.mktemp("otherca")
    subprocess.run([os.path.join(ROOT, "tools", "gen-cert.sh"), "-t", "ec",
                    "mail.example.test", str(d)], check=True,
                   capture_output=True, timeout=60)
    return d / "cert.pem"


CERT_CASES = {
    # The certificate names mail.example.test, 127.0.0.1 and ::1.
    "name-mismatch": dict(host="localhost", cafile=True),
    "not-the-issuer": dict(host="127.0.0.1", cafile="other"),
    "system-store": dict(host="127.0.0.1", cafile=False),
}


@pytest.mark.parametrize("listener", ["starttls", "implicit"])
@pytest.mark.parametrize("case", sorted(CERT_CASES))
def test_certificate_refused(srv, pwfile, rcpt, other_ca, listener, case):
    c = CERT_CASES[case]
    mark = LogMark(srv)
    extra = ["--cafile", other_ca] if c["cafile"] == "other" else []
    p = send(srv, listener, extra + ["--from", USER, "--to", rcpt], pwfile,
             host=c["host"], cafile=c["cafile"] is True)
    # As implemented: a certificate that cannot be verified is a
    # permanent refusal (69), and the message says how to get past it.
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    err = p.stderr.decode()
    assert "certificate" in err and "--insecure" in err, err
    if case == "name-mismatch":
        assert "mismatch" in err, err
    no_auth_sent_tls(mark)
    assert srv.messages(rcpt) == []


def no_auth_sent_tls(mark):
    """The handshake failed, so the session never reached AUTH."""
    mark.sessions_done()
    assert not mark.events("auth_ok") and not mark.events("auth_failed")
    assert not mark.events("tls"), mark.text()


@pytest.mark.parametrize("listener", ["starttls", "implicit"])
def test_certificate_mismatch_insecure(srv, pwfile, rcpt, listener):
    p = send(srv, listener, ["--insecure", "--from", USER, "--to", rcpt],
             pwfile, host="localhost", cafile=False)
    assert p.returncode == EX_OK, describe(p)
    err = p.stderr.decode()
    assert "warning: --insecure" in err and "not checked" in err, err
    assert len(srv.messages(rcpt)) == 1


# --- the message -----------------------------------------------------------------

def header_and_body(msg):
    head, body = msg.split(b"\r\n\r\n", 1)
    return head.split(b"\r\n"), body


def test_stdin_bare_lf_and_dots(srv, pwfile, rcpt):
    text = (b"Subject: dots\n"
            b"X-Test: one\n"
            b"\n"
            b".leading dot\n"
            b"..two dots\n"
            b".\n"
            b"after a lone dot\n"
            b"CRLF line\r\n"
            b"last")
    p = send(srv, "starttls", ["--from", USER, "--to", rcpt], pwfile,
             input=text)
    assert p.returncode == EX_OK, describe(p)
    got = strip_received(srv.messages(rcpt)[0])
    head, body = header_and_body(got)
    # The body: CRLF everywhere, dots exactly as written (the server took
    # the stuffing off again), a line end added at the end.
    assert body == (b".leading dot\r\n..two dots\r\n.\r\n"
                    b"after a lone dot\r\nCRLF line\r\nlast\r\n")
    names = [h.split(b":", 1)[0] for h in head]
    assert sorted(names) == sorted([b"From", b"Date", b"Message-ID",
                                    b"Subject", b"X-Test"]), head
    assert head[-2:] == [b"Subject: dots", b"X-Test: one"]
    date = [h for h in head if h.startswith(b"Date: ")][0]
    assert re.match(rb"Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d "
                    rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                    rb"\d{4} \d\d:\d\d:\d\d [+-]\d{4}$", date), date
    mid = [h for h in head if h.startswith(b"Message-ID: ")][0]
    assert re.match(rb"Message-ID: <[^<>@\s]+@example\.test>$", mid), mid
    assert b"From: <%s>" % USER.encode() in head
    parsed = email.message_from_bytes(got, policy=email.policy.default)
    assert parsed["date"].datetime is not None


def test_stdin_date_and_message_id_kept(srv, pwfile, rcpt):
    p = send(srv, "starttls", ["--from", USER, "--to", rcpt], pwfile,
             input=FIXED_MSG.replace(b"\r\n", b"\n"))
    assert p.returncode == EX_OK, describe(p)
    assert strip_received(srv.messages(rcpt)[0]) == FIXED_MSG


def test_stdin_without_header(srv, pwfile, rcpt):
    p = send(srv, "starttls", ["--from", USER, "--to", rcpt], pwfile,
             input=b"just a body\nno header at all\n")
    assert p.returncode == EX_OK, describe(p)
    head, body = header_and_body(strip_received(srv.messages(rcpt)[0]))
    assert body == b"just a body\r\nno header at all\r\n"
    assert sorted(h.split(b":")[0] for h in head) == [b"Date", b"From",
                                                       b"Message-ID"]


def test_stdin_leading_white_space(srv, pwfile, rcpt):
    """A first line that starts with white space is no header field (RFC
    5322 §2.2): the message is all body, and nothing folds onto the
    Message-ID added above it (fuzz/corpus/mime/crash-stdin-leading-space).
    """
    p = send(srv, "starttls", ["--from", USER, "--to", rcpt], pwfile,
             input=b" x\nSubject: y\n\nbody\n")
    assert p.returncode == EX_OK, describe(p)
    head, body = header_and_body(strip_received(srv.messages(rcpt)[0]))
    assert sorted(h.split(b":")[0] for h in head) == [b"Date", b"From",
                                                       b"Message-ID"], head
    mid = [h for h in head if h.startswith(b"Message-ID: ")][0]
    assert re.match(rb"Message-ID: <[^<>@\s]+@example\.test>$", mid), mid
    assert body == b" x\r\nSubject: y\r\n\r\nbody\r\n"


def test_stdin_empty_message(srv, pwfile, rcpt):
    mark = LogMark(srv)
    p = send(srv, "starttls", ["--from", USER, "--to", rcpt], pwfile,
             input=b"")
    assert p.returncode == EX_DATAERR, describe(p)
    assert not mark.events("connect")


def big_text():
    lines = [b"line %06d %s" % (i, b"x" * 60) for i in range(40000)]
    lines[100] = b".starts with a dot"
    return lines, b"Subject: big\n\n" + b"\n".join(lines) + b"\n"


def test_stdin_large_message(srv, pwfile, rcpt):
    """More than the session's output limit (1 MiB) goes through the
    flush-and-retry path; every line survives."""
    lines, text = big_text()
    p = send(srv, "plain", ["--starttls=never", "--from", USER, "--to",
                            rcpt], pwfile, input=text, cafile=False)
    assert p.returncode == EX_OK, describe(p)
    head, body = header_and_body(strip_received(srv.messages(rcpt)[0]))
    assert body == b"\r\n".join(lines) + b"\r\n"


def test_stdin_large_message_tls(srv, pwfile, rcpt):
    """The same under TLS, where posternd once dropped the connection
    (input_overflow: a TLS read decrypted into a full backlog)."""
    lines, text = big_text()
    mark = LogMark(srv)
    p = send(srv, "starttls", ["--from", USER, "--to", rcpt], pwfile,
             input=text)
    mark.sessions_done()
    assert "input_overflow" not in mark.text()
    assert p.returncode == EX_OK, describe(p)
    head, body = header_and_body(strip_received(srv.messages(rcpt)[0]))
    assert body == b"\r\n".join(lines) + b"\r\n"


def make_files(d):
    rnd = os.urandom(200000)
    files = {
        # Every byte value, CR, LF, NUL, and lines that start with ".".
        "scan-0001.pdf": (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n" + bytes(range(256))
                          + b"\r\n.\r\n..\n\r.\x00" + rnd + b"\n%%EOF\n",
                          "application/pdf"),
        "page.tiff": (b"II*\x00\x08\x00\x00\x00" + rnd[:5000] + b"\r\n.\r\n",
                      "image/tiff"),
        "logo.png": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + rnd[:3001],
                     "image/png"),
        "photo.JPG": (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + rnd[:777],
                      "image/jpeg"),
        "Bericht März – Übersicht €.pdf": (rnd[:1234] + b"\r\n.\r\n",
                                           "application/pdf"),
        "notes.txt": (b"plain text\nsecond line\n.dot line\n",
                      "text/plain"),
        "empty.bin": (b"", "application/octet-stream"),
    }
    for name, (data, _) in files.items():
        (d / name).write_bytes(data)
    return files


def test_composed_message(srv, pwfile, rcpt, tmp_path):
    files = make_files(tmp_path)
    subject = "Scan vom Drucker – Größe ✓ 日本語 and a long tail to fold it"
    body = "Grüße,\nhere is the scan.\n.a line with a dot\n"
    (tmp_path / "body.txt").write_text(body, encoding="utf-8")
    args = ["--from", USER, "--to", rcpt, "--subject", subject,
            "--body", tmp_path / "body.txt"]
    for name in files:
        args += ["--attach", tmp_path / name]
    p = send(srv, "starttls", args, pwfile, input=b"")
    assert p.returncode == EX_OK, describe(p)
    raw = srv.messages(rcpt)[0]
    head = raw.split(b"\r\n\r\n", 1)[0]
    # RFC 2047: the header is ASCII, the subject encoded-words.
    assert head == head.decode("ascii").encode()
    assert b"=?UTF-8?B?" in head
    # RFC 2045 §6.8: no base64 line longer than 76.
    assert max(len(l) for l in raw.split(b"\r\n")) <= 998
    m = email.message_from_bytes(raw, policy=email.policy.default)
    assert m["subject"] == subject
    assert m["from"].addresses[0].addr_spec == USER
    assert [a.addr_spec for a in m["to"].addresses] == [rcpt]
    assert m["message-id"] and m["date"].datetime is not None
    assert m.get_content_type() == "multipart/mixed"
    parts = list(m.iter_parts())
    assert parts[0].get_content_type() == "text/plain"
    # (The parser keeps the message's CRLF in text it returns.)
    assert parts[0].get_content().replace("\r\n", "\n") == body
    assert not parts[0].is_attachment()
    atts = [x for x in parts[1:]]
    assert [a.get_filename() for a in atts] == list(files)
    for a in atts:
        data, ctype = files[a.get_filename()]
        assert a.is_attachment()
        assert a.get_content_type() == ctype, a.get_filename()
        assert a["content-transfer-encoding"] == "base64"
        assert a.get_payload(decode=True) == data, a.get_filename()
        lines = a.get_payload(decode=False).split("\n")
        assert all(len(l.rstrip("\r")) <= 76 for l in lines)
    # RFC 2231 for the UTF-8 file name.
    assert b"filename*=UTF-8''Bericht%20M%C3%A4rz" in raw


def test_composed_body_only(srv, pwfile, rcpt, tmp_path):
    (tmp_path / "b.txt").write_bytes(b"only text\n")
    p = send(srv, "starttls", ["--from", USER, "--to", rcpt, "--subject",
                               "plain", "--body", tmp_path / "b.txt"],
             pwfile, input=b"")
    assert p.returncode == EX_OK, describe(p)
    m = email.message_from_bytes(srv.messages(rcpt)[0],
                                 policy=email.policy.default)
    assert m.get_content_type() == "text/plain"
    assert m.get_content() == "only text\r\n"
    assert m["subject"] == "plain"


@pytest.mark.parametrize("subject", [
    "a" * 1200, " ".join(["word"] * 300)], ids=["one-word", "words"])
def test_composed_long_subject(srv, pwfile, rcpt, tmp_path, subject):
    """RFC 5322 §2.1.1: no line over 998 octets, however long the ASCII
    subject: it goes as folded encoded-words (fuzz/corpus/mime/
    crash-long-subject)."""
    p = send(srv, "starttls", ["--from", USER, "--to", rcpt, "--subject",
                               subject], pwfile, input=b"")
    assert p.returncode == EX_OK, describe(p)
    raw = srv.messages(rcpt)[0]
    assert max(len(l) for l in raw.split(b"\r\n")) <= 998
    m = email.message_from_bytes(raw, policy=email.policy.default)
    assert m["subject"] == subject


def test_composed_body_cr_line_ends(srv, pwfile, rcpt, tmp_path):
    """A bare CR ends a line like LF and CRLF (RFC 5322 §2.3): CRLF in the
    message, and none added after a CR at the end of the file
    (fuzz/corpus/mime/body-line-ends)."""
    (tmp_path / "b.txt").write_bytes(b"one\rtwo\r\nthree\nfour\r")
    p = send(srv, "starttls", ["--from", USER, "--to", rcpt, "--subject",
                               "cr", "--body", tmp_path / "b.txt"],
             pwfile, input=b"")
    assert p.returncode == EX_OK, describe(p)
    head, body = header_and_body(strip_received(srv.messages(rcpt)[0]))
    assert b"Content-Transfer-Encoding: 7bit" in head
    assert body == b"one\r\ntwo\r\nthree\r\nfour\r\n"


def fixed_date_and_id(msg):
    """msg with the values of its Date and Message-ID fields (composed:
    the time and random bytes) replaced by fixed ones, checked first."""
    date = rb"Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z][a-z] " \
        rb"\d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n"
    mid = rb"Message-ID: <[0-9a-f]+\.[0-9a-f]{24}@example\.test>\r\n"
    assert len(re.findall(date, msg)) == 1, msg
    assert len(re.findall(mid, msg)) == 1, msg
    msg = re.sub(date, b"Date: D\r\n", msg)
    return re.sub(mid, b"Message-ID: M\r\n", msg)


def composed(rcpt, subject, ctype="text/plain; charset=us-ascii",
             cte="7bit", body=b"", from_field=None):
    return (b"From: %s\r\nTo: <%s>\r\nSubject: %s\r\nDate: D\r\n"
            b"Message-ID: M\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: %s\r\nContent-Transfer-Encoding: %s\r\n\r\n"
            % (from_field or b"<%s>" % USER.encode(), rcpt.encode(),
               subject.encode(), ctype.encode(), cte.encode()) + body)


def test_composed_body_from_stdin(srv, pwfile, rcpt):
    """mail -s S to < body: with --subject and no --body, standard input
    (not a terminal) is the text, not dropped."""
    p = send(srv, "starttls", ["--from", USER, "--to", rcpt, "--subject",
                               "from stdin"], pwfile,
             input=b"first line\n.dot line\nFrom here\nlast")
    assert p.returncode == EX_OK, describe(p)
    assert p.stderr == b""
    got = fixed_date_and_id(strip_received(srv.messages(rcpt)[0]))
    assert got == composed(rcpt, "from stdin", body=b"first line\r\n"
                           b".dot line\r\nFrom here\r\nlast\r\n"), got


def test_composed_body_dash_and_attachment(srv, pwfile, rcpt, tmp_path):
    """--body - reads standard input; with --attach and no --body the
    text part is standard input too."""
    (tmp_path / "a.txt").write_bytes(b"attached\n")
    for args in (["--body", "-", "--attach", tmp_path / "a.txt"],
                 ["--attach", tmp_path / "a.txt"]):
        p = send(srv, "starttls", ["--from", USER, "--to", rcpt] + args,
                 pwfile, input=b"the text\n")
        assert p.returncode == EX_OK, describe(p)
    for raw in srv.messages(rcpt):
        m = email.message_from_bytes(raw, policy=email.policy.default)
        text, att = list(m.iter_parts())
        assert text.get_content() == "the text\r\n"
        assert att.get_payload(decode=True) == b"attached\n"


def test_composed_body_file_warns_about_stdin(srv, pwfile, rcpt, tmp_path):
    """--body FILE with data waiting on standard input: the file is the
    text, and a warning says standard input was not read."""
    (tmp_path / "b.txt").write_bytes(b"from the file\n")
    (tmp_path / "in.txt").write_bytes(b"waiting on stdin\n")
    a = ["send", "--server", url(srv, "starttls"), "--cafile", srv.cert,
         "--user", USER, "--password-file", pwfile, "--from", USER, "--to",
         rcpt, "--subject", "file", "--body", tmp_path / "b.txt"]
    with open(tmp_path / "in.txt", "rb") as stdin:
        p = subprocess.run([str(postern_bin())] + [str(x) for x in a],
                           stdin=stdin, capture_output=True, timeout=60,
                           env=clean_env(tmp_path), start_new_session=True)
    assert p.returncode == EX_OK, describe(p)
    assert p.stderr == (b"postern send: warning: standard input is not "
                        b"read: --body gives the text (--body - reads "
                        b"standard input)\n"), describe(p)
    got = fixed_date_and_id(strip_received(srv.messages(rcpt)[0]))
    assert got == composed(rcpt, "file", body=b"from the file\r\n"), got


def test_composed_missing_attachment(srv, pwfile, rcpt, tmp_path):
    mark = LogMark(srv)
    p = send(srv, "starttls", ["--from", USER, "--to", rcpt, "--attach",
                               tmp_path / "nope.pdf"], pwfile, input=b"")
    assert p.returncode != EX_OK
    assert "nope.pdf" in p.stderr.decode()
    assert not mark.events("connect")


def test_cc_and_bcc(srv, pwfile, tmp_path):
    to, cc1, cc2 = ("to-x@example.test", "cc-x@example.test",
                    "cc2-x@example.test")
    bcc = "bcc-hidden@example.test"
    p = send(srv, "starttls", ["--from", USER, "--to", to, "--cc", cc1,
                               "--cc", cc2, "--bcc", bcc, "--subject",
                               "cc test"], pwfile, input=b"")
    assert p.returncode == EX_OK, describe(p)
    for a in (to, cc1, cc2, bcc):
        msgs = srv.messages(a)
        assert len(msgs) == 1, a
        m = email.message_from_bytes(msgs[0], policy=email.policy.default)
        assert [x.addr_spec for x in m["to"].addresses] == [to]
        assert [x.addr_spec for x in m["cc"].addresses] == [cc1, cc2]
        assert m["bcc"] is None
        assert b"bcc-hidden" not in strip_received(msgs[0])


def test_cc_and_bcc_stdin(srv, pwfile):
    """Envelope recipients from the options; the header as given."""
    text = b"To: <someone@example.test>\nSubject: env\n\nhi\n"
    p = send(srv, "starttls", ["--from", USER, "--to", "env1@example.test",
                               "--bcc", "env2@example.test"], pwfile,
             input=text)
    assert p.returncode == EX_OK, describe(p)
    for a in ("env1@example.test", "env2@example.test"):
        assert len(srv.messages(a)) == 1
    assert b"env2" not in strip_received(srv.messages("env1@example.test")[0])


# --- transcript -------------------------------------------------------------------

@pytest.mark.parametrize("mech", ALL_MECHS)
def test_verbose_redacts_auth(srv, pwfile, rcpt, mech):
    p = send(srv, "starttls", ["-v", "--mech", mech, "--from", USER, "--to",
                               rcpt], pwfile)
    assert p.returncode == EX_OK, describe(p)
    err = p.stderr
    assert b"C: EHLO " in err and b"S: 220 " in err and b"C: QUIT" in err
    # The server's acceptance, not the TLS close that followed QUIT.
    assert re.search(rb"\npostern send: sent: 250 2\.0\.0 Ok: queued as "
                     rb"\w+\n$", err), err[-300:]
    assert b"C: MAIL FROM:<%s>" % USER.encode() in err
    auth = [l for l in err.split(b"\n") if l.startswith(b"C: AUTH")]
    assert auth and all(l.endswith(b"<redacted>") or l == b"C: AUTH " +
                        mech.encode() for l in auth), auth
    for l in err.split(b"\n"):
        if l.startswith(b"S: 334"):
            assert l == b"S: 334 <redacted>", l
    for s in secret_forms() + [base64.b64encode(USER.encode())]:
        assert s not in err, s
    # Every AUTH continuation line is redacted.
    conts = re.findall(rb"C: (?!EHLO|STARTTLS|AUTH|MAIL|RCPT|DATA|QUIT|"
                       rb"<message|\.)(.*)", err)
    assert all(c == b"<redacted>" for c in conts), conts


# --- the password ---------------------------------------------------------------

def test_password_file_first_line(srv, rcpt, tmp_path):
    f = tmp_path / "pw"
    f.write_bytes(PASSWORD.encode() + b"\r\nsecond line\n")
    p = send(srv, "starttls", ["--from", USER, "--to", rcpt], f)
    assert p.returncode == EX_OK, describe(p)


def test_password_from_environment(srv, rcpt, tmp_path):
    env = clean_env(tmp_path, POSTERN_PASSWORD=PASSWORD)
    p = send(srv, "starttls", ["--user", USER, "--from", USER, "--to", rcpt],
             env=env)
    assert p.returncode == EX_OK, describe(p)
    assert len(srv.messages(rcpt)) == 1


def test_password_file_wins_over_environment(srv, rcpt, tmp_path, pwfile):
    env = clean_env(tmp_path, POSTERN_PASSWORD="wrong")
    p = send(srv, "starttls", ["--from", USER, "--to", rcpt], pwfile,
             env=env)
    assert p.returncode == EX_OK, describe(p)


def test_no_password_source(srv, rcpt, tmp_path):
    """No file, no variable, no terminal: a usage error, and nothing is
    sent (not even a connection)."""
    mark = LogMark(srv)
    p = send(srv, "starttls", ["--user", USER, "--from", USER, "--to", rcpt])
    assert p.returncode == EX_USAGE, describe(p)
    assert "password" in p.stderr.decode()
    assert not mark.events("connect")


def test_password_prompt_on_terminal(srv, rcpt, tmp_path):
    mark = LogMark(srv)
    env = clean_env(tmp_path)
    rc, out = run_pty(["send", "--server", url(srv, "starttls"), "--cafile",
                       srv.cert, "--user", USER, "--from", USER, "--to", rcpt,
                       "--subject", "typed", "--timeout", "20"], env,
                      respond=(b"Password: ", PASSWORD.encode() + b"\n"))
    assert rc == EX_OK, out
    assert b"Password: " in out
    assert PASSWORD.encode() not in out  # no echo
    mark.sessions_done()
    assert auth_events(mark) == [("auth_ok", "SCRAM-SHA-256")]
    m = email.message_from_bytes(srv.messages(rcpt)[0],
                                 policy=email.policy.default)
    assert m["subject"] == "typed"


def test_progress_on_terminal(srv, pwfile, rcpt, tmp_path):
    (tmp_path / "big.pdf").write_bytes(os.urandom(3 << 20))
    rc, out = run_pty(["send", "--server", url(srv, "starttls"),
                       "--cafile", srv.cert,
                       "--user", USER, "--password-file", pwfile,
                       "--from", USER, "--to", rcpt, "--attach",
                       tmp_path / "big.pdf", "--timeout", "20"],
                      clean_env(tmp_path))
    assert rc == EX_OK, out
    assert re.search(rb"sending: \d+ of \d+ KiB \(100%\)", out), out
    m = email.message_from_bytes(srv.messages(rcpt)[0],
                                 policy=email.policy.default)
    att = list(m.iter_attachments())[0]
    assert att.get_payload(decode=True) == (tmp_path / "big.pdf").read_bytes()


# --- usage ---------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    [],
    ["--server", "smtp://127.0.0.1:1", "--to", "a@example.test"],
    ["--server", "smtp://127.0.0.1:1", "--from", "a@example.test"],
    ["--server", "http://x", "--from", "a@b.c", "--to", "a@b.c"],
    ["--server", "smtp://h:99999", "--from", "a@b.c", "--to", "a@b.c"],
    ["--server", "smtp://h", "--from", "a@b.c", "--to", "a@b.c",
     "--starttls=sometimes"],
    ["--server", "smtp://h", "--from", "a@b.c", "--to", "a@b.c",
     "--mech", "X-NOPE"],
    ["--server", "smtp://h", "--from", "a@b.c", "--to", "a@b.c", "extra"],
    ["--no-such-option"],
], ids=["nothing", "no-from", "no-to", "scheme", "port", "starttls", "mech",
        "argument", "option"])
def test_usage_errors(args, tmp_path):
    p = run_postern(["send"] + args, input=b"Subject: x\n\nx\n",
                    home=tmp_path)
    assert p.returncode == EX_USAGE, describe(p)
    assert p.stderr


def test_connection_refused(tmp_path, pwfile):
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    p = run_postern(["send", "--server", "smtp://127.0.0.1:%d" % port,
                     "--user", USER, "--password-file", pwfile, "--from",
                     USER, "--to", USER], input=FIXED_MSG, home=tmp_path)
    assert p.returncode == EX_TEMPFAIL, describe(p)
    assert "cannot connect" in p.stderr.decode()
