"""postern invoked as `sendmail` (a link), the way cron, mail(1), PHP and
git send mail: -t (recipients from To/Cc/Bcc, Bcc removed), recipients as
arguments, -f (envelope sender), -F (full name in an added From), -i/-oi
against a lone "." line, and the configuration file (server and
credentials; refused when others can read a password in it)."""
import email
import email.header
import email.policy
import os
import re

import pytest

from posternd_util import Posternd, postern_bin, strip_received
from postern_client_util import (
    EX_CONFIG, EX_DATAERR, EX_NOPERM, EX_OK, EX_UNAVAILABLE, EX_USAGE,
    PASSWORD, USER, FakeSMTP, LogMark, clean_env, describe, run_postern,
    secret_forms, settled)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    d = tmp_path_factory.mktemp("posternd")
    p = settled(Posternd(d, extra_global="log_level = debug\n"
                         "auth_throttle = no\nsender_check = off\n").start())
    yield p
    assert p.stop() == 0, p.log()


@pytest.fixture(scope="module")
def link(tmp_path_factory):
    d = tmp_path_factory.mktemp("bin")
    os.symlink(postern_bin(), d / "sendmail")
    return d / "sendmail"


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return h


def write_config(path, srv, extra="", password_file=True, mode=0o600):
    text = ("# postern client configuration\n"
            "server = smtp://127.0.0.1:%d\n"
            "user = %s\n"
            "cafile = %s\n" % (srv.ports["starttls"], USER, srv.cert))
    if password_file:
        pw = os.path.join(os.path.dirname(path), "password")
        with open(pw, "w") as f:
            f.write(PASSWORD + "\n")
        text += "password-file = %s\n" % pw
    text += extra
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return path


@pytest.fixture
def conf(tmp_path, srv):
    return write_config(str(tmp_path / "client.conf"), srv)


def sendmail(link, conf, home, args, input):
    env = clean_env(home)
    if conf is not None:
        env["POSTERN_CONFIG"] = str(conf)
    return run_postern(args, input=input, env=env, argv0=link)


def added_then(msg, sender=None):
    """msg's header must start with the Date and Message-ID sendmail added
    (after a From: <sender> when given); return the rest."""
    lines = msg.split(b"\r\n")
    if sender is not None:
        assert lines[0] == b"From: <%s>" % sender.encode(), lines[0]
        lines = lines[1:]
    assert re.match(rb"Date: \w\w\w, \d\d \w\w\w \d{4} \d\d:\d\d:\d\d "
                    rb"[+-]\d{4}$", lines[0]), lines[0]
    assert re.match(rb"Message-ID: <[^<>@\s]+@example\.test>$",
                    lines[1]), lines[1]
    return b"\r\n".join(lines[2:])


def mail_from_lines(mark):
    mark.sessions_done()
    return [l for e in mark.events("client")
            for l in [e.get("line", "")] if l.startswith("MAIL FROM:")]


MSG_T = (b"From: Tim <tim@example.test>\n"
         b"To: Alice <t-alice@example.test>, t-bob@example.test\n"
         b"Cc: \"Doe, Carol\" <t-carol@example.test>\n"
         b"Bcc: t-dave@example.test,\n"
         b" Eve (hidden) <t-eve@example.test>\n"
         b"Subject: minus t\n"
         b"X-After-Bcc: kept\n"
         b"\n"
         b"Bcc: this is the body, not a header\n"
         b"done\n")

MSG_T_DELIVERED = (b"From: Tim <tim@example.test>\r\n"
                   b"To: Alice <t-alice@example.test>, t-bob@example.test\r\n"
                   b"Cc: \"Doe, Carol\" <t-carol@example.test>\r\n"
                   b"Subject: minus t\r\n"
                   b"X-After-Bcc: kept\r\n"
                   b"\r\n"
                   b"Bcc: this is the body, not a header\r\n"
                   b"done\r\n")


def test_t_recipients_and_bcc_removed(srv, link, conf, home):
    p = sendmail(link, conf, home, ["-t", "-i"], MSG_T)
    assert p.returncode == EX_OK, describe(p)
    for who in ("alice", "bob", "carol", "dave", "eve"):
        msgs = srv.messages("t-%s@example.test" % who)
        assert len(msgs) == 1, who
        assert added_then(strip_received(msgs[0])) == MSG_T_DELIVERED
    m = email.message_from_bytes(srv.messages("t-bob@example.test")[0],
                                 policy=email.policy.default)
    assert m["bcc"] is None
    assert [a.display_name for a in m["cc"].addresses] == ["Doe, Carol"]


