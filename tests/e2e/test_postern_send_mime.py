"""What `postern send` composes, against servers that differ in what they
take: 8-bit text goes 8bit to a server that offers 8BITMIME (posternd)
and quoted-printable to one that does not (aiosmtpd with decode_data,
which then also refuses 8-bit bytes: "500 Error: strict ASCII mode"),
RFC 6152 §3.  The bytes that arrive are compared whole, with only the
Date and Message-ID values (time, random) masked; the quoted-printable
text is written out here by hand (RFC 2045 §6.7) and also decoded back
with Python's email package."""
import email
import email.policy
import logging
import re
import socket
import threading
import warnings

import pytest

from posternd_util import Posternd, strip_received
from postern_client_util import (
    EX_DATAERR, EX_OK, EX_USAGE, USER, FakeSMTP, LogMark, describe,
    run_postern, settled)

import aiosmtpd.controller as aiosmtpd_controller

logging.getLogger("mail.log").setLevel(logging.ERROR)
pytestmark = [pytest.mark.filterwarnings("ignore::DeprecationWarning")]


# --- servers -------------------------------------------------------------------

class Handler:
    def __init__(self):
        self.envelopes = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.envelopes.append((envelope.mail_from,
                                   list(envelope.rcpt_tos),
                                   bytes(envelope.original_content),
                                   list(envelope.mail_options)))
        return "250 2.0.0 Ok: queued"


