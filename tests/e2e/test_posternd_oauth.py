"""OAuth 2.0 upstream (DESIGN.md "Routing, relay and the queue"): posternd
relays with XOAUTH2 / OAUTHBEARER bearer tokens that it refreshes itself
from a token endpoint (the test token server, Microsoft v2 shapes), to a
private Postfix whose Dovecot checks each token with that server
(oauth2 passdb, introspection), and to scripted Microsoft 365 and Gmail
servers that reproduce their failure replies.

A device logs in to posternd with CRAM-MD5; the relay's own login is
the token.  Secrets must never reach posternd's log.
"""
import email
import json
import os
import smtplib
import stat
import subprocess
import time

import pytest

from net_util import test_cert  # noqa: F401
from oauth_server import PUBLIC_CLIENT, token_server  # noqa: F401
from posternd_util import Posternd, postern_bin, wait_until
from provider_smtp import gmail_server, m365_server  # noqa: F401
from smarthost_util import USER, postfix_smarthost  # noqa: F401

DEV_USER = "scanner@example.test"
DEV_PW = "scan-pw-31"
SCOPE = "https://outlook.office.com/SMTP.Send offline_access"


def device(tmp, port, cafile, ts, refresh_token=None, extra="",
           relay_extra="", tls="starttls", scope=SCOPE, seed=None):
    os.makedirs(str(tmp), exist_ok=True)
    tokfile = os.path.join(str(tmp), "up.token")
    if refresh_token is not None or seed is not None:
        with open(tokfile, "w") as f:
            json.dump(seed or {"refresh_token": refresh_token}, f)
        os.chmod(tokfile, 0o600)
    return Posternd(
        tmp,
        users={DEV_USER: (DEV_PW, "CRAM-MD5", "")},
        extra_global=("local_domains = example.test\nrelay = up\n"
                      "retry_min = 1s\nretry_max = 2s\n" + extra),
        listeners={"lan": "tls = none\nauth = required\n"
                          "auth_before_tls = all\n"},
        extra_sections=(f"[relay up]\nhost = 127.0.0.1:{port}\n"
                        f"tls = {tls}\ntls_cafile = {cafile}\n"
                        f"auth = oauth2\nuser = {USER}\n"
                        f"oauth2_token_url = {ts.token_url()}\n"
                        f"oauth2_device_url = {ts.device_url()}\n"
                        f"oauth2_client_id = {PUBLIC_CLIENT}\n"
                        f"oauth2_scope = {scope}\n"
                        f"oauth2_token_file = {tokfile}\n"
                        f"oauth2_cafile = {cafile}\n"
                        f"max_messages_per_minute = 0\n{relay_extra}"))


def submit(d, rcpt, n=1, tag="oauth"):
    ids = []
    with smtplib.SMTP("127.0.0.1", d.ports["lan"], timeout=30) as s:
        s.login(DEV_USER, DEV_PW)  # CRAM-MD5, as a scanner does
        for i in range(n):
            mid = f"<{tag}-{i}-{time.time_ns()}@scanner.example.test>"
            s.sendmail(DEV_USER, [rcpt],
                       f"Message-ID: {mid}\r\nSubject: {i}\r\n\r\nx\r\n")
            ids.append(mid)
    return ids


def token_file(d):
    path = os.path.join(d.dir, "up.token")
    return json.load(open(path)), os.stat(path)


def no_secrets_logged(d, ts):
    leaks = ts.leaks(d.log())
    assert leaks == [], f"secrets in posternd's log: {leaks}"