def test_t_and_argument_recipients(srv, link, conf, home):
    """As Postfix does: -t adds the header recipients to the arguments."""
    msg = b"To: ta-one@example.test\nSubject: both\n\nx\n"
    p = sendmail(link, conf, home, ["-t", "ta-two@example.test"], msg)
    assert p.returncode == EX_OK, describe(p)
    assert len(srv.messages("ta-one@example.test")) == 1
    assert len(srv.messages("ta-two@example.test")) == 1


def test_t_folded_group(srv, link, conf, home):
    """A group whose addresses are folded onto lines of their own (RFC
    5322 §3.4, §2.2.3): the folds are white space, not part of an address
    (fuzz_mime found "\\r\\n a@..." and "b@... " taken as addresses)."""
    msg = (b"To: friends:\n tg-one@example.test,\n\ttg-two@example.test ;\n"
           b"Subject: group\n\nx\n")
    p = sendmail(link, conf, home, ["-t", "-i"], msg)
    assert p.returncode == EX_OK, describe(p)
    assert len(srv.messages("tg-one@example.test")) == 1
    assert len(srv.messages("tg-two@example.test")) == 1


def test_argument_recipients_only(srv, link, conf, home):
    msg = (b"To: not-this-one@example.test\nBcc: nor-this@example.test\n"
           b"Subject: args\n\nbody\n")
    p = sendmail(link, conf, home, ["-oi", "arg-one@example.test",
                                    "arg-two@example.test"], msg)
    assert p.returncode == EX_OK, describe(p)
    for a in ("arg-one@example.test", "arg-two@example.test"):
        got = added_then(strip_received(srv.messages(a)[0]), USER)
        # Without -t the header is left alone, Bcc and all.
        assert got == msg.replace(b"\n", b"\r\n")
    assert srv.messages("not-this-one@example.test") == []
    assert srv.messages("nor-this@example.test") == []


@pytest.mark.parametrize("form", [["-f", "bounce@example.test"],
                                  ["-fbounce@example.test"],
                                  ["-r", "bounce@example.test"]])
def test_f_sets_envelope_sender(srv, link, conf, home, form):
    mark = LogMark(srv)
    p = sendmail(link, conf, home, form + ["-i", "f-rcpt@example.test"],
                 b"Subject: f\n\nx\n")
    assert p.returncode == EX_OK, describe(p)
    lines = mail_from_lines(mark)
    assert len(lines) == 1 and lines[0].startswith(
        "MAIL FROM:<bounce@example.test> "), lines
    m = email.message_from_bytes(srv.messages("f-rcpt@example.test")[-1],
                                 policy=email.policy.default)
    # The added From is the envelope sender.
    assert m["from"].addresses[0].addr_spec == "bounce@example.test"


def test_default_sender_is_the_user(srv, link, conf, home):
    mark = LogMark(srv)
    p = sendmail(link, conf, home, ["-i", "def-rcpt@example.test"],
                 b"Subject: d\n\nx\n")
    assert p.returncode == EX_OK, describe(p)
    assert mail_from_lines(mark)[0].startswith("MAIL FROM:<%s>" % USER)


def test_config_from(srv, link, tmp_path, home):
    c = write_config(str(tmp_path / "c.conf"), srv,
                     extra="from = robot@example.test\n")
    mark = LogMark(srv)
    p = sendmail(link, c, home, ["-i", "cf-rcpt@example.test"],
                 b"Subject: d\n\nx\n")
    assert p.returncode == EX_OK, describe(p)
    assert mail_from_lines(mark)[0].startswith(
        "MAIL FROM:<robot@example.test>")


@pytest.mark.parametrize("name", ["Tim Example", "Doe, John (Ops)",
                                  "Jörg Ünicode-Straße", 'Say "hi"'])
