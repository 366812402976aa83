"""Self-tests of the upstream test servers: each piece with real clients
(smtplib, curl, urllib, a raw socket) and exact outcomes.

- oauth_server.TokenServer: the grants, rotation, invalid_grant, the
  device flow, PKCE with a loopback redirect, introspection, faults.
- smarthost_util.PostfixSmarthost: STARTTLS/implicit TLS, AUTH PLAIN,
  LOGIN, CRAM-MD5 (Dovecot passwd-file), XOAUTH2/OAUTHBEARER (Dovecot's
  oauth2 passdb asking the token server), recipients, controls.
- smarthost_util.AiosmtpdSmarthost.
- provider_smtp.ProviderSmtp: Microsoft 365 and Gmail replies.
"""
import base64
import http.server
import json
import os
import re
import secrets
import smtplib
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

from net_util import wait_until
from oauth_server import (APP_CLIENT, GOOGLE_SCOPE, M365_APP_SCOPE,
                          M365_SCOPE, PUBLIC_CLIENT, pkce_s256)
from provider_smtp import M365_MBX
from smarthost_util import (PASSWORD, USER, AiosmtpdSmarthost,
                            PostfixSmarthost, b64,
                            oauthbearer, strip_trace, xoauth2)

# The fixtures (pytest finds them in this module's namespace).
from net_util import test_cert  # noqa: F401,E402
from oauth_server import token_server  # noqa: F401,E402
from provider_smtp import gmail_server, m365_server  # noqa: F401,E402
from smarthost_util import aiosmtpd_smarthost, postfix_smarthost  # noqa

MSG = (b"From: <relay@example.test>\r\nTo: <rcpt@example.test>\r\n"
       b"Subject: smarthost self-test\r\nMessage-ID: <st.1@example.test>\r\n"
       b"\r\nline one\r\n.leading dot\r\n\r\nlast line\r\n")
# INTEROP.md's JSON, base64 by coreutils' base64 (not by the code under
# test).
GOOGLE_401 = ("eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIiwic2NvcGUiOiJ"
              "odHRwczovL21haWwuZ29vZ2xlLmNvbS8ifQ==")
GOOGLE_INVALID = ("eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NoZW1lcyI6ImJlYXJl"
                  "ciIsInNjb3BlIjoiaHR0cHM6Ly9tYWlsLmdvb2dsZS5jb20vIn0=")
GMAIL_535 = re.compile(r"535-5\.7\.8 Username and Password not accepted\. "
                       r"For more information, go to\r\n535 5\.7\.8  "
                       r"https://support\.google\.com/mail/\?p=BadCredentials"
                       r" [0-9a-f]{12} - gsmtp$")
M365_535 = "535 5.7.3 Authentication unsuccessful [%s]" % M365_MBX


# --- clients -----------------------------------------------------------------

