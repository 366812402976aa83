"""`postern probe` against posternd's listeners: the banner, the EHLO
keywords and mechanisms before and after STARTTLS, the TLS version,
cipher and certificate, for a person and as JSON; with credentials, each
offered mechanism tried and reported."""
import datetime
import json
import re
import subprocess

import pytest

from posternd_util import Posternd
from postern_client_util import (
    ALL_MECHS, EX_NOPERM, EX_OK, EX_UNAVAILABLE, EX_USAGE, PASSWORD, USER,
    FakeSMTP, LogMark, clean_env, describe, run_postern, secret_forms,
    settled)

CHALLENGE_MECHS = ["SCRAM-SHA-256", "SCRAM-SHA-1", "DIGEST-MD5", "CRAM-MD5"]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    d = tmp_path_factory.mktemp("posternd")
    p = settled(Posternd(d, extra_global="auth_throttle = no\n").start())
    yield p
    assert p.stop() == 0, p.log()


@pytest.fixture(scope="module")
def pwfile(tmp_path_factory):
    f = tmp_path_factory.mktemp("pw") / "password"
    f.write_text(PASSWORD + "\n")
    return f


@pytest.fixture(scope="module")
def badpwfile(tmp_path_factory):
    f = tmp_path_factory.mktemp("badpw") / "password"
    f.write_text("wrong password\n")
    return f


def url(srv, listener, host="127.0.0.1"):
    return "%s://%s:%d" % ("smtps" if listener == "implicit" else "smtp",
                           host, srv.ports[listener])


def probe(srv, listener, *args, host="127.0.0.1", cafile=True, env=None):
    a = ["probe", url(srv, listener, host), "--timeout", "20"]
    if cafile:
        a += ["--cafile", srv.cert]
    return run_postern(a + list(args), env=env)


def probe_json(srv, listener, *args, code=EX_OK, **kw):
    p = probe(srv, listener, "--json", *args, **kw)
    assert p.returncode == code, describe(p)
    return json.loads(p.stdout)


def cert_not_after(path):
    out = subprocess.run(["openssl", "x509", "-in", str(path), "-noout",
                          "-enddate"], capture_output=True, text=True,
                         check=True, timeout=30).stdout.strip()
    when = datetime.datetime.strptime(out.split("=", 1)[1],
                                      "%b %d %H:%M:%S %Y %Z")
    return when.strftime("%Y-%m-%d %H:%M:%SZ")


def check_tls(srv, tls):
    assert tls["version"] in ("TLSv1.2", "TLSv1.3"), tls
    assert re.match(r"^[A-Z0-9_-]+$", tls["cipher"]), tls
    assert tls["bits"] in (128, 256), tls
    assert tls["verified"] is True and tls["verify_result"] == "ok"
    assert tls["subject"] == "CN=mail.example.test"
    assert tls["issuer"] == "CN=mail.example.test"  # self-signed
    assert tls["not_after"] == cert_not_after(srv.cert)


# --- JSON -------------------------------------------------------------------

def test_json_starttls(srv):
    j = probe_json(srv, "starttls")
    assert j["ok"] is True and "error" not in j
    assert j["server"] == "127.0.0.1" and j["port"] == srv.ports["starttls"]
    assert j["implicit_tls"] is False and j["address"] == "127.0.0.1"
    assert j["banner"] == "220 mail.example.test ESMTP ready"
    # auth_before_tls = none: no AUTH before STARTTLS.
    assert j["plain"]["mechanisms"] == []
    assert "STARTTLS" in j["plain"]["ehlo"]
    assert not [k for k in j["plain"]["ehlo"] if k.startswith("AUTH")]
    check_tls(srv, j["tls"])
    assert j["tls_ehlo"]["mechanisms"] == ALL_MECHS
    assert "AUTH " + " ".join(ALL_MECHS) in j["tls_ehlo"]["ehlo"]
    # RFC 3207 §4.2: not offered again under TLS.
    assert "STARTTLS" not in j["tls_ehlo"]["ehlo"]
    assert {"PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"} <= set(
        j["tls_ehlo"]["ehlo"])
    assert "auth" not in j and "user" not in j


def test_json_legacy(srv):
    """auth_before_tls = challenge: the challenge mechanisms in clear, all
    of them under TLS."""
    j = probe_json(srv, "legacy")
    assert j["plain"]["mechanisms"] == CHALLENGE_MECHS
    assert "STARTTLS" in j["plain"]["ehlo"]
    check_tls(srv, j["tls"])
    assert j["tls_ehlo"]["mechanisms"] == ALL_MECHS