def test_F_full_name(srv, link, conf, home, name):
    rcpt = "fn-%d@example.test" % abs(hash(name))
    p = sendmail(link, conf, home, ["-i", "-F", name, "-f",
                                    "tim@example.test", rcpt],
                 b"Subject: F\n\nx\n")
    assert p.returncode == EX_OK, describe(p)
    raw = srv.messages(rcpt)[0]
    head = raw.split(b"\r\n\r\n")[0]
    assert head == head.decode("ascii").encode()  # RFC 2047 when needed
    m = email.message_from_bytes(raw, policy=email.policy.default)
    addrs = m["from"].addresses
    assert len(addrs) == 1, m["from"]
    assert addrs[0].display_name == name
    assert addrs[0].addr_spec == "tim@example.test"


def test_F_long_name(srv, link, conf, home):
    """RFC 5322 §2.1.1: a name too long for a line of 998 octets goes as
    encoded-words, which fold (fuzz/corpus/mime/crash-long-display-name).
    Decoded with email.header, which drops the white space between two
    encoded-words as RFC 2047 §6.2 says (the address parser of
    email.policy.default keeps it)."""
    name = "x" * 1000
    rcpt = "fn-long@example.test"
    p = sendmail(link, conf, home, ["-i", "-F", name, "-f",
                                    "tim@example.test", rcpt],
                 b"Subject: F\n\nx\n")
    assert p.returncode == EX_OK, describe(p)
    raw = srv.messages(rcpt)[0]
    assert max(len(l) for l in raw.split(b"\r\n")) <= 998
    field = email.message_from_bytes(raw)["from"]
    got = str(email.header.make_header(email.header.decode_header(field)))
    assert got == name + " <tim@example.test>"


def test_F_without_f_and_no_user(link, tmp_path, home):
    """No -f and no user address in the configuration: the sender is
    $USER@host, and -F's name goes only into the From field."""
    with FakeSMTP(ehlo=["PIPELINING"]) as f:
        c = tmp_path / "noauth.conf"
        c.write_text("server = %s\nstarttls = never\n" % f.url)
        env = clean_env(home, POSTERN_CONFIG=c, USER="cronjob")
        p = run_postern(["-i", "-F", "Cron Daemon", "root@example.test"],
                        input=b"Subject: cron\n\nx\n", env=env, argv0=link)
    assert p.returncode == EX_OK, describe(p)
    mail = [c for c in f.commands if c.startswith(b"MAIL")][0]
    assert re.match(rb"MAIL FROM:<cronjob@[^<>\s]+>( |$)", mail), mail
    sender = mail.split(b"<")[1].split(b">")[0].decode()
    m = email.message_from_bytes(f.messages[0], policy=email.policy.default)
    assert m["from"].addresses[0].display_name == "Cron Daemon"
    assert m["from"].addresses[0].addr_spec == sender


def test_F_attached_and_existing_from_kept(srv, link, conf, home):
    msg = b"From: Someone <tim@example.test>\nSubject: keep\n\nx\n"
    p = sendmail(link, conf, home, ["-i", "-FOther Name",
                                    "keep-from@example.test"], msg)
    assert p.returncode == EX_OK, describe(p)
    got = added_then(strip_received(srv.messages("keep-from@example.test")[0]))
    assert got == msg.replace(b"\n", b"\r\n")


DOT_MSG = (b"Subject: dots\n"
           b"\n"
           b"before\n"
           b"..two dots stay\n"
           b".\n"
           b"after the dot\n")


def test_lone_dot_ends_input(srv, link, conf, home):
    p = sendmail(link, conf, home, ["dot-end@example.test"], DOT_MSG)
    assert p.returncode == EX_OK, describe(p)
    got = added_then(strip_received(srv.messages("dot-end@example.test")[0]),
                     USER)
    assert got.endswith(b"\r\n\r\nbefore\r\n..two dots stay\r\n"), got


def test_lone_dot_crlf_ends_input(srv, link, conf, home):
    p = sendmail(link, conf, home, ["dot-crlf@example.test"],
                 DOT_MSG.replace(b"\n", b"\r\n"))
    assert p.returncode == EX_OK, describe(p)
    got = strip_received(srv.messages("dot-crlf@example.test")[0])
    assert got.endswith(b"\r\n\r\nbefore\r\n..two dots stay\r\n"), got


@pytest.mark.parametrize("flag", ["-i", "-oi"])
def test_i_keeps_dot_lines(srv, link, conf, home, flag):
    rcpt = "dot-keep%s@example.test" % flag
    p = sendmail(link, conf, home, [flag, rcpt], DOT_MSG)
    assert p.returncode == EX_OK, describe(p)
    got = added_then(strip_received(srv.messages(rcpt)[0]), USER)
    assert got == DOT_MSG.replace(b"\n", b"\r\n")