def post(ts, url, form, auth=None, timeout=10):
    """(HTTP status, JSON body) of a form POST, as a relay would send it."""
    req = urllib.request.Request(
        url, data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"})
    if auth:
        req.add_header("Authorization", "Basic " + b64("%s:%s" % auth))
    try:
        with urllib.request.urlopen(req, timeout=timeout,
                                    context=ts.cert.client_context()) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        body = e.read()
        try:
            return e.code, json.loads(body)
        except ValueError:
            return e.code, body


def curl(ts, url, *fields):
    """(HTTP status, JSON body) by curl --data-urlencode, verifying the
    test certificate."""
    args = ["curl", "-sS", "--max-time", "10", "--cacert", ts.cert.cert,
            "-w", "\n%{http_code}", url]
    for f in fields:
        args += ["--data-urlencode", f]
    p = subprocess.run(args, capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    body, _, code = p.stdout.rpartition("\n")
    return int(code), json.loads(body)


def assert_ms_error(body, error, code):
    """Microsoft's error shape, all of it."""
    assert set(body) == {"error", "error_description", "error_codes",
                         "timestamp", "trace_id", "correlation_id",
                         "error_uri"}, body
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", body["timestamp"])
    d = body["error_description"]
    assert d.startswith("AADSTS%d: " % code), d
    assert d.endswith("\r\nTrace ID: %s\r\nCorrelation ID: %s\r\n"
                      "Timestamp: %s" % (body["trace_id"],
                                         body["correlation_id"],
                                         body["timestamp"])), d


class Raw:
    """An SMTP client that shows every reply exactly (lines joined by
    CRLF)."""

    def __init__(self, port, ctx=None, implicit=False, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout)
        if implicit:
            self.sock = ctx.wrap_socket(self.sock,
                                        server_hostname="127.0.0.1")
        self.buf = b""
        self.greeting = self.reply()

    def reply(self):
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise EOFError("closed after %r" % lines)
                self.buf += data
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode())
            if len(line) < 4 or line[3:4] != b"-":
                return "\r\n".join(lines)

    def cmd(self, line):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.reply()

    def starttls(self, ctx):
        r = self.cmd("STARTTLS")
        assert r.startswith("220 "), r
        self.sock = ctx.wrap_socket(self.sock, server_hostname="127.0.0.1")
        return r

    def close(self):
        self.sock.close()


def smtp_tls(port, cert):
    m = smtplib.SMTP("127.0.0.1", port, timeout=20)
    try:
        m.starttls(context=cert.client_context())
        m.ehlo()
    except BaseException:
        m.close()
        raise
    return m


# --- the token server --------------------------------------------------------

def test_refresh_grant_rotates_and_needs_scope(token_server):
    ts = token_server
    rt = ts.issue_refresh_token("tim@example.test")
    url = ts.token_url("contoso.onmicrosoft.com")
    code, body = curl(ts, url, "grant_type=refresh_token",
                      "client_id=" + PUBLIC_CLIENT, "refresh_token=" + rt)
    assert code == 400
    assert_ms_error(body, "invalid_request", 900144)
    assert "'scope'" in body["error_description"]

    code, body = curl(ts, url, "grant_type=refresh_token",
                      "client_id=" + PUBLIC_CLIENT, "refresh_token=" + rt,
                      "scope=" + M365_SCOPE)
    assert code == 200, body
    assert set(body) == {"token_type", "scope", "expires_in",
                         "ext_expires_in", "access_token", "refresh_token"}
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "https://outlook.office.com/SMTP.Send"
    assert body["expires_in"] == 3600
    rt2 = body["refresh_token"]
    assert rt2 != rt
    assert ts.introspect(body["access_token"])["username"] == \
        "tim@example.test"

    # The old refresh token is dead; the new one works (and rotates).
    code, body = curl(ts, url, "grant_type=refresh_token",
                      "client_id=" + PUBLIC_CLIENT, "refresh_token=" + rt,
                      "scope=" + M365_SCOPE)
    assert code == 400
    assert_ms_error(body, "invalid_grant", 70000)
    code, body = post(ts, url, {"grant_type": "refresh_token",
                                "client_id": PUBLIC_CLIENT,
                                "refresh_token": rt2, "scope": M365_SCOPE})
    assert code == 200 and body["refresh_token"] not in (rt, rt2)
    assert ts.count(grant="refresh_token") == 4
    assert ts.count(grant="refresh_token", status=200) == 2


def test_revoked_and_inactive_refresh_tokens(token_server):
    ts = token_server
    rt1, rt2 = ts.issue_refresh_token(), ts.issue_refresh_token()
    ts.revoke(rt1)
    ts.revoke(rt2, code=700082)
    form = {"grant_type": "refresh_token", "client_id": PUBLIC_CLIENT,
            "scope": M365_SCOPE}
    code, body = post(ts, ts.token_url(), dict(form, refresh_token=rt1))
    assert code == 400
    assert_ms_error(body, "invalid_grant", 70000)
    code, body = post(ts, ts.token_url(), dict(form, refresh_token=rt2))
    assert code == 400
    assert_ms_error(body, "invalid_grant", 700082)
    code, body = post(ts, ts.token_url(), dict(form, refresh_token="junk"))
    assert code == 400
    assert_ms_error(body, "invalid_grant", 9002313)


def test_client_credentials(token_server):
    ts = token_server
    form = {"grant_type": "client_credentials", "client_id": APP_CLIENT,
            "scope": M365_APP_SCOPE}
    code, body = post(ts, ts.token_url(), dict(form,
                                               client_secret=ts.app_secret))
    assert code == 200, body
    assert "refresh_token" not in body
    assert body["scope"] == M365_APP_SCOPE
    assert ts.introspect(body["access_token"])["username"] == \
        "relay@example.test"
    # RFC 6749 §2.3.1: HTTP Basic works as well.
    code, body = post(ts, ts.token_url(), form,
                      auth=(APP_CLIENT, ts.app_secret))
    assert code == 200, body
    code, body = post(ts, ts.token_url(), dict(form, client_secret="nope"))
    assert code == 401
    assert_ms_error(body, "invalid_client", 7000215)
    code, body = post(ts, ts.token_url(), form)
    assert code == 401
    assert_ms_error(body, "invalid_client", 7000218)
    code, body = post(ts, ts.token_url(), dict(
        form, client_secret=ts.app_secret,
        scope="https://outlook.office.com/SMTP.Send"))
    assert code == 400
    assert_ms_error(body, "invalid_scope", 1002012)


def test_device_flow(token_server):
    ts = token_server
    code, dev = post(ts, ts.device_url(), {"client_id": PUBLIC_CLIENT,
                                           "scope": M365_SCOPE})
    assert code == 200
    # RFC 8628 §3.2, without verification_uri_complete (Microsoft).
    assert set(dev) == {"user_code", "device_code", "verification_uri",
                        "expires_in", "interval", "message"}
    assert dev["verification_uri"] == "https://microsoft.com/devicelogin"
    assert dev["user_code"] in dev["message"]
    poll = {"grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": PUBLIC_CLIENT, "device_code": dev["device_code"]}
    code, body = post(ts, ts.token_url(), poll)
    assert code == 400
    assert_ms_error(body, "authorization_pending", 70016)
    ts.inject("slow_down", grant=poll["grant_type"])
    code, body = post(ts, ts.token_url(), poll)
    assert code == 400 and body["error"] == "slow_down"
    assert ts.pending_devices() == [dev["user_code"]]
    ts.approve_device(dev["user_code"], user="tim@example.test")
    code, body = post(ts, ts.token_url(), poll)
    assert code == 200, body
    assert body["refresh_token"] and body["access_token"]
    code, body = post(ts, ts.token_url(), poll)
    assert code == 400 and body["error"] == "invalid_grant"

    # Declined, and expired.
    _, dev = post(ts, ts.device_url(), {"client_id": PUBLIC_CLIENT,
                                        "scope": M365_SCOPE})
    ts.decline_device(dev["user_code"])
    code, body = post(ts, ts.token_url(), dict(
        poll, device_code=dev["device_code"]))
    assert code == 400
    assert_ms_error(body, "authorization_declined", 70020)
    ts.device_expires = 0
    _, dev = post(ts, ts.device_url(), {"client_id": PUBLIC_CLIENT,
                                        "scope": M365_SCOPE})
    code, body = post(ts, ts.token_url(), dict(
        poll, device_code=dev["device_code"]))
    assert code == 400
    assert_ms_error(body, "expired_token", 70019)


class Loopback:
    """The client's side of RFC 8252 §7.3: a listener on 127.0.0.1."""

    def __init__(self):
        outer = self
        self.queries = []

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.queries.append(dict(urllib.parse.parse_qsl(
                    urllib.parse.urlsplit(self.path).query)))
                body = b"signed in; you may close this window"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.srv = http.server.HTTPServer(("127.0.0.1", 0), H)
        self.uri = "http://127.0.0.1:%d/" % self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever,
                                  daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def test_pkce_loopback(token_server):
    ts = token_server
    lb = Loopback()
    try:
        verifier = secrets.token_urlsafe(48)
        state = secrets.token_urlsafe(12)
        q = {"client_id": PUBLIC_CLIENT, "response_type": "code",
             "redirect_uri": lb.uri, "scope": GOOGLE_SCOPE +
             " offline_access", "state": state,
             "code_challenge": pkce_s256(verifier),
             "code_challenge_method": "S256", "access_type": "offline",
             "prompt": "consent"}
        url = ts.authorize_url() + "?" + urllib.parse.urlencode(q)
        status, body = ts.browse(url)
        assert (status, body) == (200, b"signed in; you may close this "
                                       b"window")
        got = lb.queries[-1]
        assert set(got) == {"code", "state"} and got["state"] == state
        assert ts.authorize_requests[-1]["code_challenge_method"] == "S256"
        form = {"grant_type": "authorization_code",
                "client_id": PUBLIC_CLIENT, "code": got["code"],
                "redirect_uri": lb.uri}
        code, body = post(ts, ts.token_url(), dict(
            form, code_verifier=secrets.token_urlsafe(48)))
        assert code == 400
        assert_ms_error(body, "invalid_grant", 501481)
        code, body = post(ts, ts.token_url(), dict(form,
                                                   code_verifier=verifier))
        assert code == 200, body
        assert body["refresh_token"]
        assert ts.introspect(body["access_token"])["scope"] == GOOGLE_SCOPE
        code, body = post(ts, ts.token_url(), dict(form,
                                                   code_verifier=verifier))
        assert code == 400
        assert_ms_error(body, "invalid_grant", 54005)

        # The user declines; a plain challenge is refused.
        ts.consent(approve=False)
        ts.browse(url)
        assert lb.queries[-1]["error"] == "access_denied"
        assert lb.queries[-1]["state"] == state
        ts.consent(approve=True)
        ts.browse(url.replace("S256", "plain"))
        assert lb.queries[-1]["error"] == "invalid_request"
    finally:
        lb.close()


def test_faults(token_server):
    ts = token_server
    ts.hang_seconds = 5
    form = {"grant_type": "client_credentials", "client_id": APP_CLIENT,
            "client_secret": ts.app_secret, "scope": M365_APP_SCOPE}
    ts.inject("http500")
    code, body = post(ts, ts.token_url(), form)
    assert code == 500 and body.startswith(b"<html>")
    ts.inject("temporarily_unavailable")
    code, body = post(ts, ts.token_url(), form)
    assert code == 503
    assert_ms_error(body, "temporarily_unavailable", 90033)
    ts.inject("bad_json")
    with pytest.raises(ValueError):
        post(ts, ts.token_url(), form)
    ts.inject("close")
    with pytest.raises((urllib.error.URLError, ConnectionError)):
        post(ts, ts.token_url(), form)
    ts.inject("hang")
    t = time.monotonic()
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        post(ts, ts.token_url(), form, timeout=1)
    assert time.monotonic() - t >= 0.9
    code, body = post(ts, ts.token_url(), form)
    assert code == 200
    assert ts.count(grant="client_credentials") == 6
    # Down, then up again at the same address.
    url = ts.token_url()
    ts.stop()
    with pytest.raises(urllib.error.URLError) as e:
        post(ts, url, form)
    assert isinstance(e.value.reason, ConnectionRefusedError)
    ts.start()
    assert ts.token_url() == url
    assert post(ts, url, form)[0] == 200


def test_introspection_and_secrets(token_server):
    ts = token_server
    ts.access_lifetime = 1
    at = ts.issue_access_token("tim@example.test")
    code, body = curl(ts, ts.introspect_url, "token=" + at)
    assert code == 200 and body["active"] is True
    assert body["username"] == body["email"] == "tim@example.test"
    assert body["exp"] - time.time() <= 1
    time.sleep(1.1)
    assert curl(ts, ts.introspect_url, "token=" + at) == (200,
                                                         {"active": False})
    at2 = ts.issue_access_token()
    ts.revoke(at2)
    assert ts.introspect(at2) == {"active": False}
    text = "log line: token=%s secret=%s" % (at2, ts.app_secret)
    assert sorted(ts.leaks(text)) == sorted([at2, ts.app_secret])
    assert ts.leaks("nothing here") == []


# --- Postfix + Dovecot -------------------------------------------------------

def test_postfix_starttls_plain_delivers_bytes(postfix_smarthost, test_cert):
    ph = postfix_smarthost
    r = Raw(ph.ports["starttls"])
    assert r.greeting == "220 smarthost.example.test ESMTP Postfix"
    ehlo = r.cmd("EHLO client.example.test")
    assert "STARTTLS" in ehlo and "AUTH" not in ehlo  # smtpd_tls_auth_only
    assert r.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (USER, PASSWORD))) \
        .startswith("503 5.5.1")
    r.starttls(test_cert.client_context())
    assert "250-AUTH PLAIN LOGIN XOAUTH2 OAUTHBEARER" in r.cmd("EHLO c.test")
    assert r.cmd("AUTH PLAIN " + b64("\0%s\0%s" % (USER, PASSWORD))) == \
        "235 2.7.0 Authentication successful"
    assert r.cmd("MAIL FROM:<relay@example.test>").startswith("250 2.1.0")
    assert r.cmd("RCPT TO:<rcpt@example.test>").startswith("250 2.1.5")
    assert r.cmd("DATA").startswith("354 ")
    r.sock.sendall(MSG.replace(b"\r\n.", b"\r\n..") + b".\r\n")
    assert r.reply().startswith("250 2.0.0 Ok: queued as ")
    r.cmd("QUIT")
    r.close()
    (m,) = ph.wait_messages(1, "rcpt@example.test")
    assert m.raw.startswith(b"Return-Path: <relay@example.test>\n"
                            b"X-Original-To: rcpt@example.test\n"
                            b"Delivered-To: rcpt@example.test\n"
                            b"Received: from ")
    assert b"with ESMTPSA id" in m.raw
    assert strip_trace(m.raw) == MSG
    assert "sasl_method=PLAIN, sasl_username=relay@example.test" in \
        ph.maillog()


