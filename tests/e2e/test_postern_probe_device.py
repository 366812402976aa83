"""`postern probe --as-device` against one posternd: on a listener with
a [profile NAME] for the probe's address (127.0.0.1) and on one without,
the exact report, step by step: TLS 1.0, AUTH LOGIN before TLS, HELO then
AUTH, the AUTH= line, a bare-LF message, a 1500-octet line, and which
profile key fixes each failing step."""
import os
import re

import pytest

from posternd_util import Posternd, posternd_bin, strip_received, unique_rcpt
from postern_client_util import (EX_OK, EX_PROTOCOL, EX_UNAVAILABLE,
                                 EX_USAGE, PASSWORD, USER, run_postern)

LISTENERS = {
    # Challenge mechanisms before TLS: a device's AUTH LOGIN needs TLS.
    "lan": "tls = starttls\nauth = required\n"
           "auth_before_tls = challenge\n",
    "strict": "tls = starttls\nauth = required\n"
              "auth_before_tls = challenge\n",
    "smtps": "tls = implicit\nauth = required\n",
    "half": "tls = starttls\nauth = required\nauth_before_tls = none\n",
}

PROFILES = (
    "[profile probe]\n"
    "networks = 127.0.0.1\n"
    "listeners = lan smtps\n"
    "tls_min_version = TLSv1\n"
    "auth_before_tls = all\n"
    "helo_auth = yes\n"
    "bare_lf = normalize\n"
    "long_lines = fold\n"
    "legacy_auth_line = yes\n"
    "[profile half]\n"
    "networks = 127.0.0.1\n"
    "listeners = half\n"
    "helo_auth = yes\n"
    "long_lines = fold\n"
)

TLS10_OK = "  TLS 1.0 handshake      ok: TLSv1, ECDHE-ECDSA-AES256-SHA"
TLS10_FAIL = ("  TLS 1.0 handshake      fails: the handshake was refused "
              "(tlsv1 alert protocol version (SSL alert number 70)) -> "
              "tls_min_version = TLSv1")
ABSENT = ("  AUTH= line after EHLO  absent -> legacy_auth_line = yes (only "
          "for clients that look for it)")
DELIVERED = "ok (a test message was delivered)"


class ProbePosternd(Posternd):
    def write_config(self):
        super().write_config()
        with open(self.conf, "a") as f:
            f.write(PROFILES)


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    if not os.access(posternd_bin(), os.X_OK):
        pytest.skip("posternd not built")
    p = ProbePosternd(tmp_path_factory.mktemp("probe_device"),
                      listeners=dict(LISTENERS)).start()
    yield p
    assert p.stop() == 0, p.log()


@pytest.fixture(scope="module")
def pwfile(tmp_path_factory):
    f = tmp_path_factory.mktemp("pw") / "password"
    f.write_text(PASSWORD + "\n")
    return f


def probe(srv, listener, *args):
    scheme = "smtps" if listener == "smtps" else "smtp"
    url = f"{scheme}://127.0.0.1:{srv.ports[listener]}"
    p = run_postern(["probe", "--as-device", url, "--timeout", "20",
                     *map(str, args)])
    return p, url, p.stdout.decode().splitlines()


def test_with_the_profile(srv, pwfile):
    rcpt = unique_rcpt("device")
    p, url, lines = probe(srv, "lan", "--user", USER, "--password-file",
                          pwfile, "--to", rcpt)
    assert lines == [
        f"postern probe --as-device {url}",
        TLS10_OK,
        "  AUTH LOGIN before TLS  ok",
        "  HELO, then AUTH LOGIN  ok",
        "  AUTH= line after EHLO  ok",
        f"  bare LF line ends      {DELIVERED}",
        f"  1500-octet line        {DELIVERED}",
        "result: no step fails",
    ], p.stderr
    assert p.returncode == EX_OK
    # What the device's messages became: CRLF, and the long line folded.
    msgs = [strip_received(m) for m in srv.messages(rcpt)]
    assert len(msgs) == 2
    lf, long = msgs
    assert b"Subject: postern probe --as-device: bare LF line ends\r\n" in lf
    assert b"\n" not in lf.replace(b"\r\n", b"")
    assert lf.endswith(b"\r\nThis test message was sent by postern probe "
                       b"--as-device.\r\nIts last line.\r\n")
    digits = bytes(ord("0") + i % 10 for i in range(1500))
    assert (b"\r\n" + digits[:998] + b"\r\n" + digits[998:] +
            b"\r\nIts last line.\r\n") in long
    # Each exception the probe used, in the log with the profile's name.
    used = {e["used"] for e in srv.events("compat", profile="probe")}
    assert {"tls_min_version", "auth_before_tls", "helo_auth",
            "bare_lf", "long_lines"} <= set(",".join(used).split(","))


def test_without_a_profile(srv, pwfile):
    rcpt = unique_rcpt("strict")
    p, url, lines = probe(srv, "strict", "--user", USER, "--password-file",
                          pwfile, "--to", rcpt)
    assert lines == [
        f"postern probe --as-device {url}",
        TLS10_FAIL,
        "  AUTH LOGIN before TLS  fails: 504 5.5.4 Unrecognized "
        "authentication type -> auth_before_tls = all",
        "  HELO, then AUTH LOGIN  fails: 503 5.5.1 Error: send EHLO first -> "
        "helo_auth = yes",
        ABSENT,
        "  bare LF line ends      fails: 550 5.6.0 Error: bare <CR> or <LF> "
        "in message -> bare_lf = normalize",
        "  1500-octet line        fails: 500 5.5.6 Error: message line too "
        "long -> long_lines = fold",
        "result: 5 of 6 steps fail; in a [profile NAME] for the device's "
        "network: tls_min_version = TLSv1, auth_before_tls = all, "
        "helo_auth = yes, bare_lf = normalize, long_lines = fold",
    ], p.stderr
    assert p.returncode == EX_PROTOCOL
    assert srv.messages(rcpt) == []


