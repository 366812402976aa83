"""Self-tests of the upstream test servers: each piece with real clients
(smtplib, curl, urllib, a raw socket) and exact outcomes.

- oauth_server.TokenServer: the grants, rotation, invalid_grant, the
  device flow, PKCE with a loopback redirect, introspection, faults.
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

from net_util import b64
from oauth_server import (APP_CLIENT, GOOGLE_SCOPE, M365_APP_SCOPE,
                          M365_SCOPE, PUBLIC_CLIENT, pkce_s256)

# The fixtures (pytest finds them in this module's namespace).
from net_util import test_cert  # noqa: F401,E402
from oauth_server import token_server  # noqa: F401,E402

MSG = (b"From: <relay@example.test>\r\nTo: <rcpt@example.test>\r\n"
       b"Subject: smarthost self-test\r\nMessage-ID: <st.1@example.test>\r\n"
       b"\r\nline one\r\n.leading dot\r\n\r\nlast line\r\n")


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