def test_postfix_implicit_tls_login_and_cram(tmp_path, test_cert):
    users = {USER: PASSWORD, "cram@example.test": ("cram-pw", "CRAM-MD5")}
    with PostfixSmarthost(test_cert, users=users, logdir=tmp_path,
                          mechanisms="plain login cram-md5") as ph:
        with smtplib.SMTP_SSL("127.0.0.1", ph.ports["implicit"], timeout=20,
                              context=test_cert.client_context()) as m:
            m.ehlo()
            assert m.esmtp_features["auth"].split() == ["PLAIN", "LOGIN",
                                                         "CRAM-MD5"]
            m.user, m.password = USER, PASSWORD
            assert m.auth("LOGIN", m.auth_login) == (
                235, b"2.7.0 Authentication successful")
            m.sendmail(USER, ["rcpt@example.org"], MSG)
        with smtp_tls(ph.ports["starttls"], test_cert) as m:
            m.user, m.password = "cram@example.test", "cram-pw"
            assert m.auth("CRAM-MD5", m.auth_cram_md5)[0] == 235
            m.sendmail("cram@example.test", ["rcpt@example.test"], MSG)
        with smtp_tls(ph.ports["starttls"], test_cert) as m:
            m.user, m.password = "cram@example.test", "not-cram-pw"
            with pytest.raises(smtplib.SMTPAuthenticationError) as e:
                m.auth("CRAM-MD5", m.auth_cram_md5)
            assert e.value.smtp_code == 535
        assert [strip_trace(x.raw) for x in ph.wait_messages(2)] == [MSG] * 2


