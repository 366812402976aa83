"""posternd under valgrind memcheck through a long scripted session
(issue 6, "Sanitizers and memory"): every AUTH mechanism (PLAIN, LOGIN
and CRAM-MD5 from smtplib; SCRAM-SHA-1, SCRAM-SHA-256 and DIGEST-MD5
from msmtp and `postern send`), STARTTLS and implicit TLS, messages, a
failed delivery, protocol errors, cut-off clients, reloads, then SIGTERM.
No invalid access, no definite leak: valgrind's exit code is 0 (it is
99 on any error) and its log is checked line by line.

No suppression: posternd calls uv_library_shutdown() at exit, which
joins the thread-pool threads, so OpenSSL's per-thread state (ERR_STATE)
of those threads is freed by their exit handlers like that of the
worker threads, which posternd joins itself.
"""
import os
import re
import shutil
import signal
import smtplib
import subprocess
import time

import pytest

from posternd_util import (Posternd, SMTPRaw, b64, postern_bin, posternd_bin,
                           start_wrapped, strip_received, unique_rcpt)

USER = "tim@example.test"
PASSWORD = "tanstaaftanstaaf"
T = 60                     # seconds: every client operation (valgrind is slow)
POOL = 4                   # UV_THREADPOOL_SIZE given to posternd


def need(prog):
    if shutil.which(prog) is None:
        pytest.fail(f"{prog} is not installed: tools/deps.sh test")


def smtp(p, listener, **kw):
    if listener == "implicit":
        return smtplib.SMTP_SSL("127.0.0.1", p.ports[listener],
                                local_hostname="client.example.test",
                                context=p.ssl_context(), timeout=T)
    s = smtplib.SMTP("127.0.0.1", p.ports[listener],
                     local_hostname="client.example.test", timeout=T)
    if listener in ("starttls", "legacy"):
        s.starttls(context=p.ssl_context())
    return s


def login(s, mech, user=USER, password=PASSWORD):
    s.ehlo()
    s.user, s.password = user, password
    method = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login,
              "CRAM-MD5": s.auth_cram_md5}[mech]
    return s.auth(mech, method, initial_response_ok=True)


