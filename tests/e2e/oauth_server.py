"""A test OAuth2 token server in the shapes of the Microsoft identity
platform v2 endpoint (INTEROP.md "Relaying to Microsoft 365 and Google"),
over HTTPS on 127.0.0.1 at a free port, in a thread of the test process.

Endpoints (TENANT: any tenant name unless `tenant=` restricts it):
  POST /TENANT/oauth2/v2.0/token       grant_type = refresh_token,
       client_credentials, authorization_code (PKCE S256),
       urn:ietf:params:oauth:grant-type:device_code
  POST /TENANT/oauth2/v2.0/devicecode  RFC 8628 §3.2 (no
       verification_uri_complete, like Microsoft)
  GET  /TENANT/oauth2/v2.0/authorize   RFC 6749 §4.1 + RFC 7636, to an
       http://127.0.0.1:PORT/ or http://localhost:PORT/ redirect_uri only
       (RFC 8252 §7.3); answers as set by consent() (see browse())
  POST /introspect (token=...), GET /introspect?token=..., or GET with
       "Authorization: Bearer": RFC 7662 §2.2 {"active", "username",
       "email", "exp", "scope", "client_id", ...} (Dovecot's oauth2 passdb)

Errors are Microsoft's JSON: {"error", "error_description": "AADSTSn:
... \\r\\nTrace ID: ...\\r\\nCorrelation ID: ...\\r\\nTimestamp: ...",
"error_codes": [n], "timestamp", "trace_id", "correlation_id",
"error_uri"}.  Behaviour worth knowing:
  - refresh_token needs client_id, refresh_token and scope (no scope:
    400 invalid_request AADSTS900144); every use returns a new refresh
    token and the old one is dead from then on (400 invalid_grant
    AADSTS70000).  A confidential client must also authenticate.
  - client_credentials: client_id + client_secret (body or HTTP Basic),
    scope ending "/.default"; a wrong secret: 401 invalid_client
    AADSTS7000215.  No refresh token.
  - a refresh token comes back from the code and device grants only if
    the scope asked for offline_access (as Microsoft does).

Python control (the test's side; every method is thread-safe):
  issue_refresh_token(user) -> a refresh token to seed a token file
  issue_access_token(user, lifetime=None) -> an access token
  wait_pending_device() -> the user_code a client just asked for
  approve_device(user_code=None, user=...) / decline_device(user_code)
  consent(approve=True, user=...) then browse(authorize_url) -> what the
      client's loopback listener answered (a browser's part, done here)
  revoke(token, code=70000)  refresh token -> invalid_grant with
      AADSTS70000 (revoked) or AADSTS700082 (expired, inactive); access
      token -> introspection says active=false
  access_lifetime = seconds (the expires_in of tokens issued from now)
  inject(kind, count=1, endpoint="token", grant=None): the next count
      matching requests get kind: "http500", "hang" (no answer for
      hang_seconds or until stop), "close" (connection closed at once),
      "temporarily_unavailable" (503), "slow_down" (device polls),
      "bad_json" (200 with a body that is not JSON)
  introspect(token) -> the RFC 7662 dict (for in-process validators)
  requests: every request (Req: endpoint, form, status, reply)
  count(endpoint="token", grant=None, status=None)
  secrets() / leaks(text): every secret issued or received, and those
      found in text (a log must contain none)

  stop() / start(): the endpoint down, then up on the same port

Tokens are for DEFAULT_USER (relay@example.test, the smarthosts' user)
unless told otherwise; PUBLIC_CLIENT is a public client (device, PKCE,
refresh), APP_CLIENT a confidential one with secret app_secret
(client_credentials; its tokens are DEFAULT_USER's).

Fixture `token_server`: a started TokenServer (uses net_util's
test_cert: import both), stopped at teardown, also when the test failed.
"""
import base64
import collections
import datetime
import hashlib
import http.server
import json
import secrets
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
import uuid

import pytest