class Aiosmtpd:
    """aiosmtpd without 8BITMIME: decode_data=True makes it leave the
    keyword out and refuse 8-bit message bytes."""

    def __init__(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.handler = Handler()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.ctl = aiosmtpd_controller.Controller(
                self.handler, hostname="127.0.0.1", port=self.port,
                server_hostname="aiosmtpd.example.test", decode_data=True,
                ready_timeout=10)

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
def srv(tmp_path_factory):
    d = tmp_path_factory.mktemp("posternd")
    p = settled(Posternd(d, extra_global="auth_throttle = no\n").start())
    yield p
    assert p.stop() == 0, p.log()


@pytest.fixture(scope="module")
def pwfile(tmp_path_factory):
    from postern_client_util import PASSWORD
    f = tmp_path_factory.mktemp("pw") / "password"
    f.write_text(PASSWORD + "\n")
    return f


def to_posternd(srv, pwfile, args, input=b""):
    return run_postern(["send", "--server", "smtp://127.0.0.1:%d"
                        % srv.ports["starttls"], "--cafile", srv.cert,
                        "--timeout", "20", "--user", USER,
                        "--password-file", pwfile] + list(args),
                       input=input)


def to_plain(url, args, input=b""):
    return run_postern(["send", "--server", url, "--starttls=never",
                        "--timeout", "20"] + list(args), input=input)


def masked(msg):
    """msg with its Date and Message-ID values (one of each) masked."""
    date = rb"Date: (Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d [A-Z][a-z][a-z] " \
        rb"\d{4} \d\d:\d\d:\d\d [+-]\d{4}\r\n"
    mid = rb"Message-ID: <[0-9a-f]+\.[0-9a-f]{24}@example\.test>\r\n"
    assert len(re.findall(date, msg)) == 1, msg
    assert len(re.findall(mid, msg)) == 1, msg
    return re.sub(mid, b"Message-ID: M\r\n",
                  re.sub(date, b"Date: D\r\n", msg))


def head(rcpt, subject, cte, charset="utf-8", from_field=None):
    return (b"From: %s\r\nTo: <%s>\r\nSubject: %s\r\nDate: D\r\n"
            b"Message-ID: M\r\nMIME-Version: 1.0\r\n"
            b"Content-Type: text/plain; charset=%s\r\n"
            b"Content-Transfer-Encoding: %s\r\n\r\n"
            % (from_field or b"<%s>" % USER.encode(), rcpt.encode(),
               subject.encode(), charset.encode(), cte.encode()))


# --- 8-bit text: 8bit or quoted-printable (RFC 6152 §3) -----------------------

TEXT = ("Grüße aus Köln = 100%\n"
        "Leerzeichen am Ende \n"
        "Tab am Ende\t\n"
        + "ä" * 40 + "\n"
        + ".Punkt\n"
        + "x" * 80 + "\n"
        + "kein Zeilenende").encode()

# RFC 2045 §6.7 by hand: 8-bit bytes and "=" as =XX (rule 1), a space or
# TAB ending a line as =20 / =09 (rule 3), lines of at most 76 characters
# with soft breaks "=" (rule 5), line ends CRLF (rule 4), a last line end
# added.
TEXT_QP = (b"Gr=C3=BC=C3=9Fe aus K=C3=B6ln =3D 100%\r\n"
           b"Leerzeichen am Ende=20\r\n"
           b"Tab am Ende=09\r\n"
           + b"=C3=A4" * 12 + b"=C3=\r\n"
           + b"=A4" + b"=C3=A4" * 12 + b"=\r\n"
           + b"=C3=A4" * 12 + b"=C3=\r\n"
           + b"=A4" + b"=C3=A4" * 2 + b"\r\n"
           b".Punkt\r\n"
           + b"x" * 75 + b"=\r\n" + b"xxxxx\r\n"
           b"kein Zeilenende\r\n")

TEXT_8BIT = TEXT.replace(b"\n", b"\r\n") + b"\r\n"


def test_qp_vector_is_rfc_2045():
    """The hand-written vector against Python's own decoder (quopri):
    the text back, line ends as CRLF."""
    import quopri
    assert quopri.decodestring(TEXT_QP) == TEXT_8BIT
    assert max(len(l) for l in TEXT_QP.split(b"\r\n")) <= 76


def test_8bit_text_quoted_printable_without_8bitmime():
    rcpt = "qp@example.test"
    with Aiosmtpd() as s:
        p = to_plain(s.url, ["--from", USER, "--to", rcpt, "--subject",
                             "qp"], input=TEXT)
        assert p.returncode == EX_OK, describe(p)
        [(mail_from, rcpts, content, opts)] = s.handler.envelopes
    assert (mail_from, rcpts) == (USER, [rcpt])
    assert not [o for o in opts if o.upper().startswith("BODY")], opts
    assert masked(content) == head(rcpt, "qp", "quoted-printable") + \
        TEXT_QP, content
    m = email.message_from_bytes(content, policy=email.policy.default)
    assert m.get_content().replace("\r\n", "\n") == TEXT.decode() + "\n"


def test_8bit_text_as_is_with_8bitmime(srv, pwfile):
    rcpt = "eightbit@example.test"
    p = to_posternd(srv, pwfile, ["--from", USER, "--to", rcpt,
                                  "--subject", "8bit"], input=TEXT)
    assert p.returncode == EX_OK, describe(p)
    got = masked(strip_received(srv.messages(rcpt)[0]))
    assert got == head(rcpt, "8bit", "8bit") + TEXT_8BIT, got


def test_8bit_text_attachment_quoted_printable():
    """multipart/mixed: the text part alone changes; MAIL declares the
    size of the larger form (RFC 1870: sent before the form is chosen)."""
    rcpt = "qp-att@example.test"
    with FakeSMTP(ehlo=["PIPELINING", "SIZE 1000000"]) as f:
        p = run_postern(["send", "--server", f.url, "--starttls=never",
                         "--from", USER, "--to", rcpt, "--attach",
                         "/dev/null"], input="Grüße\n".encode())
    assert p.returncode == EX_OK, describe(p)
    [msg] = f.messages
    mail = [c for c in f.commands if c.startswith(b"MAIL")][0]
    assert mail == b"MAIL FROM:<%s> SIZE=%d" % (USER.encode(), len(msg))
    body = masked(msg).split(b"\r\n\r\n", 1)[1]
    b = re.search(rb"--(=_postern_[0-9a-f]{24})\r\n", body).group(1)
    assert body == (
        b"This is a message in MIME format.\r\n\r\n--" + b + b"\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        b"Gr=C3=BC=C3=9Fe\r\n"
        b"\r\n--" + b + b"\r\nContent-Type: application/octet-stream; "
        b"name=\"null\"\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename=\"null\"\r\n\r\n"
        b"\r\n--" + b + b"--\r\n"), body


def test_8bit_text_8bit_declared_to_fake():
    """With 8BITMIME: BODY=8BITMIME and the 8bit form."""
    with FakeSMTP(ehlo=["8BITMIME"]) as f:
        p = run_postern(["send", "--server", f.url, "--starttls=never",
                         "--from", USER, "--to", "b@example.test",
                         "--subject", "s"], input="Grüße\n".encode())
    assert p.returncode == EX_OK, describe(p)
    assert b"MAIL FROM:<%s> BODY=8BITMIME" % USER.encode() in f.commands
    assert masked(f.messages[0]) == head("b@example.test", "s", "8bit") + \
        "Grüße\r\n".encode()


def test_ascii_text_unchanged_without_8bitmime():
    rcpt = "ascii@example.test"
    with Aiosmtpd() as s:
        p = to_plain(s.url, ["--from", USER, "--to", rcpt, "--subject",
                             "a"], input=b"plain = ascii \n")
        assert p.returncode == EX_OK, describe(p)
        [(_, _, content, _)] = s.handler.envelopes
    assert masked(content) == head(rcpt, "a", "7bit", "us-ascii") + \
        b"plain = ascii \r\n"


# --- addresses: quoted local parts, 8-bit ------------------------------------

def test_quoted_local_part_composed():
    """A quoted local part (RFC 5321 §4.1.2 Quoted-string) goes into the
    envelope and the header as it is."""
    to, cc = '"john.doe"@example.test', '"a@b"@example.test'
    with FakeSMTP(ehlo=["PIPELINING"]) as f:
        p = run_postern(["send", "--server", f.url, "--starttls=never",
                         "--from", USER, "--to", to, "--cc", cc,
                         "--subject", "q"], input=b"x\n")
    assert p.returncode == EX_OK, describe(p)
    assert [c for c in f.commands if c.startswith((b"MAIL", b"RCPT"))] == [
        b"MAIL FROM:<%s>" % USER.encode(),
        b'RCPT TO:<"john.doe"@example.test>',
        b'RCPT TO:<"a@b"@example.test>']
    assert masked(f.messages[0]) == (
        b"From: <tim@example.test>\r\nTo: <\"john.doe\"@example.test>\r\n"
        b"Cc: <\"a@b\"@example.test>\r\nSubject: q\r\nDate: D\r\n"
        b"Message-ID: M\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: text/plain; charset=us-ascii\r\n"
        b"Content-Transfer-Encoding: 7bit\r\n\r\nx\r\n")


# RFC 6531: an address with 8-bit octets (UTF-8) asks for SMTPUTF8 on
# MAIL; a server without it gets nothing (no downgrade, §3.4): exit 65.
UTF8_ADDRS = [("--to", "jörg@example.test"), ("--cc", "info@bücher.example"),
              ("--bcc", "日本@example.test"), ("--from", "jörg@example.test")]


@pytest.mark.parametrize("opt,addr", UTF8_ADDRS)
def test_8bit_address_smtputf8(opt, addr):
    """The envelope carries the UTF-8 address as it is, MAIL says SMTPUTF8
    (and BODY=8BITMIME when the header holds it too, RFC 6532: not for a
    Bcc)."""
    with FakeSMTP(ehlo=["PIPELINING", "SMTPUTF8", "8BITMIME"]) as f:
        a = ["send", "--server", f.url, "--starttls=never", "--from", USER,
             "--to", "a@example.test", "--subject", "u"]
        p = run_postern(a + [opt, addr], input=b"x\n")
    assert p.returncode == EX_OK, describe(p)
    sender = addr if opt == "--from" else USER
    rcpts = ["a@example.test"] + ([] if opt == "--from" else [addr])
    body = b"" if opt == "--bcc" else b" BODY=8BITMIME"
    assert [c for c in f.commands if c.startswith((b"MAIL", b"RCPT"))] == [
        b"MAIL FROM:<%s>%s SMTPUTF8" % (sender.encode(), body)] + [
        b"RCPT TO:<%s>" % r.encode() for r in rcpts]
    msg = f.messages[0]
    if opt == "--bcc":
        assert addr.encode() not in msg
    else:
        assert addr.encode() in msg


@pytest.mark.parametrize("opt,addr", UTF8_ADDRS)
def test_8bit_address_without_smtputf8(opt, addr):
    """A server that does not offer SMTPUTF8: 65, no MAIL sent."""
    with FakeSMTP(ehlo=["PIPELINING", "8BITMIME"]) as f:
        a = ["send", "--server", f.url, "--starttls=never", "--from", USER,
             "--to", "a@example.test", "--subject", "u"]
        p = run_postern(a + [opt, addr], input=b"x\n")
    assert p.returncode == EX_DATAERR, describe(p)
    assert p.stderr.decode() == (
        "postern send: the server does not offer SMTPUTF8 (RFC 6531), which "
        "the internationalized address '%s' needs; nothing was sent\n"
        % addr), describe(p)
    assert f.commands == [b"EHLO " + f.commands[0][5:], b"QUIT"]
    assert f.messages == []


def test_8bit_address_posternd_refused(srv, pwfile):
    """posternd does not offer SMTPUTF8: after AUTH, no MAIL, exit 65."""
    rcpt = "jörg-utf8@example.test"
    mark = LogMark(srv)
    p = to_posternd(srv, pwfile, ["--from", USER, "--to", rcpt, "--subject",
                                  "u"], input=b"x\n")
    assert p.returncode == EX_DATAERR, describe(p)
    assert "the server does not offer SMTPUTF8 (RFC 6531), which the " \
        "internationalized address 'jörg-utf8@example.test' needs; " \
        "nothing was sent" in p.stderr.decode(), describe(p)
    assert srv.messages(rcpt) == []
    mark.sessions_done()
    assert not mark.events("message_accepted"), mark.text()
    assert mark.events("auth_ok"), mark.text()


class Utf8Handler(Handler):
    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"


def test_8bit_address_aiosmtpd_smtputf8():
    """aiosmtpd with enable_SMTPUTF8: delivered, the envelope in UTF-8,
    SMTPUTF8 among MAIL's options, the header as composed."""
    with socket.socket() as so:
        so.bind(("127.0.0.1", 0))
        port = so.getsockname()[1]
    h = Utf8Handler()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ctl = aiosmtpd_controller.Controller(
            h, hostname="127.0.0.1", port=port,
            server_hostname="aiosmtpd.example.test", enable_SMTPUTF8=True,
            ready_timeout=10)
        ctl.start()
    try:
        p = to_plain("smtp://127.0.0.1:%d" % port,
                     ["--from", "jörg@bücher.example", "--to",
                      "日本@example.test", "--cc", '"zoë q"@example.test',
                      "--subject", "Grüße"], input="Hallo\n".encode())
    finally:
        ctl.stop()
    assert p.returncode == EX_OK, describe(p)
    [(mail_from, rcpts, content, opts)] = h.envelopes
    assert mail_from == "jörg@bücher.example"
    assert rcpts == ["日本@example.test", '"zoë q"@example.test']
    assert "SMTPUTF8" in opts and "BODY=8BITMIME" in opts, opts
    mid = rb"Message-ID: <[0-9a-f]+\.[0-9a-f]{24}@b\xc3\xbccher\.example>\r\n"
    assert len(re.findall(mid, content)) == 1, content
    content = re.sub(mid, b"Message-ID: M\r\n", content)
    date = rb"Date: [^\r]*\r\n"
    content = re.sub(date, b"Date: D\r\n", content, count=1)
    assert content == (
        "From: <jörg@bücher.example>\r\nTo: <日本@example.test>\r\n"
        "Cc: <\"zoë q\"@example.test>\r\n"
        "Subject: =?UTF-8?B?R3LDvMOfZQ==?=\r\nDate: D\r\nMessage-ID: M\r\n"
        "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n"
        "Content-Transfer-Encoding: 7bit\r\n\r\nHallo\r\n").encode()


@pytest.mark.parametrize("addr", ["j\udcf6rg@example.test",
                                  "a@example.test\udcff"])
def test_8bit_address_not_utf8(addr):
    """8-bit octets that are not UTF-8: no address (64), nothing sent."""
    raw = addr.encode("utf-8", "surrogateescape")
    with FakeSMTP(ehlo=["PIPELINING", "SMTPUTF8"]) as f:
        p = run_postern(["send", "--server", f.url, "--starttls=never",
                         "--from", USER, "--to", addr], input=b"x\n")
    assert p.returncode == EX_USAGE, describe(p)
    assert p.stderr == (b"postern send: --to '%s' is not an address (give "
                        b"the bare address, like user@example.test; 8-bit "
                        b"octets must be UTF-8)\n" % raw)
    assert f.commands == []


# RFC 5321 §4.1.2: Quoted-string = DQUOTE *QcontentSMTP DQUOTE, a space,
# "<" and ">" among qtextSMTP.
@pytest.mark.parametrize("addr", ['"john doe"@example.test',
                                  '"a<b>"@example.test',
                                  '"a\\"b c"@example.test'])
def test_quoted_local_part_with_space(addr):
    """Sent as it is: the exact RCPT bytes at a scripted server."""
    with FakeSMTP(ehlo=["PIPELINING"]) as f:
        p = run_postern(["send", "--server", f.url, "--starttls=never",
                         "--from", '"tim q"@example.test', "--to", addr],
                        input=b"Subject: q\n\nx\n")
    assert p.returncode == EX_OK, describe(p)
    assert [c for c in f.commands if c.startswith((b"MAIL", b"RCPT"))] == [
        b'MAIL FROM:<"tim q"@example.test>', b"RCPT TO:<%s>" % addr.encode()]
    assert len(f.messages) == 1


def test_quoted_local_part_with_space_posternd(srv, pwfile):
    """Delivered by posternd to the quoted address (its Maildir is named
    by the local part as it is), the message byte for byte."""
    addr = '"john doe"@example.test'
    p = to_posternd(srv, pwfile, ["--from", USER, "--to", addr],
                    input=b"Subject: q\n\nx\n")
    assert p.returncode == EX_OK, describe(p)
    [got] = srv.messages(addr)
    assert masked(strip_received(got)).replace(
        b"Return-Path: <tim@example.test>\r\n", b"") == (
        b"From: <tim@example.test>\r\nDate: D\r\nMessage-ID: M\r\n"
        b"Subject: q\r\n\r\nx\r\n")
    assert srv.messages("john.doe@example.test") == []


@pytest.mark.parametrize("addr", ['"unclosed@example.test', '"a"b@x.test',
                                  '"a"@', '"tab\there"@x.test', 'a b'])
def test_bad_quoted_local_part_usage(addr):
    p = run_postern(["send", "--server", "smtp://127.0.0.1:1", "--from",
                     USER, "--to", addr], input=b"x\n")
    assert p.returncode == EX_USAGE, describe(p)
    assert "'%s' is not an address" % addr in p.stderr.decode()


# --- From with a display name -------------------------------------------------

@pytest.mark.parametrize("args,field", [
    (["--from", "Tim Example <tim@example.test>"],
     b"From: Tim Example <tim@example.test>"),
    (["--from", '"Doe, John" <tim@example.test>'],
     b'From: "Doe, John" <tim@example.test>'),
    (["--from", "J\u00f6rg M\u00fcller <tim@example.test>"],
     b"From: =?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <tim@example.test>"),
    (["--from", "tim@example.test", "--from-name", "Zo\u00eb"],
     b"From: =?UTF-8?B?Wm/Dqw==?= <tim@example.test>"),
    (["--from", "Old Name <tim@example.test>", "--from-name", "New"],
     b"From: New <tim@example.test>"),
    (["--from", "<tim@example.test>"], b"From: <tim@example.test>"),
], ids=["atoms", "quoted", "utf8", "from-name", "from-name-wins", "angle"])
def test_from_display_name(srv, pwfile, args, field):
    """--from "Name <addr>" and --from-name: the envelope gets the
    address, the From field the name (RFC 2047 when it is not ASCII)."""
    rcpt = "fn-%d@example.test" % abs(hash(tuple(args)))
    p = to_posternd(srv, pwfile, args + ["--to", rcpt, "--subject", "n"],
                    input=b"x\n")
    assert p.returncode == EX_OK, describe(p)
    got = masked(strip_received(srv.messages(rcpt)[0]))
    assert got == head(rcpt, "n", "7bit", "us-ascii",
                       from_field=field[6:]) + b"x\r\n", got


def test_from_display_name_envelope_and_stdin():
    """The envelope: the bare address.  A message from standard input
    without From gets one with the name."""
    with FakeSMTP(ehlo=["PIPELINING"]) as f:
        p = run_postern(["send", "--server", f.url, "--starttls=never",
                         "--from", '"Ops, Team" <ops@example.test>',
                         "--to", "a@example.test"],
                        input=b"Subject: s\n\nbody\n")
    assert p.returncode == EX_OK, describe(p)
    assert b"MAIL FROM:<ops@example.test>" in f.commands
    assert masked(f.messages[0]) == (
        b'From: "Ops, Team" <ops@example.test>\r\nDate: D\r\n'
        b"Message-ID: M\r\nSubject: s\r\n\r\nbody\r\n")


@pytest.mark.parametrize("value,err", [
    ("Name <tim@example.test", "'Name <tim@example.test' is neither an "
     "address nor \"Name <address>\""),
    ("Name <tim@example.test> x", "'Name <tim@example.test> x' is neither"),
    ('"Name <tim@example.test>', "'\"Name <tim@example.test>' is not an "
     "address"),
    ("Name <two words@example.test>", "'two words@example.test' is not an "
     "address")])
def test_from_display_name_malformed(value, err):
    p = run_postern(["send", "--server", "smtp://127.0.0.1:1", "--from",
                     value, "--to", "a@example.test"], input=b"x\n")
    assert p.returncode == EX_USAGE, describe(p)
    assert p.stderr.decode().startswith("postern send: --from " + err), \
        describe(p)