def test_postfix_xoauth2_with_token_from_token_server(postfix_smarthost,
                                                      token_server,
                                                      test_cert):
    ph, ts = postfix_smarthost, token_server
    rt = ts.issue_refresh_token(USER)
    code, body = post(ts, ts.token_url(), {
        "grant_type": "refresh_token", "client_id": PUBLIC_CLIENT,
        "refresh_token": rt, "scope": M365_SCOPE})
    assert code == 200
    tok = body["access_token"]
    before = ts.count("introspect")
    with smtp_tls(ph.ports["starttls"], test_cert) as m:
        assert m.docmd("AUTH", "XOAUTH2 " + b64(xoauth2(USER, tok))) == (
            235, b"2.7.0 Authentication successful")
        m.sendmail(USER, ["rcpt@example.test"], MSG)
    with smtp_tls(ph.ports["starttls"], test_cert) as m:
        # Two-step form: AUTH OAUTHBEARER, 334, then the response.
        assert m.docmd("AUTH", "OAUTHBEARER")[0] == 334
        assert m.docmd(b64(oauthbearer(USER, tok, port=ph.ports[
            "starttls"]))) == (235, b"2.7.0 Authentication successful")
    # Dovecot asked the token server each time (RFC 7662 POST).
    assert ts.count("introspect") == before + 2
    intro = [r for r in ts.requests if r.endpoint == "introspect"]
    assert intro[-1].method == "POST" and intro[-1].form["token"] == tok
    assert strip_trace(ph.wait_messages(1)[0].raw) == MSG
    assert "sasl_method=XOAUTH2, sasl_username=relay@example.test" in \
        ph.maillog()


