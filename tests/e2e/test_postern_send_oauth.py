"""`postern send` with an OAuth 2.0 access token instead of a password:
--oauth2-token-file (the JSON token file posternd's relay writes, its
access_token) and --oauth2-bearer (the token in POSTERN_OAUTH2_TOKEN),
against the scripted Gmail and Microsoft 365 servers (provider_smtp.py)
whose tokens the test token server (oauth_server.py) issues and checks.
Gmail offers OAUTHBEARER and XOAUTH2: OAUTHBEARER is taken; Microsoft 365
XOAUTH2 only.  A revoked token exits 77 with the server's JSON error
challenge (RFC 7628 §3.2.2) shown; an expired token file exits 77 before
connecting (postern send never refreshes); the token never shows in the
-v transcript, nor anywhere else postern prints."""
import base64
import json
import os
import time

import pytest

from net_util import test_cert  # noqa: F401
from oauth_server import DEFAULT_USER, token_server  # noqa: F401
from postern_client_util import (
    EX_CONFIG, EX_NOPERM, EX_OK, EX_USAGE, clean_env, describe, run_postern)
from posternd_util import postern_bin
from provider_smtp import (  # noqa: F401
    GOOGLE_SCOPE, gmail_server, m365_server)

EX_NOINPUT = 66
MSG = (b"From: <relay@example.test>\r\nTo: <a@example.test>\r\n"
       b"Subject: oauth\r\nDate: Mon, 02 Feb 2026 10:00:00 +0000\r\n"
       b"Message-ID: <oauth.1@example.test>\r\n\r\nbody\r\n")
GMAIL_401 = ('{"status":"invalid_token","schemes":"bearer",'
             '"scope":"https://mail.google.com/"}')


def token_file(d, access, expires_at=None, **extra):
    """A token file as posternd writes it (mode 0600)."""
    f = d / "relay.token"
    obj = {"refresh_token": "rt-not-used"}
    if access is not None:
        obj["access_token"] = access
    obj["expires_at"] = int(expires_at if expires_at is not None
                            else time.time() + 3600)
    obj.update(extra)
    f.write_text(json.dumps(obj))
    f.chmod(0o600)
    return f


def send(server, cert, args, env=None, home="/nonexistent"):
    a = ["send", "--server", "smtp://127.0.0.1:%d" % server.port,
         "--cafile", cert.cert, "--timeout", "20",
         "--from", DEFAULT_USER, "--to", "a@example.test"]
    return run_postern(a + list(args), input=MSG, env=env, home=home)


def gmail_token(ts):
    return ts.issue_access_token(scope=GOOGLE_SCOPE)


def auth_lines(server):
    return [line for _, line in server.commands
            if line.upper().startswith("AUTH")]


def secret_forms(token):
    """The token, and every base64 it travels in."""
    t = token.encode()
    forms = [t]
    for ir in (b"\x01auth=Bearer " + t + b"\x01\x01",
               b"auth=Bearer " + t):
        for shift in range(3):
            enc = base64.b64encode(b"x" * shift + ir)
            forms.append(enc[4:-4])
    return forms


def assert_no_token(p, token):
    out = p.stdout + p.stderr
    for s in secret_forms(token):
        assert s not in out, (s, describe(p))


# --- a good token delivers -----------------------------------------------------

def test_gmail_token_file_oauthbearer(tmp_path, gmail_server, token_server,
                                      test_cert):
    """Gmail offers OAUTHBEARER and XOAUTH2: OAUTHBEARER, with the host
    and port connected to (RFC 7628 §3.1), the initial response exact."""
    tok = gmail_token(token_server)
    f = token_file(tmp_path, tok)
    p = send(gmail_server, test_cert,
             ["--user", DEFAULT_USER, "--oauth2-token-file", f])
    assert p.returncode == EX_OK, describe(p)
    [msg] = gmail_server.wait_messages(1)
    assert msg.user == DEFAULT_USER and msg.data == MSG
    [s] = [s for s in gmail_server.sessions if s.user is not None]
    assert s.mech == "OAUTHBEARER"
    [line] = auth_lines(gmail_server)
    assert line.startswith("AUTH OAUTHBEARER "), line
    assert base64.b64decode(line.split(" ")[2]) == (
        b"n,a=relay@example.test,\x01host=127.0.0.1\x01port=%d\x01"
        b"auth=Bearer %s\x01\x01" % (gmail_server.port, tok.encode()))
    assert_no_token(p, tok)