def test_ignored_options(srv, link, conf, home):
    p = sendmail(link, conf, home, ["-oem", "-odi", "-B", "8BITMIME", "-N",
                                    "never", "-bm", "-i", "--",
                                    "ign@example.test"], b"Subject: o\n\nx\n")
    assert p.returncode == EX_OK, describe(p)
    assert len(srv.messages("ign@example.test")) == 1


def test_home_config(srv, link, home):
    d = home / ".config" / "postern"
    d.mkdir(parents=True)
    write_config(str(d / "config"), srv)
    p = sendmail(link, None, home, ["-i", "home-conf@example.test"],
                 b"Subject: h\n\nx\n")
    assert p.returncode == EX_OK, describe(p)
    assert len(srv.messages("home-conf@example.test")) == 1


def test_password_in_config(srv, link, tmp_path, home):
    c = write_config(str(tmp_path / "pw.conf"), srv, password_file=False,
                     extra="password = %s\n" % PASSWORD)
    p = sendmail(link, c, home, ["-i", "pw-conf@example.test"],
                 b"Subject: p\n\nx\n")
    assert p.returncode == EX_OK, describe(p)
    assert len(srv.messages("pw-conf@example.test")) == 1


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_password_in_readable_config_refused(srv, link, tmp_path, home,
                                             mode):
    c = write_config(str(tmp_path / "open.conf"), srv, password_file=False,
                     extra="password = %s\n" % PASSWORD, mode=mode)
    mark = LogMark(srv)
    p = sendmail(link, c, home, ["-i", "open-conf@example.test"],
                 b"Subject: p\n\nx\n")
    assert p.returncode == EX_CONFIG, describe(p)
    err = p.stderr.decode()
    assert "chmod 600 %s" % c in err, err
    assert PASSWORD not in err
    assert not mark.events("connect")
    assert srv.messages("open-conf@example.test") == []


def test_readable_config_without_password_is_fine(srv, link, tmp_path, home):
    c = write_config(str(tmp_path / "ro.conf"), srv, mode=0o644)
    p = sendmail(link, c, home, ["-i", "ro-conf@example.test"],
                 b"Subject: p\n\nx\n")
    assert p.returncode == EX_OK, describe(p)


def test_config_errors(srv, link, tmp_path, home):
    c = write_config(str(tmp_path / "bad.conf"), srv, extra="colour = red\n")
    p = sendmail(link, c, home, ["-i", "x@example.test"], b"x\n")
    assert p.returncode == EX_CONFIG, describe(p)
    assert re.search(r"bad\.conf:\d+: unknown key 'colour'",
                     p.stderr.decode()), describe(p)
    p = sendmail(link, tmp_path / "missing.conf", home,
                 ["-i", "x@example.test"], b"x\n")
    assert p.returncode == EX_CONFIG, describe(p)
    assert "missing.conf" in p.stderr.decode()


def test_wrong_password(srv, link, tmp_path, home):
    c = write_config(str(tmp_path / "wrong.conf"), srv, password_file=False,
                     extra="password = not-it\n")
    p = sendmail(link, c, home, ["-i", "wrong-pw@example.test"],
                 b"Subject: p\n\nx\n")
    assert p.returncode == EX_NOPERM, describe(p)
    assert p.stderr.decode().startswith(
        "sendmail: authentication failed: 535 5.7.8"), describe(p)
    assert srv.messages("wrong-pw@example.test") == []


def test_verbose_redacted(srv, link, conf, home):
    p = sendmail(link, conf, home, ["-v", "-i", "verbose@example.test"],
                 b"Subject: v\n\nx\n")
    assert p.returncode == EX_OK, describe(p)
    assert b"C: AUTH SCRAM-SHA-256 <redacted>" in p.stderr
    for s in secret_forms():
        assert s not in p.stderr


@pytest.mark.parametrize("args,input", [
    (["-i"], b"Subject: nobody\n\nx\n"),
    (["-t", "-i"], b"Subject: nobody\n\nx\n"),
    (["-q"], b""),
    (["-bs"], b""),
    (["-bp"], b""),
], ids=["no-rcpt", "t-no-rcpt", "unknown", "bs", "bp"])
def test_usage(srv, link, conf, home, args, input):
    p = sendmail(link, conf, home, args, input)
    assert p.returncode == EX_USAGE, describe(p)
    assert p.stderr.startswith(b"sendmail: "), describe(p)