def _bearer_fails(port, cert, mech, user, tok):
    """Dovecot answers a bad token as Google does: 334 + JSON, then 535
    after the client's empty line (XOAUTH2) or %x01 (OAUTHBEARER)."""
    ir = xoauth2(user, tok) if mech == "XOAUTH2" else oauthbearer(user, tok)
    with smtp_tls(port, cert) as m:
        code, chal = m.docmd("AUTH", "%s %s" % (mech, b64(ir)))
        assert code == 334, chal
        status = json.loads(base64.b64decode(chal))["status"]
        code, text = m.docmd("" if mech == "XOAUTH2" else "AQ==")
        assert code == 535 and text.startswith(
            b"5.7.8 Error: authentication failed"), text
        return status


def test_postfix_expired_revoked_and_foreign_tokens(postfix_smarthost,
                                                    token_server, test_cert):
    ph, ts = postfix_smarthost, token_server
    port = ph.ports["starttls"]
    expired = ts.issue_access_token(USER, lifetime=0)
    revoked = ts.issue_access_token(USER)
    ts.revoke(revoked)
    other = ts.issue_access_token("other@example.test")
    assert _bearer_fails(port, test_cert, "XOAUTH2", USER, expired) == "401"
    assert _bearer_fails(port, test_cert, "XOAUTH2", USER, revoked) == "401"
    assert _bearer_fails(port, test_cert, "OAUTHBEARER", USER,
                         revoked) == "invalid_token"
    assert _bearer_fails(port, test_cert, "XOAUTH2", USER, other) == "401"
    log = ph.dovecot_log()
    assert log.count("Introspection failed: Provided token is not valid") \
        == 3
    assert "Username 'relay@example.test' did not match " \
           "'other@example.test'" in log