GRANT_DEVICE = "urn:ietf:params:oauth:grant-type:device_code"
M365_SCOPE = "https://outlook.office.com/SMTP.Send offline_access"
M365_APP_SCOPE = "https://outlook.office365.com/.default"
GOOGLE_SCOPE = "https://mail.google.com/"
MS_DEVICE_URI = "https://microsoft.com/devicelogin"
# A public client (device and PKCE flows) and a confidential one (app-only).
DEFAULT_USER = "relay@example.test"  # smarthost_util's USER as well
PUBLIC_CLIENT = "9e5f94bc-e8a4-4e73-b8be-63364c29d753"
APP_CLIENT = "2f6c3b2e-7d1a-4c51-9a3e-0b5d6a1f8c44"

# The texts for the errors this server gives, after Microsoft's (the
# numbers are Microsoft's, except two stand-ins: Microsoft documents
# authorization_declined and slow_down without an AADSTS number, so 70020
# and 5000 here are ours).
AADSTS = {
    70000: "The provided grant has expired due to it being revoked, a "
           "fresh auth token is needed. The user might have changed or "
           "reset their password.",
    700082: "The refresh token has expired due to inactivity. The token "
            "was issued on {issued} and was inactive for 90.00:00:00.",
    9002313: "Invalid request. Request is malformed or invalid.",
    900144: "The request body must contain the following parameter: "
            "'{param}'.",
    7000215: "Invalid client secret provided. Ensure the secret being "
             "sent in the request is the client secret value, not the "
             "client secret ID, for a secret added to app '{client}'.",
    7000218: "The request body must contain the following parameter: "
             "'client_assertion' or 'client_secret'.",
    700016: "Application with identifier '{client}' was not found in the "
            "directory '{tenant}'.",
    90002: "Tenant '{tenant}' not found.",
    1002012: "The provided value for scope {scope} is not valid. Client "
             "credential flows must have a scope value with /.default "
             "suffixed to the resource identifier (application ID URI).",
    70003: "The app requested an unsupported grant type.",
    70011: "The provided value for the input parameter 'scope' isn't "
           "valid.",
    70016: "OAuth 2.0 device flow error. Authorization is pending. "
           "Continue polling.",
    70019: "Verification code expired.",
    70020: "The end user denied the authorization request.",
    90033: "A transient error has occurred. Please try again.",
    54005: "OAuth2 Authorization code was already redeemed, please retry "
           "with a new valid code or use an existing refresh token.",
    70008: "The provided authorization code or refresh token has expired "
           "due to inactivity. Send a new interactive authorization "
           "request for this user and resource.",
    501481: "The Code_Verifier does not match the code_challenge supplied "
            "in the authorization request.",
    50148: "The code_verifier does not match the code_challenge supplied "
           "in the authorization request for PKCE.",
    65004: "User declined to consent to access the app.",
    70002: "The client does not exist or is not enabled for consumers.",
    5000: "OAuth2 slow_down: poll the device code at most once per "
          "interval.",
    900561: "The endpoint only accepts POST requests.",
    50011: "The redirect URI '{uri}' specified in the request does not "
           "match the redirect URIs configured for the application.",
}

Req = collections.namedtuple(
    "Req", "time method path endpoint form headers status reply")


def ms_time(t=None):
    return datetime.datetime.fromtimestamp(
        time.time() if t is None else t, datetime.timezone.utc).strftime(
        "%Y-%m-%d %H:%M:%SZ")


def ms_error(error, code, **fmt):
    """Microsoft's error body: the AADSTS text, then trace and correlation
    ids and a timestamp in error_description as well."""
    trace, corr, ts = str(uuid.uuid4()), str(uuid.uuid4()), ms_time()
    text = AADSTS[code].format(**fmt) if fmt else AADSTS[code]
    return {
        "error": error,
        "error_description": "AADSTS%d: %s\r\nTrace ID: %s\r\n"
                             "Correlation ID: %s\r\nTimestamp: %s"
                             % (code, text, trace, corr, ts),
        "error_codes": [code],
        "timestamp": ts,
        "trace_id": trace,
        "correlation_id": corr,
        "error_uri": "https://login.microsoftonline.com/error?code=%d" % code,
    }