def test_bad_addresses(srv, link, conf, home):
    mark = LogMark(srv)
    p = sendmail(link, conf, home, ["-i", "Alice <a@example.test>"],
                 b"Subject: x\n\nx\n")
    assert p.returncode == EX_USAGE, describe(p)
    assert "is not an address" in p.stderr.decode()
    p = sendmail(link, conf, home, ["-t", "-i"],
                 b"To: broken address@example.test\nSubject: x\n\nx\n")
    assert p.returncode == EX_DATAERR, describe(p)
    assert "recipient in the header" in p.stderr.decode()
    assert not mark.events("connect")


def test_send_config_precedence(srv, tmp_path, home):
    """postern send without --server reads the configuration; what the
    command line gives wins over it, the password file included."""
    c = write_config(str(tmp_path / "prec.conf"), srv, password_file=False,
                     extra="password = wrong\n")
    good = tmp_path / "good"
    good.write_text(PASSWORD + "\n")
    env = clean_env(home, POSTERN_CONFIG=c)
    p = run_postern(["send", "--password-file", good, "--from", USER,
                     "--to", "prec@example.test"],
                    input=b"Subject: p\n\nx\n", env=env)
    assert p.returncode == EX_OK, describe(p)
    assert len(srv.messages("prec@example.test")) == 1
    p = run_postern(["send", "--from", USER, "--to", "prec@example.test"],
                    input=b"Subject: p\n\nx\n", env=env)
    assert p.returncode == EX_NOPERM, describe(p)


# --- no TLS, nothing sent -------------------------------------------------------

CRAM_CHALLENGE = "PDE4OTYuNjk3MTcwOTUyQHBvc3RvZmZpY2UucmVzdG9uLm1jaS5uZXQ+"


@pytest.mark.parametrize("server", ["omitted", "refused"])
@pytest.mark.parametrize("starttls,user", [
    (None, False), (None, True), ("required", True), ("auto", True)],
    ids=["default", "default-user", "required-user", "auto-user"])
def test_config_no_tls_nothing_sent(link, tmp_path, home, server, starttls,
                                    user):
    """The configuration's starttls is required by default; auto goes on
    in clear only without a user.  A server without STARTTLS, and one
    that refuses it (454, as a downgrading attacker would), get no AUTH
    and no MAIL."""
    ehlo = ["PIPELINING", "AUTH CRAM-MD5 PLAIN"]
    replies = {}
    if server == "refused":
        ehlo.insert(1, "STARTTLS")
        replies["STARTTLS"] = "454 4.7.0 TLS not available"
    with FakeSMTP(ehlo=ehlo, replies=replies,
                  auth=["334 " + CRAM_CHALLENGE, "235 2.7.0 ok"]) as f:
        c = tmp_path / "c.conf"
        text = "server = %s\n" % f.url
        if starttls:
            text += "starttls = %s\n" % starttls
        if user:
            text += "user = tim\npassword = %s\n" % PASSWORD
        c.write_text(text)
        c.chmod(0o600)
        p = run_postern(["-i", "nt@example.test"], input=b"Subject: x\n\nx\n",
                        env=clean_env(home, POSTERN_CONFIG=c), argv0=link)
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    why = ("the server does not offer STARTTLS" if server == "omitted"
           else "the server refused STARTTLS: 454 4.7.0 TLS not available")
    if starttls == "auto":
        want = ("sendmail: %s; not authenticating without TLS (starttls = "
                "auto goes on in clear only without a user)\n" % why)
    else:
        want = ("sendmail: %s; not %s without TLS (starttls = required%s; "
                "starttls = never to send in clear)\n" % (
                    why, "authenticating or sending" if user else "sending",
                    ", the default" if starttls is None else ""))
    assert p.stderr.decode() == want, describe(p)
    assert not [l for l in f.commands if l.upper().startswith(
        (b"AUTH", b"MAIL", b"RCPT", b"DATA"))], f.commands
    assert f.messages == [] and f.commands[-1] == b"QUIT"
    for s in secret_forms() + secret_forms(user="tim"):
        assert s not in f.all_received()