def test_postfix_recipients_and_controls(tmp_path, test_cert):
    with PostfixSmarthost(test_cert, logdir=tmp_path, reject={
            "full@example.test": "452 4.2.2 Mailbox full"},
            mailboxes=[USER, "rcpt@example.test", "full@example.test"]) as ph:
        with smtp_tls(ph.ports["starttls"], test_cert) as m:
            m.login(USER, PASSWORD)
            m.mail(USER)
            assert m.rcpt("full@example.test") == (
                452, b"4.2.2 <full@example.test>: Recipient address "
                     b"rejected: Mailbox full")
            assert m.rcpt("nobody@example.test") == (
                550, b"5.1.1 <nobody@example.test>: Recipient address "
                     b"rejected: User unknown in virtual mailbox table")
            # Other domains resolve to the error(8) transport: smtpd
            # refuses them at once.
            assert m.rcpt("x@elsewhere.test") == (
                550, b"5.7.1 <x@elsewhere.test>: Recipient address "
                     b"rejected: this test smarthost sends nothing out")
            assert m.rcpt("rcpt@example.test") == (250, b"2.1.5 Ok")
        ph.set_reply("rcpt@example.test", "550 5.2.1 Mailbox disabled")
        ph.slow("rcpt", 1)
        with smtp_tls(ph.ports["starttls"], test_cert) as m:
            m.login(USER, PASSWORD)
            m.mail(USER)
            t = time.monotonic()
            assert m.rcpt("rcpt@example.test") == (
                550, b"5.2.1 <rcpt@example.test>: Recipient address "
                     b"rejected: Mailbox disabled")
            assert time.monotonic() - t >= 0.9
        ph.set_reply("rcpt@example.test", None)
        ph.slow("rcpt", 0)

        # Upstream down, then up again.
        ph.stop()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", ph.ports["starttls"]), 5)
        ph.start()
        with smtp_tls(ph.ports["starttls"], test_cert) as m:
            m.login(USER, PASSWORD)
            assert m.sendmail(USER, ["rcpt@example.test"], MSG) == {}
        assert len(ph.wait_messages(1, "rcpt@example.test")) == 1
        assert ph.queue_count() == 0
    # Closed: the logs are in tmp_path, the directory is gone.
    assert not os.path.exists(ph.dir)
    assert (tmp_path / "smarthost-maillog").read_text().count(
        "daemon started") == 2


def test_postfix_auth_down(postfix_smarthost, test_cert):
    ph = postfix_smarthost
    m = smtp_tls(ph.ports["starttls"], test_cert)
    ph.stop_auth()
    assert m.docmd("AUTH", "PLAIN " + b64("\0%s\0%s" % (USER, PASSWORD))) \
        == (454, b"4.7.0 Temporary authentication failure: (reason "
                 b"unavailable)")
    m.close()
    with pytest.raises(smtplib.SMTPServerDisconnected):
        smtp_tls(ph.ports["starttls"], test_cert)
    assert "fatal: no SASL authentication mechanisms" in ph.maillog()
    ph.start_auth()
    with smtp_tls(ph.ports["starttls"], test_cert) as m:
        assert m.login(USER, PASSWORD)[0] == 235


# --- aiosmtpd ----------------------------------------------------------------

def test_aiosmtpd_smarthost(aiosmtpd_smarthost, test_cert):
    a = aiosmtpd_smarthost
    a.reject["busy@example.test"] = "452 4.2.2 Mailbox full"
    with smtplib.SMTP("127.0.0.1", a.port, timeout=10) as m:
        m.ehlo()
        assert "auth" not in m.esmtp_features
        assert m.docmd("AUTH", "PLAIN " + b64("\0%s\0%s" % (USER, PASSWORD))
                       ) == (530, b"Must issue a STARTTLS command first")
        m.starttls(context=test_cert.client_context())
        m.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            m.login(USER, "wrong")
        assert (e.value.smtp_code, e.value.smtp_error) == (
            535, b"5.7.8 Authentication credentials invalid")
        m.login(USER, PASSWORD)
        m.mail(USER)
        assert m.rcpt("busy@example.test") == (452, b"4.2.2 Mailbox full")
        assert m.rcpt("rcpt@example.test")[0] == 250
        m.data(MSG)
    (msg,) = a.wait_messages(1)
    assert (msg.mail_from, msg.rcpt_tos, msg.raw, msg.login) == (
        USER, ["rcpt@example.test"], MSG, USER)
    assert os.listdir(a.maildir + "/new") != []


def test_aiosmtpd_implicit_tls(tmp_path, test_cert):
    with AiosmtpdSmarthost(test_cert, tmp_path / "Maildir",
                           implicit=True) as a:
        with smtplib.SMTP_SSL("127.0.0.1", a.port, timeout=10,
                              context=test_cert.client_context()) as m:
            m.login(USER, PASSWORD)
            m.sendmail(USER, ["rcpt@example.test"], MSG)
        assert a.wait_messages(1)[0].raw == MSG
        assert a.auth_calls == [("PLAIN", USER.encode(), True)]


# --- Microsoft 365 and Gmail -------------------------------------------------