def test_a_partial_profile(srv, pwfile):
    """helo_auth alone does not help a device that needs AUTH LOGIN before
    TLS: the HELO step then fails on the mechanism, and says so."""
    rcpt = unique_rcpt("half")
    p, url, lines = probe(srv, "half", "--user", USER, "--password-file",
                          pwfile, "--to", rcpt)
    assert lines == [
        f"postern probe --as-device {url}",
        TLS10_FAIL,
        "  AUTH LOGIN before TLS  fails: 504 5.5.4 Unrecognized "
        "authentication type -> auth_before_tls = all",
        "  HELO, then AUTH LOGIN  fails: 504 5.5.4 Unrecognized "
        "authentication type -> auth_before_tls = all",
        ABSENT,
        "  bare LF line ends      fails: 550 5.6.0 Error: bare <CR> or <LF> "
        "in message -> bare_lf = normalize",
        f"  1500-octet line        {DELIVERED}",
        "result: 4 of 6 steps fail; in a [profile NAME] for the device's "
        "network: tls_min_version = TLSv1, auth_before_tls = all, "
        "bare_lf = normalize",
    ], p.stderr
    assert p.returncode == EX_PROTOCOL
    assert len(srv.messages(rcpt)) == 1


def test_implicit_tls(srv, pwfile):
    p, url, lines = probe(srv, "smtps", "--user", USER, "--password-file",
                          pwfile)
    assert lines == [
        f"postern probe --as-device {url}",
        TLS10_OK,
        "  AUTH LOGIN before TLS  skipped: implicit TLS: nothing is sent "
        "before TLS",
        "  HELO, then AUTH LOGIN  ok",
        "  AUTH= line after EHLO  ok",
        "  bare LF line ends      skipped: needs --to (a test message is "
        "delivered)",
        "  1500-octet line        skipped: needs --to (a test message is "
        "delivered)",
        "result: no step fails (3 skipped)",
    ], p.stderr
    assert p.returncode == EX_OK


def test_without_credentials(srv):
    """No --user: AUTH LOGIN is cancelled at the user name (RFC 4954 §4,
    501), which is enough to see whether it is offered; the message
    steps cannot pass MAIL on an auth = required listener."""
    p, url, lines = probe(srv, "strict", "--to", unique_rcpt("nouser"))
    assert lines[2:4] == [
        "  AUTH LOGIN before TLS  fails: 504 5.5.4 Unrecognized "
        "authentication type -> auth_before_tls = all",
        "  HELO, then AUTH LOGIN  fails: 503 5.5.1 Error: send EHLO first -> "
        "helo_auth = yes",
    ]
    assert lines[5:7] == [
        "  bare LF line ends      skipped: MAIL FROM: 530 5.7.0 "
        "Authentication required (give --user)",
        "  1500-octet line        skipped: MAIL FROM: 530 5.7.0 "
        "Authentication required (give --user)",
    ]
    assert lines[7] == (
        "result: 3 of 4 steps fail (2 skipped); in a [profile NAME] for the "
        "device's network: tls_min_version = TLSv1, auth_before_tls = all, "
        "helo_auth = yes")
    p, url, lines = probe(srv, "lan")
    assert lines[2:4] == [
        "  AUTH LOGIN before TLS  ok (offered; no --user, so cancelled)",
        "  HELO, then AUTH LOGIN  ok (offered; no --user, so cancelled)",
    ]


def test_wrong_password_is_not_a_profile_matter(srv, tmp_path):
    bad = tmp_path / "bad"
    bad.write_text("wrong password\n")
    p, url, lines = probe(srv, "lan", "--user", USER, "--password-file",
                          bad)
    assert lines[2] == ("  AUTH LOGIN before TLS  fails: 535 5.7.8 "
                        "Authentication credentials invalid (the user or "
                        "the password, not a profile key)")
    assert lines[-1] == "result: 2 of 4 steps fail (2 skipped)"
    assert p.returncode == EX_PROTOCOL


def test_no_server():
    p = run_postern(["probe", "--as-device", "smtp://127.0.0.1:1",
                     "--timeout", "5"])
    assert p.stdout.decode().splitlines() == [
        "postern probe --as-device smtp://127.0.0.1:1",
        "  connect                fails: cannot connect to 127.0.0.1 port 1: "
        "Connection refused",
    ]
    assert p.returncode == EX_UNAVAILABLE


@pytest.mark.parametrize("args", [["--json"], []])
def test_usage(srv, args):
    url = f"smtp://127.0.0.1:{srv.ports['lan']}"
    if args:
        p = run_postern(["probe", "--as-device", url, *args])
    else:
        # --to belongs to --as-device.
        p = run_postern(["probe", url, "--to", "a@b.test"])
    assert p.returncode == EX_USAGE
    assert re.search(rb"usage: postern probe", p.stderr)