def message(rcpt, tag, size=2000):
    line = f"{tag} " + "x" * 70 + "\r\n"
    # Date and Message-ID given: no client adds a header.
    return (f"From: <{USER}>\r\nTo: <{rcpt}>\r\nSubject: {tag}\r\n"
            f"Date: Mon, 02 Feb 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{tag}@example.test>\r\n\r\n").encode() + \
        (line * (size // len(line) + 1)).encode() + b".dot\r\n"


def raw_greeted(p, listener="plain"):
    r = p.raw(listener, timeout=T)
    assert r.reply()[0] == 220
    assert r.ehlo()[0] == 250
    return r


def script(p, tmp_path, sent):
    """The session: returns nothing, records delivered messages in sent
    (rcpt -> [message])."""
    rcpt = unique_rcpt("vg")
    bad = unique_rcpt("vg-blocked")

    def deliver(s, tag, size=2000, to=rcpt):
        msg = message(to, tag, size)
        assert s.sendmail(USER, [to], msg) == {}
        sent.setdefault(to, []).append(msg)

    # smtplib: PLAIN, LOGIN, CRAM-MD5 on every listener that allows them.
    for listener, mechs in (("plain", ("PLAIN", "LOGIN", "CRAM-MD5")),
                            ("starttls", ("PLAIN", "LOGIN", "CRAM-MD5")),
                            ("implicit", ("PLAIN", "CRAM-MD5")),
                            ("legacy", ("CRAM-MD5",))):
        for mech in mechs:
            with smtp(p, listener) as s:
                assert login(s, mech)[0] == 235
                deliver(s, f"vg-{listener}-{mech}")
    # Wrong password, unknown user, each mechanism.
    for mech in ("PLAIN", "LOGIN", "CRAM-MD5"):
        for user, pw in ((USER, "wrong-password"), ("nobody@example.test",
                                                    "wrong-password")):
            with smtp(p, "plain") as s:
                with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                    login(s, mech, user, pw)
                assert e.value.smtp_code == 535
    # Several messages in one session, one large, one refused (451: the
    # recipient's Maildir path is a file).
    os.makedirs(os.path.dirname(p.maildir(bad)), exist_ok=True)
    with open(p.maildir(bad), "w") as f:
        f.write("not a directory\n")
    with smtp(p, "starttls") as s:
        assert login(s, "PLAIN")[0] == 235
        deliver(s, "vg-one")
        deliver(s, "vg-big", size=300000)
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail(USER, [bad], message(bad, "vg-refused"))
        assert e.value.smtp_code == 451
        deliver(s, "vg-after-451")

    # SCRAM and DIGEST-MD5 from msmtp (plain and STARTTLS) and postern.
    pwfile = tmp_path / "pw"
    pwfile.write_text(PASSWORD + "\n")
    if shutil.which("msmtp"):
        for mech, listener in (("scram-sha-256", "starttls"),
                               ("scram-sha-1", "plain"),
                               ("digest-md5", "plain"),
                               ("cram-md5", "legacy")):
            msg = message(rcpt, f"vg-msmtp-{mech}")
            argv = ["msmtp", "-C", "/dev/null", "--host=127.0.0.1",
                    f"--port={p.ports[listener]}",
                    "--domain=client.example.test", f"--auth={mech}",
                    f"--user={USER}", f"--passwordeval=cat {pwfile}",
                    f"--from={USER}", f"--timeout={T}"]
            if listener == "starttls":
                argv += ["--tls=on", f"--tls-trust-file={p.cert}",
                         "--tls-starttls=on"]
            else:
                argv += ["--tls=off"]
            q = subprocess.run(argv + ["--", rcpt], input=msg,
                               capture_output=True, timeout=T + 30)
            assert q.returncode == 0, (mech, q.stdout, q.stderr)
            sent.setdefault(rcpt, []).append(msg)
    for mech, listener in (("SCRAM-SHA-256", "implicit"),
                           ("SCRAM-SHA-1", "starttls"),
                           ("DIGEST-MD5", "implicit")):
        scheme = "smtps" if listener == "implicit" else "smtp"
        msg = message(rcpt, f"vg-postern-{mech}")
        q = subprocess.run([postern_bin(), "send", "--server",
                            f"{scheme}://127.0.0.1:{p.ports[listener]}",
                            "--timeout", str(T), "--cafile", p.cert,
                            "--user", USER, "--password-file", str(pwfile),
                            "--mech", mech, "--from", USER, "--to", rcpt],
                           input=msg, capture_output=True, timeout=T + 30,
                           start_new_session=True)
        assert q.returncode == 0, (mech, q.stdout, q.stderr)
        sent.setdefault(rcpt, []).append(msg)
    # A wrong SCRAM password.
    bad_pw = tmp_path / "badpw"
    bad_pw.write_text("not-the-password\n")
    q = subprocess.run([postern_bin(), "send", "--server",
                        f"smtps://127.0.0.1:{p.ports['implicit']}",
                        "--timeout", str(T), "--cafile", p.cert,
                        "--user", USER, "--password-file", str(bad_pw),
                        "--mech", "SCRAM-SHA-256", "--from", USER,
                        "--to", rcpt], input=message(rcpt, "vg-nope"),
                       capture_output=True, timeout=T + 30,
                       start_new_session=True)
    assert q.returncode != 0, q

    # Protocol errors on raw connections.
    r = raw_greeted(p)
    assert r.cmd("FROB")[0] == 500
    assert r.cmd("RCPT TO:<a@example.test>")[0] == 530
    assert r.cmd("AUTH PLAIN !!!notbase64")[0] == 501
    assert r.cmd("AUTH PLAIN")[0] == 334
    assert r.cmd("*")[0] == 501                     # cancelled
    assert r.cmd("AUTH CRAM-MD5")[0] == 334
    assert r.cmd(b64("tim@example.test " + "0" * 32))[0] == 535
    assert r.cmd("AUTH SCRAM-SHA-256 " + b64("n,,n=tim,r=abc"))[0] == 334
    assert r.cmd(b64("c=biws,r=forged,p=AAAA"))[0] == 501
    assert r.cmd("AUTH DIGEST-MD5")[0] == 334
    assert r.cmd(b64('username="tim",username="x",nonce="'))[0] == 501
    r.send(b"NOOP\0\r\n")
    assert r.reply()[0] == 500
    r.send(b"X" * 100000 + b"\r\n")
    assert r.reply()[0] == 500
    assert r.login() == (235, ["235 2.7.0 Authentication successful"])
    assert r.cmd(f"MAIL FROM:<{USER}>")[0] == 250
    assert r.cmd("RCPT TO:<" + "a" * 300 + "@example.test>")[0] == 501
    assert r.cmd("QUIT")[0] == 221
    r.close()
    # Cut off: mid-AUTH, mid-DATA, after STARTTLS before the handshake,
    # a TLS handshake that fails, a client talking before the greeting,
    # and an HTTP request.
    r = raw_greeted(p)
    assert r.cmd("AUTH LOGIN")[0] == 334
    r.close()
    r = raw_greeted(p)
    assert r.login()[0] == 235
    assert r.cmd(f"MAIL FROM:<{USER}>")[0] == 250
    assert r.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(b"Subject: cut\r\n\r\n" + b"partial line\r\n" * 5000)
    r.close()
    r = raw_greeted(p, "starttls")
    assert r.cmd("STARTTLS")[0] == 220
    r.close()
    r = raw_greeted(p, "starttls")
    assert r.cmd("STARTTLS")[0] == 220
    r.send(b"this is not a TLS ClientHello\r\n" * 10)
    assert r.closed(timeout=T)
    r.close()
    r = SMTPRaw(p.ports["plain"], timeout=T)
    r.send(b"EHLO early\r\n")
    r.closed(timeout=T)
    r.close()
    r = SMTPRaw(p.ports["plain"], timeout=T)
    assert r.reply()[0] == 220
    r.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert r.closed(timeout=T)
    r.close()
    # Reloads: one good, one failing (broken user file), one good again.
    n = len(p.events("reloaded"))
    p.hup()
    assert p.wait_event("reloaded", count=n + 1, timeout=T)
    good = open(p.userfile).read()
    with open(p.userfile, "a") as f:
        f.write("broken line\n")
    p.hup()
    assert p.wait_event("reload_failed", timeout=T)
    with open(p.userfile, "w") as f:
        f.write(good)
    p.hup()
    assert p.wait_event("reloaded", count=n + 2, timeout=T)
    # After the reloads, one more login of each smtplib kind.
    with smtp(p, "starttls") as s:
        assert login(s, "CRAM-MD5")[0] == 235
        deliver(s, "vg-after-reload")


def test_valgrind_long_session(tmp_path):
    need("valgrind")
    if not os.access(posternd_bin(), os.X_OK):
        pytest.fail(f"{posternd_bin()} is not built")
    vglog = tmp_path / "valgrind.log"
    p = Posternd(tmp_path, extra_global="grace_period = 10\n")
    prefix = ["env", f"UV_THREADPOOL_SIZE={POOL}",
              "valgrind", "--error-exitcode=99", "--leak-check=full",
              "--errors-for-leak-kinds=definite", "--track-fds=no",
              "--show-leak-kinds=definite",
              f"--log-file={vglog}"]
    t0 = time.monotonic()
    start_wrapped(p, prefix=prefix, timeout=120)
    sent = {}
    try:
        script(p, tmp_path, sent)
        p.proc.send_signal(signal.SIGTERM)
        rc = p.wait_exit(timeout=120)
    finally:
        p.kill()
    elapsed = time.monotonic() - t0
    log = vglog.read_text(errors="replace")
    print(f"\nvalgrind session: {elapsed:.0f} s, "
          f"{len(p.events('auth_ok'))} logins, "
          f"{len(p.events('auth_failed'))} failed logins, "
          f"{len(p.events('message_accepted'))} messages, "
          f"{len(p.events('connect'))} connections\n"
          + "\n".join(l for l in log.splitlines()
                      if re.search(r"ERROR SUMMARY|definitely lost|"
                                   r"suppressed:|total heap usage", l)))
    assert rc == 0, f"posternd under valgrind exit {rc}\n{log[-6000:]}"
    for bad in ("Invalid read", "Invalid write", "Invalid free",
                "uninitialised", "Mismatched free", "overlap"):
        assert bad not in log, f"{bad!r} in the valgrind log:\n{log[-6000:]}"
    m = re.search(r"ERROR SUMMARY: (\d+) errors", log)
    assert m and m.group(1) == "0", log[-6000:]
    m = re.search(r"definitely lost: ([\d,]+) bytes", log)
    assert m is None or m.group(1) == "0", log[-6000:]
    # Nothing suppressed (no suppression file is given, but a default
    # one of valgrind's could hide something).
    m = re.search(r"suppressed: ([\d,]+) bytes", log)
    assert m is None or m.group(1) == "0", log[-3000:]
    # And the mail arrived whole.
    for rcpt, msgs in sent.items():
        got = sorted(strip_received(m) for m in p.messages(rcpt))
        assert got == sorted(msgs), rcpt