def pkce_s256(verifier):
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))), no '='."""
    return base64.urlsafe_b64encode(
        hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(
        b"=").decode("ascii")


class _Token:
    def __init__(self, kind, value, user, client_id, scope, exp=None):
        self.kind, self.value, self.user = kind, value, user
        self.client_id, self.scope, self.exp = client_id, scope, exp
        self.issued = time.time()
        self.dead = None  # None, or the AADSTS code to answer with


class TokenServer:
    def __init__(self, cert, host="127.0.0.1", tenant=None,
                 access_lifetime=3600, token_bytes=32, device_interval=1,
                 device_expires=900, enforce_interval=False,
                 hang_seconds=60):
        self.cert = cert
        self.host = host
        self.tenant = tenant
        self.access_lifetime = access_lifetime
        self.token_bytes = token_bytes
        self.device_interval = device_interval
        self.device_expires = device_expires
        self.enforce_interval = enforce_interval
        self.hang_seconds = hang_seconds
        self.lock = threading.RLock()
        self.stopping = threading.Event()
        self.tokens = {}        # value -> _Token (access and refresh)
        self.devices = {}       # device_code -> dict
        self.codes = {}         # authorization code -> dict
        self.requests = []
        self.authorize_requests = []  # the query of each /authorize
        self._secrets = set()
        self.clients = {PUBLIC_CLIENT: {"secret": None, "app_user": None}}
        self.app_secret = "appsecret~" + secrets.token_urlsafe(24)
        self.add_client(APP_CLIENT, secret=self.app_secret,
                        app_user=DEFAULT_USER)
        self._faults = []       # [kind, count, endpoint, grant]
        self._consent = ("approve", DEFAULT_USER)
        self.httpd = None
        self.thread = None
        self.port = None

    # --- life -----------------------------------------------------------
    def start(self):
        """Serve (again: on the same port after a stop(), so a client
        sees the endpoint go down and come back)."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.cert.cert, self.cert.key)
        self.stopping.clear()
        self.httpd = _HTTPServer((self.host, self.port or 0), _Handler)
        self.httpd.ctx = ctx
        self.httpd.owner = self
        self.httpd.conns = set()
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       name="token-server", daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.httpd is None:
            return
        self.stopping.set()
        self.httpd.shutdown()
        with self.lock:
            conns = list(self.httpd.conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.httpd.server_close()
        self.thread.join(10)
        self.httpd = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- addresses ------------------------------------------------------
    @property
    def url(self):
        h = "[%s]" % self.host if ":" in self.host else self.host
        return "https://%s:%d" % (h, self.port)

    def _base(self, tenant):
        return "%s/%s/oauth2/v2.0" % (self.url, tenant or self.tenant or
                                      "common")

    def token_url(self, tenant=None):
        return self._base(tenant) + "/token"

    def device_url(self, tenant=None):
        return self._base(tenant) + "/devicecode"

    def authorize_url(self, tenant=None):
        return self._base(tenant) + "/authorize"

    @property
    def introspect_url(self):
        return self.url + "/introspect"

    # --- control --------------------------------------------------------
    def add_client(self, client_id=None, secret=None, app_user=None):
        client_id = client_id or str(uuid.uuid4())
        with self.lock:
            self.clients[client_id] = {"secret": secret,
                                       "app_user": app_user}
            if secret:
                self._secrets.add(secret)
        return client_id

    def _new(self, prefix):
        v = prefix + secrets.token_urlsafe(self.token_bytes)
        self._secrets.add(v)
        return v

    def issue_refresh_token(self, user=DEFAULT_USER,
                            client_id=PUBLIC_CLIENT, scope=M365_SCOPE):
        with self.lock:
            t = _Token("refresh", self._new("rt-"), user, client_id, scope)
            self.tokens[t.value] = t
            return t.value

    def issue_access_token(self, user=DEFAULT_USER,
                           client_id=PUBLIC_CLIENT, scope=M365_SCOPE,
                           lifetime=None):
        with self.lock:
            life = self.access_lifetime if lifetime is None else lifetime
            t = _Token("access", self._new("at-"), user, client_id,
                       _resource_scope(scope), time.time() + life)
            self.tokens[t.value] = t
            return t.value

    def revoke(self, token=None, user=None, code=70000):
        """Kill one token, or every token of user.  A refresh token then
        gets invalid_grant with AADSTS<code> (70000 revoked, 700082
        inactive); an access token is active=false at introspection."""
        assert code in (70000, 700082)
        with self.lock:
            for t in self.tokens.values():
                if t.value == token or (user and t.user == user):
                    t.dead = code

    def consent(self, approve=True, user=DEFAULT_USER):
        """What the next /authorize answers: a code for user, or
        access_denied (the user declined)."""
        with self.lock:
            self._consent = ("approve" if approve else "decline", user)

    def approve_device(self, user_code=None, user=DEFAULT_USER):
        return self._device_decide(user_code, ("approved", user))

    def decline_device(self, user_code=None):
        return self._device_decide(user_code, ("declined", None))

    def _device_decide(self, user_code, state):
        with self.lock:
            pend = [d for d in self.devices.values()
                    if d["state"] == "pending" and
                    (user_code is None or d["user_code"] == user_code)]
            if not pend:
                raise KeyError("no pending device code %r" % user_code)
            d = pend[-1]
            d["state"], d["user"] = state
            return d["user_code"]

    def wait_pending_device(self, timeout=10):
        """The user_code of a device code that waits for the user, once a
        client has asked for one (else AssertionError)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            pend = self.pending_devices()
            if pend:
                return pend[-1]
            time.sleep(0.02)
        raise AssertionError("no device code requested in %ss" % timeout)

    def pending_devices(self):
        with self.lock:
            return [d["user_code"] for d in self.devices.values()
                    if d["state"] == "pending"]

    def inject(self, kind, count=1, endpoint="token", grant=None):
        assert kind in ("http500", "hang", "close", "temporarily_unavailable",
                        "slow_down", "bad_json"), kind
        with self.lock:
            self._faults.append([kind, count, endpoint, grant])

    def clear_faults(self):
        with self.lock:
            self._faults = []

    def _take_fault(self, endpoint, grant):
        with self.lock:
            for f in self._faults:
                if f[2] == endpoint and f[3] in (None, grant) and f[1] > 0:
                    f[1] -= 1
                    return f[0]
        return None

    # --- introspection (RFC 7662 §2.2) ----------------------------------
    def introspect(self, token):
        with self.lock:
            self._secrets.add(token)
            t = self.tokens.get(token)
            if (t is None or t.kind != "access" or t.dead is not None or
                    time.time() >= t.exp):
                return {"active": False}
            return {"active": True, "token_type": "Bearer",
                    "scope": t.scope, "client_id": t.client_id,
                    "username": t.user, "email": t.user, "sub": t.user,
                    "exp": int(t.exp), "iat": int(t.issued),
                    "iss": self.url + "/", "aud": t.scope.split(" ")[0]}

    # --- log ------------------------------------------------------------
    def count(self, endpoint="token", grant=None, status=None):
        with self.lock:
            return sum(1 for r in self.requests if r.endpoint == endpoint and
                       (grant is None or r.form.get("grant_type") == grant)
                       and (status is None or r.status == status))

    def secrets(self):
        with self.lock:
            return sorted(s for s in self._secrets if s)

    def leaks(self, text):
        """Every secret this server issued or received that text holds."""
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        return [s for s in self.secrets() if s in text]

    # --- the endpoints (called by _Handler, under no lock) ---------------
    def _tenant_ok(self, tenant):
        return self.tenant is None or tenant in (self.tenant, "common",
                                                 "organizations")

    def _client(self, form, headers, tenant, need_secret):
        """(client_id, error reply or None).  RFC 6749 §2.3.1: the secret
        in the body or in HTTP Basic."""
        cid, sec = form.get("client_id"), form.get("client_secret")
        auth = headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                u, _, p = base64.b64decode(auth[6:]).decode().partition(":")
                cid = cid or urllib.parse.unquote_plus(u)
                sec = sec or urllib.parse.unquote_plus(p)
            except ValueError:
                pass
        if sec:
            self._secrets.add(sec)
        if not cid:
            return None, (400, ms_error("invalid_request", 900144,
                                        param="client_id"))
        c = self.clients.get(cid)
        if c is None:
            return None, (400, ms_error("unauthorized_client", 700016,
                                        client=cid, tenant=tenant))
        if c["secret"] is not None or need_secret:
            if not sec:
                return None, (401, ms_error("invalid_client", 7000218))
            if c["secret"] is None or not secrets.compare_digest(
                    sec.encode(), c["secret"].encode()):
                return None, (401, ms_error("invalid_client", 7000215,
                                            client=cid))
        return cid, None

    def _grant(self, user, cid, scope, refresh):
        life = self.access_lifetime
        at = _Token("access", self._new("at-"), user, cid,
                    _resource_scope(scope), time.time() + life)
        self.tokens[at.value] = at
        body = {"token_type": "Bearer", "scope": _resource_scope(scope),
                "expires_in": life, "ext_expires_in": life,
                "access_token": at.value}
        if refresh:
            rt = _Token("refresh", self._new("rt-"), user, cid, scope)
            self.tokens[rt.value] = rt
            body["refresh_token"] = rt.value
        return 200, body

    def token(self, tenant, form, headers):
        grant = form.get("grant_type")
        for k in ("refresh_token", "code", "code_verifier", "device_code"):
            if form.get(k):
                self._secrets.add(form[k])
        if not grant:
            return 400, ms_error("invalid_request", 900144,
                                 param="grant_type")
        if grant == "client_credentials":
            return self._client_credentials(tenant, form, headers)
        if grant == "refresh_token":
            return self._refresh(tenant, form, headers)
        if grant == GRANT_DEVICE:
            return self._device_poll(tenant, form, headers)
        if grant == "authorization_code":
            return self._code(tenant, form, headers)
        return 400, ms_error("unsupported_grant_type", 70003)

    def _refresh(self, tenant, form, headers):
        cid, err = self._client(form, headers, tenant, False)
        if err:
            return err
        for p in ("refresh_token", "scope"):
            if not form.get(p):
                return 400, ms_error("invalid_request", 900144, param=p)
        t = self.tokens.get(form["refresh_token"])
        if t is None or t.kind != "refresh":
            return 400, ms_error("invalid_grant", 9002313)
        if t.client_id != cid:
            return 400, ms_error("invalid_grant", 70000)
        if t.dead is not None:
            return 400, ms_error("invalid_grant", t.dead,
                                 issued=ms_time(t.issued))
        t.dead = 70000  # rotated: the old one is dead from now on
        return self._grant(t.user, cid, form["scope"], True)

    def _client_credentials(self, tenant, form, headers):
        cid, err = self._client(form, headers, tenant, True)
        if err:
            return err
        scope = form.get("scope")
        if not scope:
            return 400, ms_error("invalid_request", 900144, param="scope")
        if not scope.endswith("/.default") or " " in scope:
            return 400, ms_error("invalid_scope", 1002012, scope=scope)
        return self._grant(self.clients[cid]["app_user"], cid, scope, False)

    def device_code(self, tenant, form, headers):
        cid, err = self._client(form, headers, tenant, False)
        if err:
            return err
        if not form.get("scope"):
            return 400, ms_error("invalid_request", 900144, param="scope")
        dc = self._new("dc-")
        uc = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789")
                     for _ in range(9))
        self.devices[dc] = {"user_code": uc, "client_id": cid,
                            "scope": form["scope"], "state": "pending",
                            "user": None, "last_poll": 0.0,
                            "interval": self.device_interval,
                            "expires": time.time() + self.device_expires}
        return 200, {
            "user_code": uc, "device_code": dc,
            "verification_uri": MS_DEVICE_URI,
            "expires_in": self.device_expires,
            "interval": self.device_interval,
            "message": "To sign in, use a web browser to open the page %s "
                       "and enter the code %s to authenticate."
                       % (MS_DEVICE_URI, uc)}

    def _device_poll(self, tenant, form, headers):
        cid, err = self._client(form, headers, tenant, False)
        if err:
            return err
        if not form.get("device_code"):
            return 400, ms_error("invalid_request", 900144,
                                 param="device_code")
        d = self.devices.get(form["device_code"])
        if d is None or d["client_id"] != cid:
            return 400, ms_error("invalid_grant", 9002313)
        now = time.time()
        if d["state"] == "redeemed":
            return 400, ms_error("invalid_grant", 54005)
        if now >= d["expires"]:
            return 400, ms_error("expired_token", 70019)
        if d["state"] == "declined":
            return 400, ms_error("authorization_declined", 70020)
        too_fast = now - d["last_poll"] < d["interval"]
        d["last_poll"] = now
        if self.enforce_interval and too_fast:
            d["interval"] += 5  # RFC 8628 §3.5
            return 400, ms_error("slow_down", 5000)
        if d["state"] == "pending":
            return 400, ms_error("authorization_pending", 70016)
        d["state"] = "redeemed"
        return self._grant(d["user"], cid, d["scope"],
                           "offline_access" in d["scope"].split())

    def authorize(self, tenant, query):
        """(status, headers, body) of GET /authorize."""
        self.authorize_requests.append(dict(query))
        ru = query.get("redirect_uri", "")
        u = urllib.parse.urlsplit(ru)
        # RFC 8252 §7.3: a loopback redirect on any port; http only.
        if (u.scheme != "http" or u.hostname not in ("127.0.0.1", "localhost",
                                                     "::1") or not u.port):
            return 400, {}, ms_error("invalid_request", 50011, uri=ru)
        if query.get("client_id") not in self.clients:
            return 400, {}, ms_error("unauthorized_client", 700016,
                                     client=query.get("client_id"),
                                     tenant=tenant)

        def back(**params):
            if "state" in query:
                params["state"] = query["state"]
            sep = "&" if u.query else "?"
            return 302, {"Location": ru + sep +
                         urllib.parse.urlencode(params)}, None

        def bad(code, param=None):
            e = ms_error("invalid_request", code, param=param)
            return back(error=e["error"],
                        error_description=e["error_description"])

        for p in ("response_type", "scope", "code_challenge"):
            if not query.get(p):
                return bad(900144, p)
        if query["response_type"] != "code":
            return bad(9002313)
        # RFC 7636 §4.2/§4.3: S256 only here (plain is refused).
        if query.get("code_challenge_method") != "S256":
            return bad(9002313)
        ch = query["code_challenge"]
        if not 43 <= len(ch) <= 128:
            return bad(9002313)
        decision, user = self._consent
        if decision != "approve":
            e = ms_error("access_denied", 65004)
            return back(error="access_denied",
                        error_description=e["error_description"])
        code = self._new("code-")
        self.codes[code] = {"client_id": query["client_id"],
                            "redirect_uri": ru, "challenge": ch,
                            "scope": query["scope"], "user": user,
                            "expires": time.time() + 600, "used": False}
        return back(code=code)

    def _code(self, tenant, form, headers):
        cid, err = self._client(form, headers, tenant, False)
        if err:
            return err
        for p in ("code", "redirect_uri", "code_verifier"):
            if not form.get(p):
                return 400, ms_error("invalid_request", 900144, param=p)
        c = self.codes.get(form["code"])
        if c is None or c["client_id"] != cid:
            return 400, ms_error("invalid_grant", 9002313)
        if c["used"]:
            return 400, ms_error("invalid_grant", 54005)
        if time.time() >= c["expires"]:
            return 400, ms_error("invalid_grant", 70008)
        if form["redirect_uri"] != c["redirect_uri"]:
            return 400, ms_error("invalid_grant", 50011,
                                 uri=form["redirect_uri"])
        # RFC 7636 §4.6.
        if not secrets.compare_digest(pkce_s256(form["code_verifier"]),
                                      c["challenge"]):
            return 400, ms_error("invalid_grant", 501481)
        c["used"] = True
        scope = form.get("scope") or c["scope"]
        return self._grant(c["user"], cid, scope,
                           "offline_access" in c["scope"].split())

    # --- a browser, for the loopback flow ---------------------------------
    def browse(self, authorize_url, timeout=10):
        """Do what the user's browser does with the URL a client printed:
        GET it here (the answer follows consent()), follow the redirect
        to the client's loopback redirect_uri, and return (status, body)
        of the client's answer there.  Raises if /authorize did not
        redirect."""
        ctx = self.cert.client_context()

        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *a, **k):
                return None

        op = urllib.request.build_opener(
            NoRedirect, urllib.request.HTTPSHandler(context=ctx))
        try:
            r = op.open(authorize_url, timeout=timeout)
            raise AssertionError("/authorize answered %d, no redirect"
                                 % r.status)
        except urllib.error.HTTPError as e:
            if e.code != 302:
                raise AssertionError("/authorize answered %d: %s"
                                     % (e.code, e.read()[:500]))
            loc = e.headers["Location"]
        try:
            with urllib.request.urlopen(loc, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()


def _resource_scope(scope):
    """The scope of an access token: Microsoft lists the resource scopes,
    not offline_access/openid/profile."""
    return " ".join(s for s in scope.split()
                    if s not in ("offline_access", "openid", "profile"))


class _HTTPServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request, client_address):
        pass  # a client that went away, a failed handshake: not ours


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "test-oauth"
    sys_version = ""
    timeout = 30

    def setup(self):
        # The TLS handshake here, in this connection's thread, bounded.
        self.request.settimeout(10)
        self.request = self.server.ctx.wrap_socket(self.request,
                                                   server_side=True)
        with self.server.owner.lock:
            self.server.conns.add(self.request)
        super().setup()

    def finish(self):
        try:
            super().finish()
        finally:
            with self.server.owner.lock:
                self.server.conns.discard(self.request)

    def log_message(self, *a):
        pass

    def _send(self, status, body, headers=None):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        ctype = "application/json; charset=utf-8"
        if isinstance(body, bytes):
            ctype = "text/html; charset=utf-8"
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Type", ctype)
        self.send_header("Cache-Control", "no-store, no-cache")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _route(self):
        path = urllib.parse.urlsplit(self.path).path
        parts = path.strip("/").split("/")
        if parts == ["introspect"]:
            return "introspect", None
        if len(parts) == 4 and parts[1:3] == ["oauth2", "v2.0"] and \
                parts[3] in ("token", "devicecode", "authorize"):
            return parts[3], parts[0]
        return None, None

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(n) if n else b""
        ctype = self.headers.get("Content-Type", "")
        if raw and not ctype.startswith("application/x-www-form-urlencoded"):
            return {}
        return dict(urllib.parse.parse_qsl(raw.decode("utf-8", "replace"),
                                           keep_blank_values=True))

    def _handle(self, method):
        o = self.server.owner
        endpoint, tenant = self._route()
        query = dict(urllib.parse.parse_qsl(
            urllib.parse.urlsplit(self.path).query, keep_blank_values=True))
        form = self._body() if method == "POST" else {}
        headers = dict(self.headers.items())
        status, reply, extra = 404, {"error": "not_found"}, None
        fault = o._take_fault(endpoint, form.get("grant_type"))
        if fault == "hang":
            self.close_connection = True
            status, reply = 0, "hang"
        elif fault == "close":
            self.close_connection = True
            status, reply = 0, "close"
        elif fault == "http500":
            status, reply = 500, (b"<html><body><h1>500 Internal Server "
                                  b"Error</h1></body></html>")
        elif fault == "temporarily_unavailable":
            status, reply = 503, ms_error("temporarily_unavailable", 90033)
        elif fault == "slow_down":
            status, reply = 400, ms_error("slow_down", 5000)
        elif fault == "bad_json":
            status, reply = 200, b'{"access_token": "trunc'
        elif endpoint is not None and tenant is not None and \
                not o._tenant_ok(tenant):
            status, reply = 400, ms_error("invalid_request", 90002,
                                          tenant=tenant)
        elif endpoint in ("token", "devicecode"):
            if method != "POST":
                status, reply = 405, ms_error("invalid_request", 900561)
            else:
                with o.lock:
                    fn = o.token if endpoint == "token" else o.device_code
                    status, reply = fn(tenant, form, headers)
        elif endpoint == "authorize" and method == "GET":
            with o.lock:
                status, extra, reply = o.authorize(tenant, query)
        elif endpoint == "introspect":
            tok = form.get("token") or query.get("token")
            auth = headers.get("Authorization", "")
            if not tok and auth.startswith("Bearer "):
                tok = auth[7:]
            status, reply = 200, o.introspect(tok or "")
        with o.lock:
            o.requests.append(Req(time.time(), method, self.path, endpoint,
                                  form, headers, status, reply))
        if fault == "hang":
            # No answer; the connection closes after hang_seconds, or at
            # stop().
            o.stopping.wait(o.hang_seconds)
        if status:
            self._send(status, reply if reply is not None else b"", extra)

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")


@pytest.fixture
def token_server(test_cert):
    s = TokenServer(test_cert).start()
    try:
        yield s
    finally:
        s.stop()