def test_refresh_and_deliver(tmp_path, postfix_smarthost,  # noqa: F811
                             test_cert, token_server):  # noqa: F811
    sh, ts = postfix_smarthost, token_server
    rt0 = ts.issue_refresh_token(USER)
    d = device(tmp_path / "dev", sh.ports["starttls"], test_cert.cert, ts,
               refresh_token=rt0)
    d.start()
    try:
        ids = submit(d, "rcpt@example.org")
        got = sh.wait_messages(1, "rcpt@example.org", timeout=30)
        assert email.message_from_bytes(got[0].raw)["Message-ID"] == ids[0]
        assert d.events("oauth_refreshed", relay="up",
                        grant="refresh_token")
        mech = d.events("relay_auth_ok")[0]["mech"]
        assert mech in ("OAUTHBEARER", "XOAUTH2")
        # The rotated refresh token is in the file, 0600; the old one is
        # dead at the token server.
        t, st = token_file(d)
        assert t["refresh_token"] != rt0
        assert stat.S_IMODE(st.st_mode) == 0o600
        assert t["expires_at"] > time.time()
        assert "access_token" in t
        no_secrets_logged(d, ts)
    finally:
        assert d.stop() == 0


def test_rotated_token_survives_restart(tmp_path, postfix_smarthost,  # noqa
                                        test_cert, token_server):  # noqa
    sh, ts = postfix_smarthost, token_server
    ts.access_lifetime = 4  # refreshed ahead: after 2 s
    d = device(tmp_path / "dev", sh.ports["starttls"], test_cert.cert, ts,
               refresh_token=ts.issue_refresh_token(USER))
    d.start()
    try:
        submit(d, "rcpt@example.org")
        sh.wait_messages(1, "rcpt@example.org", timeout=30)
        assert d.stop() == 0
        d.start()
        time.sleep(2.5)  # the access token is due for a refresh now
        submit(d, "rcpt@example.org", tag="after")
        sh.wait_messages(2, "rcpt@example.org", timeout=30)
        # Two refreshes, each with the refresh token the one before
        # returned (the old ones are dead: they would get invalid_grant).
        assert ts.count("token", grant="refresh_token", status=200) >= 2
        assert ts.count("token", grant="refresh_token", status=400) == 0
        no_secrets_logged(d, ts)
    finally:
        assert d.stop() == 0


def test_tokens_expire_during_a_run(tmp_path, postfix_smarthost,  # noqa
                                    test_cert, token_server):  # noqa: F811
    sh, ts = postfix_smarthost, token_server
    ts.access_lifetime = 3
    d = device(tmp_path / "dev", sh.ports["starttls"], test_cert.cert, ts,
               refresh_token=ts.issue_refresh_token(USER))
    d.start()
    try:
        for k in range(4):
            submit(d, "rcpt@example.org", n=3, tag=f"run{k}")
            # Longer than the connection cache keeps an idle connection
            # (2 s): each round opens (and authenticates) a new one.
            time.sleep(2.6)
        sh.wait_messages(12, "rcpt@example.org", timeout=60)
        n = ts.count("token", grant="refresh_token", status=200)
        # Refreshed ahead as the tokens aged (3 s tokens, half-life
        # ahead), not once per message, and never an expired token at
        # Dovecot.
        assert 2 <= n <= 8, n
        assert "authentication failed" not in sh.maillog()
        no_secrets_logged(d, ts)
    finally:
        assert d.stop() == 0