def test_json_implicit(srv):
    j = probe_json(srv, "implicit")
    assert j["implicit_tls"] is True
    assert "plain" not in j
    check_tls(srv, j["tls"])
    assert j["tls_ehlo"]["mechanisms"] == ALL_MECHS


def test_json_plain(srv):
    j = probe_json(srv, "plain", cafile=False)
    assert "tls" not in j and "tls_ehlo" not in j
    assert j["plain"]["mechanisms"] == ALL_MECHS
    assert "STARTTLS" not in j["plain"]["ehlo"]


# --- for a person -----------------------------------------------------------

def test_human_starttls(srv):
    p = probe(srv, "starttls")
    assert p.returncode == EX_OK, describe(p)
    out = p.stdout.decode()
    assert out.startswith("server:    smtp://127.0.0.1:%d (127.0.0.1)\n"
                          % srv.ports["starttls"]), out
    assert "banner:    220 mail.example.test ESMTP ready\n" in out
    before, after = out.split("\nTLS:", 1)
    assert "before TLS:\n  EHLO keywords:\n" in before
    assert "    STARTTLS\n" in before
    assert before.endswith("\n  mechanisms: (none)")
    assert re.match(r" +TLSv1\.[23], [A-Z0-9_-]+ \((128|256) bits\)\n",
                    after), after
    assert "  subject:  CN=mail.example.test\n" in after
    assert "  issuer:   CN=mail.example.test\n" in after
    assert "  expires:  %s\n" % cert_not_after(srv.cert) in after
    assert "  verified: ok\n" in after
    assert "under TLS:\n" in after
    assert "  mechanisms: %s\n" % " ".join(ALL_MECHS) in after
    assert p.stderr == b""


def test_human_legacy(srv):
    p = probe(srv, "legacy")
    assert p.returncode == EX_OK, describe(p)
    out = p.stdout.decode()
    before, after = out.split("\nTLS:", 1)
    assert before.endswith("\n  mechanisms: %s" % " ".join(CHALLENGE_MECHS))
    assert "  mechanisms: %s\n" % " ".join(ALL_MECHS) in after


def test_human_plain_no_tls(srv):
    p = probe(srv, "plain", cafile=False)
    assert p.returncode == EX_OK, describe(p)
    out = p.stdout.decode()
    assert "TLS:       not offered (no STARTTLS)\n" in out
    assert "under TLS" not in out


# --- credentials --------------------------------------------------------------

@pytest.mark.parametrize("listener", ["starttls", "legacy", "implicit"])
def test_credentials_each_mechanism(srv, pwfile, listener):
    mark = LogMark(srv)
    j = probe_json(srv, listener, "--user", USER, "--password-file", pwfile)
    assert j["user"] == USER
    assert list(j["auth"]) == ALL_MECHS
    assert all(v == {"ok": True} for v in j["auth"].values()), j["auth"]
    assert mark.wait(r"mech=LOGIN"), mark.text()
    oks = [e["mech"] for e in mark.events("auth_ok")]
    assert oks == ALL_MECHS, mark.text()
    assert not mark.events("auth_failed")


@pytest.mark.parametrize("listener", ["starttls", "legacy"])
def test_credentials_human(srv, pwfile, listener):
    p = probe(srv, listener, "--user", USER, "--password-file", pwfile)
    assert p.returncode == EX_OK, describe(p)
    out = p.stdout.decode()
    tail = out.split("authentication as %s:\n" % USER, 1)[1]
    assert tail == "".join("  %-14s ok\n" % m for m in ALL_MECHS), tail


@pytest.mark.parametrize("listener", ["starttls", "legacy"])
def test_wrong_password_each_failed(srv, badpwfile, listener):
    mark = LogMark(srv)
    j = probe_json(srv, listener, "--user", USER, "--password-file",
                   badpwfile, code=EX_NOPERM)
    assert list(j["auth"]) == ALL_MECHS
    for m, v in j["auth"].items():
        assert v["ok"] is False, m
        assert "authentication failed: 535 5.7.8" in v["error"], v
    # The probe itself worked ("ok"), but no login did: exit 77.
    assert j["ok"] is True
    assert mark.wait(r"auth_failed.*mech=LOGIN"), mark.text()
    assert [e["mech"] for e in mark.events("auth_failed")] == ALL_MECHS
    p = probe(srv, listener, "--user", USER, "--password-file", badpwfile)
    assert p.returncode == EX_NOPERM, describe(p)
    tail = p.stdout.decode().split("authentication as %s:\n" % USER, 1)[1]
    for m, line in zip(ALL_MECHS, tail.splitlines()):
        assert line.startswith("  %-14s authentication failed: 535 5.7.8"
                               % m), line