def test_m365_replies(m365_server, token_server, test_cert):
    ms, ts = m365_server, token_server
    ctx = test_cert.client_context()
    good = ts.issue_access_token(USER)
    r = Raw(ms.port)
    assert r.greeting.startswith("220 PH7PR17CA0001.outlook.office365.com "
                                 "Microsoft ESMTP MAIL Service ready at ")
    ehlo = r.cmd("EHLO client.example.test")
    assert "250-STARTTLS" in ehlo and "AUTH" not in ehlo
    assert r.cmd("AUTH XOAUTH2 " + b64(xoauth2(USER, good))) == \
        "504 5.7.4 Unrecognized authentication type [%s]" % M365_MBX
    assert r.cmd("MAIL FROM:<%s>" % USER) == \
        "451 5.7.3 STARTTLS is required to send mail [%s]" % M365_MBX
    r.starttls(ctx)
    ehlo = r.cmd("EHLO client.example.test")
    assert ehlo.split("\r\n")[1:] == [
        "250-SIZE 157286400", "250-PIPELINING", "250-DSN",
        "250-ENHANCEDSTATUSCODES", "250-AUTH LOGIN XOAUTH2", "250-8BITMIME",
        "250-BINARYMIME", "250-CHUNKING", "250 SMTPUTF8"]
    assert r.cmd("MAIL FROM:<%s>" % USER).startswith("530 5.7.57 ")
    # A bad token: 535 5.7.3 at once, inline or after 334.
    assert r.cmd("AUTH XOAUTH2 " + b64(xoauth2(USER, "nope"))) == M365_535
    assert r.cmd("AUTH XOAUTH2") == "334 "
    assert r.cmd(b64(xoauth2("other@example.test", good))) == M365_535
    assert r.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert r.cmd(b64(USER)) == "334 UGFzc3dvcmQ6"
    assert r.cmd(b64(PASSWORD)) == ("535 5.7.139 Authentication "
                                    "unsuccessful, basic authentication is "
                                    "disabled. [%s]" % M365_MBX)
    assert r.cmd("AUTH XOAUTH2") == "334 "
    assert r.cmd(b64(xoauth2(USER, good))) == \
        "235 2.7.0 Authentication successful"
    assert r.cmd("MAIL FROM:<someone@example.test>") == (
        "550 5.7.60 SMTP; Client does not have permissions to send as "
        "this sender [%s]" % M365_MBX)
    assert r.cmd("MAIL FROM:<%s> SIZE=%d" % (USER, len(MSG))) == \
        "250 2.1.0 Sender OK"
    assert r.cmd("RCPT TO:<rcpt@example.test>") == "250 2.1.5 Recipient OK"
    assert r.cmd("DATA") == "354 Start mail input; end with <CRLF>.<CRLF>"
    r.sock.sendall(MSG.replace(b"\r\n.", b"\r\n..") + b".\r\n")
    assert re.fullmatch(r"250 2\.0\.0 OK <[0-9a-f]+@%s> \[Hostname=%s\]"
                        % (re.escape(M365_MBX), re.escape(M365_MBX)),
                        r.reply())
    assert r.cmd("QUIT") == "221 2.0.0 Service closing transmission channel"
    r.close()
    assert ms.messages[0][:4] == (USER, ["rcpt@example.test"], MSG, USER)
    assert ("AUTH XOAUTH2 " + b64(xoauth2(USER, "nope"))) in \
        [line for _, line in ms.commands]


def test_m365_switches(m365_server, token_server, test_cert):
    ms, ts = m365_server, token_server
    ctx = test_cert.client_context()

    def session(tok, user=USER):
        r = Raw(ms.port)
        r.cmd("EHLO c")
        r.starttls(ctx)
        r.cmd("EHLO c")
        return r, r.cmd("AUTH XOAUTH2 " + b64(xoauth2(user, tok)))

    good = ts.issue_access_token(USER)
    ms.smtp_auth_disabled = True
    r, rep = session(good)
    assert rep == ("535 5.7.139 Authentication unsuccessful, "
                   "SmtpClientAuthentication is disabled for the Tenant. "
                   "Visit https://aka.ms/smtp_auth_disabled for more "
                   "information. [%s]" % M365_MBX)
    r.close()
    ms.smtp_auth_disabled = False
    ms.expire_soon = 600
    r, rep = session(good)
    assert rep == "235 2.7.0 Authentication successful"
    r.close()
    soon = ts.issue_access_token(USER, lifetime=300)
    r, rep = session(soon)
    assert rep == ("501 5.5.127 Invalid XOAUTH2 auth data - Token will "
                   "expire soon [%s]" % M365_MBX)
    r.close()
    ms.expire_soon = None

    # Four sessions of one mailbox at once: the fourth is refused at the
    # final dot; after one leaves, a new one may send again.
    opened = [session(good)[0] for _ in range(4)]
    replies = []
    for r in opened:
        r.cmd("MAIL FROM:<%s>" % USER)
        r.cmd("RCPT TO:<rcpt@example.test>")
        r.cmd("DATA")
        r.sock.sendall(MSG + b".\r\n")
        replies.append(r.reply())
    assert [x.split(" ")[0] for x in replies] == ["250", "250", "250", "432"]
    assert replies[3] == ("432 4.3.2 STOREDRV.ClientSubmit; sender thread "
                          "limit exceeded [Hostname=%s]" % M365_MBX)
    for r in opened:
        r.close()
    assert wait_until(lambda: ms.open_sessions() == 0, 5)
    r, rep = session(good)
    assert rep == "235 2.7.0 Authentication successful"
    assert not ms.sessions[-1].over_limit
    r.close()
    assert len(ms.messages) == 3