def test_revoked_pauses_then_login_resumes(tmp_path, postfix_smarthost,  # noqa
                                           test_cert, token_server):  # noqa
    sh, ts = postfix_smarthost, token_server
    rt0 = ts.issue_refresh_token(USER)
    ts.revoke(rt0, code=700082)
    d = device(tmp_path / "dev", sh.ports["starttls"], test_cert.cert, ts,
               refresh_token=rt0)
    d.start()
    try:
        submit(d, "rcpt@example.org")
        ev = d.wait_event("oauth_paused", timeout=20)
        assert ev and ev[0]["error"] == "invalid_grant"
        assert ev[0]["aadsts"] == "AADSTS700082"
        assert f"postern oauth login -c {d.conf} up" in ev[0]["action"]
        # Kept, and shown as paused.
        q = subprocess.run([postern_bin(), "queue", "-c", d.conf, "list"],
                           capture_output=True, text=True, timeout=30)
        assert " paused " in q.stdout and "invalid_grant" in q.stdout
        st = subprocess.run([postern_bin(), "oauth", "status", "-c", d.conf,
                             "up"], capture_output=True, text=True,
                            timeout=30)
        assert st.returncode == 77, st.stdout + st.stderr
        assert "invalid_grant" in st.stdout
        assert sh.messages("rcpt@example.org") == []
        # The administrator logs in again (device code flow).
        login = subprocess.Popen([postern_bin(), "oauth", "login", "-c",
                                  d.conf, "up"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        code = ts.wait_pending_device()
        ts.approve_device(code, user=USER)
        out, err = login.communicate(timeout=60)
        assert login.returncode == 0, out + err
        assert code in out
        sh.wait_messages(1, "rcpt@example.org", timeout=30)
        st = subprocess.run([postern_bin(), "oauth", "status", "-c", d.conf,
                             "up"], capture_output=True, text=True,
                            timeout=30)
        assert st.returncode == 0, st.stdout + st.stderr
        no_secrets_logged(d, ts)
    finally:
        assert d.stop() == 0


def test_token_endpoint_5xx_retried(tmp_path, postfix_smarthost,  # noqa
                                    test_cert, token_server):  # noqa: F811
    sh, ts = postfix_smarthost, token_server
    ts.inject("http500", count=2)
    d = device(tmp_path / "dev", sh.ports["starttls"], test_cert.cert, ts,
               refresh_token=ts.issue_refresh_token(USER))
    d.start()
    try:
        submit(d, "rcpt@example.org")
        sh.wait_messages(1, "rcpt@example.org", timeout=40)
        ev = d.events("oauth_refresh_failed", relay="up")
        assert len(ev) == 2 and ev[0]["http"] == "500"
        assert not d.events("oauth_paused")
    finally:
        assert d.stop() == 0


GMAIL_SCOPE = "https://mail.google.com/"


def auth_lines(server):
    return [line for _, line in server.commands
            if line.upper().startswith("AUTH")]


def test_m365_xoauth2(tmp_path, m365_server, test_cert,  # noqa: F811
                      token_server):  # noqa: F811
    ts = token_server
    m365_server.send_as = {USER: {DEV_USER}}  # SendAs granted
    d = device(tmp_path / "dev", m365_server.port, test_cert.cert, ts,
               refresh_token=ts.issue_refresh_token(USER))
    d.start()
    try:
        ids = submit(d, "rcpt@example.org")
        assert wait_until(lambda: len(m365_server.messages) == 1, 30)
        msg = m365_server.messages[0]
        assert msg.user == USER
        assert msg.rcpt_tos == ["rcpt@example.org"]
        assert email.message_from_bytes(msg.data)["Message-ID"] == ids[0]
        # Microsoft offers XOAUTH2 only: that is what went.
        assert auth_lines(m365_server)[0].startswith("AUTH XOAUTH2")
        no_secrets_logged(d, ts)
    finally:
        assert d.stop() == 0


def test_m365_token_refused_refreshed_once(tmp_path, m365_server,  # noqa
                                           test_cert, token_server):  # noqa
    """An access token the file says is valid, revoked upstream: 535
    5.7.3, one refresh, then delivered."""
    ts = token_server
    m365_server.send_as = {USER: {DEV_USER}}
    at = ts.issue_access_token(USER, lifetime=3600)
    ts.revoke(at)
    now = int(time.time())
    d = device(tmp_path / "dev", m365_server.port, test_cert.cert, ts,
               seed={"refresh_token": ts.issue_refresh_token(USER),
                     "access_token": at, "expires_at": now + 3600,
                     "refreshed_at": now})
    d.start()
    try:
        submit(d, "rcpt@example.org")
        assert wait_until(lambda: len(m365_server.messages) == 1, 30)
        ev = d.events("oauth_token_refused", relay="up")
        assert len(ev) == 1 and ev[0]["reply"].startswith("535 5.7.3")
        assert ts.count("token", grant="refresh_token", status=200) == 1
        no_secrets_logged(d, ts)
    finally:
        assert d.stop() == 0


def test_gmail_oauthbearer_error_flow(tmp_path, gmail_server,  # noqa: F811
                                      test_cert, token_server):  # noqa
    """Gmail offers OAUTHBEARER (preferred): a refused token gets the
    RFC 7628 §3.2.3 error challenge, answered with AQ== (0x01)."""
    ts = token_server
    at = ts.issue_access_token(USER, scope=GMAIL_SCOPE, lifetime=3600)
    ts.revoke(at)
    now = int(time.time())
    d = device(tmp_path / "dev", gmail_server.port, test_cert.cert, ts,
               scope=GMAIL_SCOPE,
               seed={"refresh_token": ts.issue_refresh_token(
                         USER, scope=GMAIL_SCOPE),
                     "access_token": at, "expires_at": now + 3600,
                     "refreshed_at": now})
    d.start()
    try:
        submit(d, "rcpt@example.org")
        assert wait_until(lambda: len(gmail_server.messages) == 1, 30)
        lines = [line for _, line in gmail_server.commands]
        auths = [l for l in lines if l.upper().startswith("AUTH")]
        assert all(a.startswith("AUTH OAUTHBEARER") for a in auths), auths
        assert "AQ==" in lines
        no_secrets_logged(d, ts)
    finally:
        assert d.stop() == 0


def test_long_token_two_line_auth(tmp_path, gmail_server,  # noqa: F811
                                  test_cert, token_server):  # noqa: F811
    """A 1,200-octet token: the initial response would pass 512 octets
    (Gmail answers 555 5.5.2), so it goes after the 334 (RFC 4954 §4)."""
    ts = token_server
    ts.token_bytes = 900  # 1,200 characters of base64url
    d = device(tmp_path / "dev", gmail_server.port, test_cert.cert, ts,
               scope=GMAIL_SCOPE,
               refresh_token=ts.issue_refresh_token(USER,
                                                    scope=GMAIL_SCOPE))
    d.start()
    try:
        submit(d, "rcpt@example.org")
        assert wait_until(lambda: len(gmail_server.messages) == 1, 30)
        t, _ = token_file(d)
        assert len(t["access_token"]) >= 1200
        lines = [line for _, line in gmail_server.commands]
        i = lines.index("AUTH OAUTHBEARER")
        assert len(lines[i + 1]) > 1600  # the response, on its own line
        assert not [l for l in lines if len(l) + 2 > 512 and
                    l.upper().startswith("AUTH")]
    finally:
        assert d.stop() == 0


def test_m365_432_lowers_concurrency(tmp_path, m365_server,  # noqa: F811
                                     test_cert, token_server):  # noqa
    ts = token_server
    m365_server.send_as = {USER: {DEV_USER}}
    m365_server.thread_limit = 1
    m365_server.thread_limit_at = "mail"
    d = device(tmp_path / "dev", m365_server.port, test_cert.cert, ts,
               refresh_token=ts.issue_refresh_token(USER),
               relay_extra="max_connections = 3\n")
    d.start()
    try:
        submit(d, "rcpt@example.org", n=9)
        assert wait_until(lambda: len(m365_server.messages) == 9, 60), \
            len(m365_server.messages)
        ev = d.events("relay_deferred")
        assert ev and any("432 4.3.2" in e["reply"] for e in ev)
        lowered = d.events("relay_concurrency", relay="up")
        assert lowered and lowered[0]["limit"] in ("1", "2")
    finally:
        assert d.stop() == 0


def test_m365_send_as(tmp_path, m365_server, test_cert,  # noqa: F811
                      token_server):  # noqa: F811
    """550 5.7.60 (not allowed to send as the device's sender) bounces;
    rewrite_sender = envelope sends as the mailbox instead."""
    ts = token_server
    m365_server.send_as = {USER: set()}
    d = device(tmp_path / "dev", m365_server.port, test_cert.cert, ts,
               refresh_token=ts.issue_refresh_token(USER))
    d.start()
    try:
        submit(d, "rcpt@example.org")
        assert wait_until(lambda: len(d.messages(DEV_USER)) == 1, 30)
        dsn = d.messages(DEV_USER)[0]
        assert b"Status: 5.7.60" in dsn
        assert b"Diagnostic-Code: smtp; 550 5.7.60" in dsn
    finally:
        assert d.stop() == 0
    d2 = device(tmp_path / "dev2", m365_server.port, test_cert.cert, ts,
                refresh_token=ts.issue_refresh_token(USER),
                relay_extra="rewrite_sender = envelope\n")
    d2.start()
    try:
        submit(d2, "rcpt@example.org")
        assert wait_until(lambda: len(m365_server.messages) == 1, 30)
        assert m365_server.messages[0].mail_from == USER
    finally:
        assert d2.stop() == 0


def test_loopback_login(tmp_path, token_server, test_cert):  # noqa: F811
    """postern oauth login --loopback: the authorization code with PKCE
    at a 127.0.0.1 redirect (Google's way; the device flow excludes its
    mail scopes)."""
    ts = token_server
    d = device(tmp_path / "dev", 25, test_cert.cert, ts,
               relay_extra=f"oauth2_auth_url = {ts.authorize_url()}\n")
    d.prepare()
    login = subprocess.Popen([postern_bin(), "oauth", "login", "-c", d.conf,
                              "up", "--loopback"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    url = None
    for line in login.stdout:
        if line.startswith("https://"):
            url = line.strip()
            break
    assert url and "code_challenge_method=S256" in url
    assert "access_type=offline" in url and "prompt=consent" in url
    ts.consent(approve=True, user=USER)
    status, body = ts.browse(url)
    assert status == 200 and b"you may close this window" in body
    out, err = login.communicate(timeout=30)
    assert login.returncode == 0, out + err
    t, st = token_file(d)
    assert t["refresh_token"].startswith("rt-")
    assert stat.S_IMODE(st.st_mode) == 0o600
    assert ts.count("token", grant="authorization_code", status=200) == 1
    # Declined: exit 77 and the file is not touched.
    before = open(os.path.join(d.dir, "up.token")).read()
    login = subprocess.Popen([postern_bin(), "oauth", "login", "-c", d.conf,
                              "up", "--loopback"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    for line in login.stdout:
        if line.startswith("https://"):
            url = line.strip()
            break
    ts.consent(approve=False)
    ts.browse(url)
    out, err = login.communicate(timeout=30)
    assert login.returncode == 77, out + err
    assert "access_denied" in err
    assert open(os.path.join(d.dir, "up.token")).read() == before


def test_client_credentials(tmp_path, postfix_smarthost, test_cert,  # noqa
                            token_server):  # noqa: F811
    """App-only (SMTP.SendAsApp): the client secret, no refresh token."""
    from oauth_server import APP_CLIENT, M365_APP_SCOPE
    sh, ts = postfix_smarthost, token_server
    sec = tmp_path / "app.secret"
    sec.write_text(ts.app_secret + "\n")
    d = device(tmp_path / "dev", sh.ports["starttls"], test_cert.cert, ts,
               scope=M365_APP_SCOPE,
               relay_extra=(f"oauth2_grant = client_credentials\n"
                            f"oauth2_client_secret_file = {sec}\n"))
    d.extra_sections = d.extra_sections.replace(
        f"oauth2_client_id = {PUBLIC_CLIENT}", f"oauth2_client_id = "
        f"{APP_CLIENT}")
    d.start()
    try:
        submit(d, "rcpt@example.org")
        sh.wait_messages(1, "rcpt@example.org", timeout=30)
        assert ts.count("token", grant="client_credentials", status=200) == 1
        assert ts.app_secret not in d.log()
        st = subprocess.run([postern_bin(), "oauth", "status", "-c", d.conf,
                             "up"], capture_output=True, text=True,
                            timeout=30)
        assert st.returncode == 0, st.stdout + st.stderr
        assert "grant: client_credentials" in st.stdout
    finally:
        assert d.stop() == 0