def test_m365_bearer_from_environment(tmp_path, m365_server, token_server,
                                      test_cert):
    """Microsoft 365 offers XOAUTH2 only (after STARTTLS)."""
    tok = token_server.issue_access_token()
    env = clean_env(tmp_path, POSTERN_OAUTH2_TOKEN=tok)
    p = send(m365_server, test_cert, ["--user", DEFAULT_USER,
                                      "--oauth2-bearer"], env=env)
    assert p.returncode == EX_OK, describe(p)
    [msg] = m365_server.wait_messages(1)
    assert msg.user == DEFAULT_USER and msg.data == MSG
    [line] = auth_lines(m365_server)
    assert base64.b64decode(line.split(" ")[2]) == (
        b"user=relay@example.test\x01auth=Bearer %s\x01\x01" % tok.encode())
    assert_no_token(p, tok)


def test_gmail_forced_xoauth2(tmp_path, gmail_server, token_server,
                              test_cert):
    tok = gmail_token(token_server)
    p = send(gmail_server, test_cert,
             ["--user", DEFAULT_USER, "--mech", "XOAUTH2",
              "--oauth2-token-file", token_file(tmp_path, tok)])
    assert p.returncode == EX_OK, describe(p)
    [s] = [s for s in gmail_server.sessions if s.user is not None]
    assert s.mech == "XOAUTH2"


def test_token_file_from_configuration(tmp_path, gmail_server, token_server,
                                       test_cert):
    """The key oauth2-token-file, and sendmail mode, which reads it."""
    tok = gmail_token(token_server)
    f = token_file(tmp_path, tok)
    conf = tmp_path / "client.conf"
    conf.write_text("server = smtp://127.0.0.1:%d\ncafile = %s\n"
                    "user = %s\noauth2-token-file = %s\n"
                    % (gmail_server.port, test_cert.cert, DEFAULT_USER, f))
    env = clean_env(tmp_path, POSTERN_CONFIG=conf)
    p = run_postern(["send", "--from", DEFAULT_USER, "--to",
                     "a@example.test"], input=MSG, env=env)
    assert p.returncode == EX_OK, describe(p)
    link = tmp_path / "sendmail"
    os.symlink(postern_bin(), link)
    p = run_postern(["-i", "b@example.test"], input=MSG, env=env,
                    argv0=link)
    assert p.returncode == EX_OK, describe(p)
    msgs = gmail_server.wait_messages(2)
    assert [m.rcpt_tos for m in msgs] == [["a@example.test"],
                                          ["b@example.test"]]
    assert [s.mech for s in gmail_server.sessions if s.user] == \
        ["OAUTHBEARER", "OAUTHBEARER"]


# --- a refused token: 77 and the server's JSON ---------------------------------

def test_gmail_revoked_token(tmp_path, gmail_server, token_server,
                             test_cert):
    """RFC 7628 §3.2.2-3: 334 with the JSON, the client's AQ==, 535; the
    JSON is shown; nothing is sent."""
    tok = gmail_token(token_server)
    token_server.revoke(tok)
    p = send(gmail_server, test_cert,
             ["--user", DEFAULT_USER, "--oauth2-token-file",
              token_file(tmp_path, tok)])
    assert p.returncode == EX_NOPERM, describe(p)
    err = p.stderr.decode().splitlines()
    assert len(err) == 3, describe(p)
    assert err[0].startswith("postern send: authentication failed: "
                             "535-5.7.8 Username and Password not accepted"), \
        describe(p)
    assert err[2] == ("postern send: the server's error: "
                      '{"status":"invalid_token","schemes":"bearer",'
                      '"scope":"https://mail.google.com/"}'), describe(p)
    lines = [line for _, line in gmail_server.commands]
    i = lines.index(auth_lines(gmail_server)[0])
    assert lines[i + 1:] == ["AQ==", "QUIT"], lines
    assert gmail_server.messages == []
    assert_no_token(p, tok)