def test_plain_listener_no_plaintext_auth(srv, pwfile):
    """Without TLS, PLAIN and LOGIN are reported refused by the client
    and never tried; the challenge mechanisms work."""
    mark = LogMark(srv)
    j = probe_json(srv, "plain", "--user", USER, "--password-file", pwfile,
                   cafile=False)
    for m in CHALLENGE_MECHS:
        assert j["auth"][m] == {"ok": True}, j["auth"]
    for m in ("PLAIN", "LOGIN"):
        assert j["auth"][m]["ok"] is False
        assert "--allow-plaintext-auth" in j["auth"][m]["error"]
    assert mark.wait(r"mech=CRAM-MD5"), mark.text()
    mark.sessions_done()
    assert [e["mech"] for e in mark.events("auth_ok")] == CHALLENGE_MECHS
    assert not mark.events("auth_failed")
    j = probe_json(srv, "plain", "--user", USER, "--password-file", pwfile,
                   "--allow-plaintext-auth", cafile=False)
    assert all(v == {"ok": True} for v in j["auth"].values()), j["auth"]


def test_password_from_environment_and_verbose(srv, tmp_path):
    env = clean_env(tmp_path, POSTERN_PASSWORD=PASSWORD)
    p = probe(srv, "starttls", "-v", "--json", "--user", USER, env=env)
    assert p.returncode == EX_OK, describe(p)
    j = json.loads(p.stdout)
    assert all(v == {"ok": True} for v in j["auth"].values())
    assert b"C: EHLO" in p.stderr and b"<redacted>" in p.stderr
    for s in secret_forms():
        assert s not in p.stderr and s not in p.stdout


# --- certificates and errors --------------------------------------------------

def test_certificate_mismatch(srv):
    j = probe_json(srv, "starttls", host="localhost", code=EX_UNAVAILABLE)
    assert j["ok"] is False
    assert "mismatch" in j["error"] and "--insecure" in j["error"]
    assert j["plain"]["mechanisms"] == []  # what was seen before TLS
    p = probe(srv, "starttls", host="localhost")
    assert p.returncode == EX_UNAVAILABLE, describe(p)
    assert "mismatch" in p.stderr.decode()


def test_certificate_mismatch_insecure(srv):
    j = probe_json(srv, "starttls", "--insecure", host="localhost",
                   cafile=False)
    assert j["ok"] is True
    assert j["tls"]["verified"] is False
    assert j["tls"]["verify_result"] != "ok"
    assert j["tls_ehlo"]["mechanisms"] == ALL_MECHS
    p = probe(srv, "starttls", "--insecure", host="localhost", cafile=False)
    assert p.returncode == EX_OK, describe(p)
    assert "(accepted: --insecure)" in p.stdout.decode()


def test_fake_server_legacy_auth_line():
    with FakeSMTP(ehlo=["AUTH=LOGIN PLAIN", "SIZE 1000"]) as f:
        p = run_postern(["probe", "--json", f.url, "--timeout", "10"])
    assert p.returncode == EX_OK, describe(p)
    j = json.loads(p.stdout)
    assert j["plain"]["mechanisms"] == ["LOGIN", "PLAIN"]
    assert j["plain"]["ehlo"] == ["AUTH=LOGIN PLAIN", "SIZE 1000"]
    assert "tls" not in j
    assert [c.split(b" ")[0] for c in f.commands] == [b"EHLO", b"QUIT"]


def test_json_port_with_leading_zero(srv):
    p = run_postern(["probe", "--json", "--timeout", "20",
                     "smtp://127.0.0.1:0%d" % srv.ports["plain"]])
    assert p.returncode == EX_OK, describe(p)
    assert json.loads(p.stdout)["port"] == srv.ports["plain"]


@pytest.mark.parametrize("u,port,implicit", [
    ("smtp://127.0.0.1", 587, False), ("smtps://127.0.0.1", 465, True),
    ("smtp://127.0.0.1/", 587, False), ("SMTPS://127.0.0.1:2465", 2465, True),
])
def test_default_ports(u, port, implicit):
    p = run_postern(["probe", "--json", "--timeout", "5", u])
    j = json.loads(p.stdout)
    assert (j["port"], j["implicit_tls"]) == (port, implicit), j
    if not j["ok"]:  # nothing listens there, as a rule
        assert p.returncode == 75, describe(p)
        assert "port %d" % port in j["error"], j


@pytest.mark.parametrize("args", [[], ["a", "b"], ["http://x"],
                                  ["smtp://x:0"], ["--nope", "smtp://x"]])
def test_usage(args, tmp_path):
    p = run_postern(["probe"] + args, home=tmp_path)
    assert p.returncode == EX_USAGE, describe(p)