def test_config_auto_without_user_goes_on(link, tmp_path, home):
    with FakeSMTP(ehlo=["PIPELINING", "STARTTLS"],
                  replies={"STARTTLS": "454 4.7.0 TLS not available"}) as f:
        c = tmp_path / "c.conf"
        c.write_text("server = %s\nstarttls = auto\nfrom = a@example.test\n"
                     % f.url)
        p = run_postern(["-i", "nt@example.test"], input=b"Subject: x\n\nx\n",
                        env=clean_env(home, POSTERN_CONFIG=c), argv0=link)
    assert p.returncode == EX_OK, describe(p)
    assert b"MAIL FROM:<a@example.test>" in f.commands
    assert len(f.messages) == 1


def test_debian_cron_command_line_accepted():
    """Debian's cron runs `sendmail -FCronDaemon -i -B8BITMIME -oem USER`:
    every option must be understood or ignored, not refused."""
    import subprocess as sp
    from posternd_util import postern_bin
    import os
    import tempfile
    d = tempfile.mkdtemp()
    link = os.path.join(d, "sendmail")
    os.symlink(postern_bin(), link)
    # No server configured: the options parse, then the missing server
    # is reported as a usage/config problem, not an unknown option.
    env = {"PATH": "/usr/bin:/bin", "HOME": d,
           "POSTERN_CONFIG": os.path.join(d, "none.conf")}
    open(env["POSTERN_CONFIG"], "w").close()
    p = sp.run([link, "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"],
               input=b"Subject: cron\n\nhello\n", capture_output=True,
               env=env, timeout=30)
    assert b"unknown option" not in p.stderr, p.stderr
    assert b"no server" in p.stderr, p.stderr


# --- recipients from the header: quoted local parts, 8-bit --------------------

def fake_config(tmp_path, f):
    c = tmp_path / "fake.conf"
    c.write_text("server = %s\nstarttls = never\nfrom = tim@example.test\n"
                 % f.url)
    return c


def test_t_quoted_local_parts(link, tmp_path, home):
    """-t keeps a quoted local part whole (it was read as "@example.test"),
    in a bare addr-spec and in an angle-addr, a comma or "@" inside it
    included; a quoted display name and a comment are no address."""
    msg = (b'To: "john.doe"@example.test, "Doe, John" <"j@d"@example.test>\n'
           b'Cc: (Ann) ann@example.test, group: "x,y"@example.test;\n'
           b"Subject: quoted\n\nx\n")
    with FakeSMTP(ehlo=["PIPELINING"]) as f:
        p = run_postern(["-t", "-i"], input=msg, argv0=link,
                        env=clean_env(home,
                                      POSTERN_CONFIG=fake_config(tmp_path, f)))
    assert p.returncode == EX_OK, describe(p)
    assert [c for c in f.commands if c.startswith(b"RCPT")] == [
        b'RCPT TO:<"john.doe"@example.test>',
        b'RCPT TO:<"j@d"@example.test>',
        b"RCPT TO:<ann@example.test>",
        b'RCPT TO:<"x,y"@example.test>']
    assert added_then(f.messages[0], "tim@example.test") == \
        msg.replace(b"\n", b"\r\n")


def test_t_quoted_local_part_posternd(srv, link, conf, home):
    """The same through posternd: delivered to the quoted address, the
    message byte for byte."""
    msg = b'To: "qt.one"@example.test\nSubject: q\n\nx\n'
    p = sendmail(link, conf, home, ["-t", "-i"], msg)
    assert p.returncode == EX_OK, describe(p)
    [got] = srv.messages('"qt.one"@example.test')
    assert added_then(strip_received(got), USER) == \
        msg.replace(b"\n", b"\r\n")
    assert srv.messages("qt.one@example.test") == []


def test_t_quoted_space_and_utf8_recipients(link, tmp_path, home):
    """A quoted local part with a space (RFC 5321 §4.1.2) and a UTF-8
    address (RFC 6531: SMTPUTF8 on MAIL) go as they are."""
    msg = ('To: "john doe"@example.test, Jörg <jörg@example.test>\n'
           "Subject: u\n\nx\n").encode()
    with FakeSMTP(ehlo=["PIPELINING", "SMTPUTF8", "8BITMIME"]) as f:
        p = run_postern(["-t", "-i"], input=msg, argv0=link,
                        env=clean_env(home,
                                      POSTERN_CONFIG=fake_config(tmp_path, f)))
    assert p.returncode == EX_OK, describe(p)
    assert [c for c in f.commands if c.startswith((b"MAIL", b"RCPT"))] == [
        b"MAIL FROM:<tim@example.test> BODY=8BITMIME SMTPUTF8",
        b'RCPT TO:<"john doe"@example.test>',
        "RCPT TO:<jörg@example.test>".encode()]
    assert added_then(f.messages[0], "tim@example.test") == \
        msg.replace(b"\n", b"\r\n")