def test_gmail_revoked_token_xoauth2(tmp_path, gmail_server, token_server,
                                     test_cert):
    """XOAUTH2's form of it: {"status":"401",...}, an empty response."""
    tok = gmail_token(token_server)
    token_server.revoke(tok)
    env = clean_env(tmp_path, POSTERN_OAUTH2_TOKEN=tok)
    p = send(gmail_server, test_cert, ["--user", DEFAULT_USER, "--mech",
                                       "XOAUTH2", "--oauth2-bearer"],
             env=env)
    assert p.returncode == EX_NOPERM, describe(p)
    assert p.stderr.decode().endswith(
        'postern send: the server\'s error: {"status":"401",'
        '"schemes":"bearer","scope":"https://mail.google.com/"}\n'), \
        describe(p)
    lines = [line for _, line in gmail_server.commands]
    i = lines.index(auth_lines(gmail_server)[0])
    assert lines[i + 1:] == ["", "QUIT"], lines
    assert_no_token(p, tok)


def test_m365_revoked_token(tmp_path, m365_server, token_server, test_cert):
    """Microsoft 365: 535 5.7.3 at once, no JSON to show."""
    tok = token_server.issue_access_token()
    token_server.revoke(tok)
    p = send(m365_server, test_cert,
             ["--user", DEFAULT_USER, "--oauth2-token-file",
              token_file(tmp_path, tok)])
    assert p.returncode == EX_NOPERM, describe(p)
    assert p.stderr.decode() == (
        "postern send: authentication failed: 535 5.7.3 Authentication "
        "unsuccessful [PH7PR17MB0001.namprd17.prod.outlook.com]\n"), \
        describe(p)
    assert m365_server.messages == []


def test_wrong_user_for_token(tmp_path, m365_server, token_server,
                              test_cert):
    tok = token_server.issue_access_token(user="someone@example.test")
    p = send(m365_server, test_cert,
             ["--user", DEFAULT_USER, "--oauth2-token-file",
              token_file(tmp_path, tok)])
    assert p.returncode == EX_NOPERM, describe(p)
    assert m365_server.messages == []


# --- the token never shows -----------------------------------------------------

@pytest.mark.parametrize("revoked", [False, True], ids=["good", "revoked"])
def test_verbose_redacts_token(tmp_path, gmail_server, token_server,
                               test_cert, revoked):
    tok = gmail_token(token_server)
    if revoked:
        token_server.revoke(tok)
    p = send(gmail_server, test_cert,
             ["-v", "--user", DEFAULT_USER, "--oauth2-token-file",
              token_file(tmp_path, tok)])
    assert p.returncode == (EX_NOPERM if revoked else EX_OK), describe(p)
    err = p.stderr.decode()
    assert "C: AUTH OAUTHBEARER <redacted>\n" in err, err
    if revoked:
        assert "S: 334 <redacted>\nC: <redacted>\nS: 535-5.7.8" in err, err
    else:
        assert "S: 235 2.7.0 Accepted\n" in err, err
    assert_no_token(p, tok)


# --- refused before connecting -------------------------------------------------