def test_gmail_replies(gmail_server, token_server, test_cert):
    gs, ts = gmail_server, token_server
    ctx = test_cert.client_context()
    good = ts.issue_access_token(USER, scope=GOOGLE_SCOPE)
    m365_token = ts.issue_access_token(USER)
    r = Raw(gs.port)
    assert re.fullmatch(r"220 smtp\.gmail\.com ESMTP [0-9a-f]{12} - gsmtp",
                        r.greeting)
    assert r.cmd("EHLO c").startswith("250-smtp.gmail.com at your service, "
                                      "[127.0.0.1]\r\n")
    assert r.cmd("AUTH PLAIN =").startswith(
        "530 5.7.0 Must issue a STARTTLS command first.")
    r.starttls(ctx)
    assert "\r\n250-AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER " \
           "XOAUTH\r\n" in r.cmd("EHLO c")
    # XOAUTH2, bad token (one for another scope): 334 + JSON, then 535.
    assert r.cmd("AUTH XOAUTH2 " + b64(xoauth2(USER, m365_token))) == \
        "334 " + GOOGLE_401
    assert GMAIL_535.match(r.cmd(""))
    assert r.cmd("AUTH XOAUTH2 " + b64(xoauth2("other@example.test",
                                                good))) == "334 " + GOOGLE_401
    assert GMAIL_535.match(r.cmd(""))
    # OAUTHBEARER (RFC 7628 §3.2.3): %x01 ends it with 535, * with 501.
    assert r.cmd("AUTH OAUTHBEARER " + b64(oauthbearer(USER, "bad"))) == \
        "334 " + GOOGLE_INVALID
    assert GMAIL_535.match(r.cmd("AQ=="))
    assert r.cmd("AUTH OAUTHBEARER " + b64(oauthbearer(USER, "bad"))) == \
        "334 " + GOOGLE_INVALID
    assert r.cmd("*").startswith("501 5.7.0 ")
    # 512 octets: a long token inline is a syntax error; after 334 it fits.
    ts.token_bytes = 900
    long_tok = ts.issue_access_token(USER, scope=GOOGLE_SCOPE)
    line = "AUTH XOAUTH2 " + b64(xoauth2(USER, long_tok))
    assert len(line) + 2 > 512
    assert r.cmd(line).startswith("555 5.5.2 Syntax error")
    assert r.cmd("AUTH XOAUTH2") == "334 "
    assert r.cmd(b64(xoauth2(USER, long_tok))) == "235 2.7.0 Accepted"
    assert r.cmd("MAIL FROM:<%s>" % USER).startswith("250 2.1.0 OK ")
    assert r.cmd("RCPT TO:<rcpt@example.test>").startswith("250 2.1.5 OK ")
    # CHUNKING (RFC 3030 §2): the chunk follows the BDAT line at once.
    r.sock.sendall(b"BDAT 20\r\n" + MSG[:20])
    assert r.reply().startswith("250 2.0.0 20 octets received ")
    r.sock.sendall(b"BDAT %d LAST\r\n" % (len(MSG) - 20) + MSG[20:])
    assert re.fullmatch(r"250 2\.0\.0 OK  \d+ [0-9a-f]{12} - gsmtp",
                        r.reply())
    r.close()
    (msg,) = gs.wait_messages(1)
    assert msg.data == MSG and msg.user == USER

    # A good token inline, with smtplib; OAUTHBEARER without a= (RFC 7628
    # §3.1: the token's user).
    with smtp_tls(gs.port, test_cert) as m:
        assert m.auth("XOAUTH2", lambda c=None: xoauth2(USER, good)) == (
            235, b"2.7.0 Accepted")
    with smtp_tls(gs.port, test_cert) as m:
        assert m.docmd("AUTH", "OAUTHBEARER " + b64(
            "n,,\x01auth=Bearer %s\x01\x01" % good)) == (235,
                                                        b"2.7.0 Accepted")
    assert [s.user for s in gs.sessions if s.user] == [USER] * 3