@pytest.mark.parametrize("field,addr,why", [
    (b'"Doe, John" john@example.test', '"Doe, John" john@example.test',
     "is not an address"),
    (b'"unclosed@example.test', '"unclosed@example.test',
     "is not an address"),
])
def test_t_unsendable_recipient_refused(link, tmp_path, home, field, addr,
                                        why):
    """Not mangled, not dropped: refused (65), nothing sent."""
    with FakeSMTP(ehlo=["PIPELINING", "SMTPUTF8"]) as f:
        p = run_postern(["-t", "-i"], input=b"To: " + field + b"\n\nx\n",
                        argv0=link,
                        env=clean_env(home,
                                      POSTERN_CONFIG=fake_config(tmp_path, f)))
    assert p.returncode == EX_DATAERR, describe(p)
    err = p.stderr.decode()
    assert err.startswith("sendmail: recipient in the header '%s'" % addr), err
    assert why in err, err
    assert f.commands == []


@pytest.mark.parametrize("how", ["argument", "header"])
def test_8bit_recipient_without_smtputf8(link, tmp_path, home, how):
    """A UTF-8 address to a server without SMTPUTF8 (RFC 6531 §3.4: no
    downgrade): 65, no MAIL sent."""
    args, msg = (["-i", "jörg@example.test"], b"x\n") if how == "argument" \
        else (["-t", "-i"], "To: jörg@example.test\n\nx\n".encode())
    with FakeSMTP() as f:
        p = run_postern(args, input=msg, argv0=link,
                        env=clean_env(home,
                                      POSTERN_CONFIG=fake_config(tmp_path, f)))
    assert p.returncode == EX_DATAERR, describe(p)
    assert p.stderr.decode() == (
        "sendmail: the server does not offer SMTPUTF8 (RFC 6531), which the "
        "internationalized address 'jörg@example.test' needs; nothing was "
        "sent\n"), describe(p)
    assert [c.split(b" ")[0] for c in f.commands] == [b"EHLO", b"QUIT"]


@pytest.mark.parametrize("conf_extra,args,field", [
    ("from = Robot Example <robot@example.test>\n", [],
     b"From: Robot Example <robot@example.test>"),
    ("from = Robot Example <robot@example.test>\n", ["-F", "Other"],
     b"From: Other <robot@example.test>"),
    ("from = robot@example.test\nfrom-name = J\u00f6rg M\u00fcller\n", [],
     b"From: =?UTF-8?B?SsO2cmcgTcO8bGxlcg==?= <robot@example.test>"),
    ("from = Robot <robot@example.test>\n", ["-f", "bounce@example.test"],
     b"From: <bounce@example.test>"),
], ids=["from-name-addr", "F-wins", "from-name-key", "f-wins"])
def test_config_from_display_name(link, tmp_path, home, conf_extra, args,
                                  field):
    """The configuration's from may be "Name <addr>" (and from-name gives
    a name apart): the envelope gets the address, the added From field
    the name; -F and -f win over them."""
    with FakeSMTP(ehlo=["PIPELINING"]) as f:
        c = tmp_path / "n.conf"
        c.write_text("server = %s\nstarttls = never\n" % f.url + conf_extra)
        p = run_postern(args + ["-i", "n@example.test"],
                        input=b"Subject: n\n\nx\n", argv0=link,
                        env=clean_env(home, POSTERN_CONFIG=c))
    assert p.returncode == EX_OK, describe(p)
    addr = field.split(b"<")[1].rstrip(b">")
    assert b"MAIL FROM:<%s>" % addr in f.commands, f.commands
    lines = f.messages[0].split(b"\r\n")
    assert lines[0] == field, lines
    assert lines[1].startswith(b"Date: ") and \
        lines[2].startswith(b"Message-ID: <")
    assert b"\r\n".join(lines[3:]) == b"Subject: n\r\n\r\nx\r\n"