def test_expired_token_file(tmp_path, gmail_server, token_server, test_cert):
    """postern send does not refresh: an expired token is refused, 77,
    with the time it expired; no connection is made."""
    tok = gmail_token(token_server)
    f = token_file(tmp_path, tok, expires_at=1767225600)  # 2026-01-01Z
    env = clean_env(tmp_path, TZ="UTC")
    p = send(gmail_server, test_cert,
             ["--user", DEFAULT_USER, "--oauth2-token-file", f], env=env)
    assert p.returncode == EX_NOPERM, describe(p)
    assert p.stderr.decode() == (
        "postern send: the access token in %s expired on Thu, 01 Jan 2026 "
        "00:00:00 +0000 (postern send does not refresh it: posternd does, "
        "or `postern oauth login`)\n" % f), describe(p)
    assert gmail_server.sessions == []
    assert_no_token(p, tok)


def test_token_file_problems(tmp_path, gmail_server, test_cert):
    base = ["--user", DEFAULT_USER, "--oauth2-token-file"]
    missing = tmp_path / "missing.token"
    p = send(gmail_server, test_cert, base + [missing])
    assert p.returncode == EX_NOINPUT, describe(p)
    assert p.stderr.decode() == (
        "postern send: %s: no such token file\n" % missing)
    # Seeded by hand, never refreshed yet: no access token.
    f = token_file(tmp_path, None)
    p = send(gmail_server, test_cert, base + [f])
    assert p.returncode == EX_NOPERM, describe(p)
    assert "holds no access token" in p.stderr.decode(), describe(p)
    f.write_text("{not json")
    p = send(gmail_server, test_cert, base + [f])
    assert p.returncode == EX_CONFIG, describe(p)
    f = token_file(tmp_path, "has space")
    p = send(gmail_server, test_cert, base + [f])
    assert p.returncode == EX_CONFIG, describe(p)
    assert "is not an OAuth 2.0 bearer token" in p.stderr.decode()
    assert gmail_server.sessions == []


@pytest.mark.parametrize("args,env,why", [
    (["--user", DEFAULT_USER, "--oauth2-bearer"], {},
     "--oauth2-bearer takes the token from POSTERN_OAUTH2_TOKEN, which is "
     "not set"),
    (["--user", DEFAULT_USER, "--oauth2-bearer"],
     {"POSTERN_OAUTH2_TOKEN": "a b"},
     "POSTERN_OAUTH2_TOKEN is not an OAuth 2.0 bearer token"),
    (["--oauth2-bearer"], {"POSTERN_OAUTH2_TOKEN": "tok"},
     "an OAuth 2.0 token needs --user"),
    (["--user", DEFAULT_USER, "--oauth2-bearer", "--oauth2-token-file",
      "/nonexistent"], {"POSTERN_OAUTH2_TOKEN": "tok"},
     "--oauth2-token-file and --oauth2-bearer exclude each other"),
    (["--user", DEFAULT_USER, "--oauth2-bearer", "--mech", "PLAIN"],
     {"POSTERN_OAUTH2_TOKEN": "tok"},
     "--mech PLAIN takes a password, not an OAuth 2.0 token"),
    (["--user", DEFAULT_USER, "--mech", "OAUTHBEARER"],
     {"POSTERN_PASSWORD": "pw"},
     "--mech OAUTHBEARER needs an OAuth 2.0 token"),
], ids=["no-env", "bad-token", "no-user", "both", "mech-plain",
        "mech-without-token"])
def test_usage(tmp_path, gmail_server, test_cert, args, env, why):
    p = send(gmail_server, test_cert, args,
             env=clean_env(tmp_path, **env))
    assert p.returncode == EX_USAGE, describe(p)
    assert why in p.stderr.decode(), describe(p)
    assert gmail_server.sessions == []


def test_token_never_on_the_command_line(tmp_path):
    """--oauth2-bearer takes no argument: a token after it is an
    unexpected argument, not a token."""
    p = run_postern(["send", "--server", "smtp://127.0.0.1:1", "--user",
                     DEFAULT_USER, "--from", DEFAULT_USER, "--to",
                     "a@example.test", "--oauth2-bearer", "at-secret"],
                    input=MSG)
    assert p.returncode == EX_USAGE, describe(p)
    assert "unexpected argument 'at-secret'" in p.stderr.decode()
