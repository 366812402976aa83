"""Scripted SMTP servers that answer like smtp.office365.com and
smtp.gmail.com (INTEROP.md "Relaying to Microsoft 365 and Google"), on
127.0.0.1 at a free port, in threads of the test process.  Bearer tokens
are checked with the test token server (oauth_server.TokenServer's
introspect(), in process): active, user= equal to the token's user, the
provider's scope.

ProviderSmtp("m365", cert, token_server) -- smtp.office365.com:587
  - EHLO offers STARTTLS, and `AUTH LOGIN XOAUTH2` only after it; AUTH
    before it: 504 5.7.4; MAIL before it: 451 5.7.3 STARTTLS is required.
  - XOAUTH2, inline (`AUTH XOAUTH2 <b64>`) or after `334 `: a bad,
    expired, revoked or wrong-user token gets `535 5.7.3 Authentication
    unsuccessful [HOST]` at once (no challenge); MAIL before AUTH: 530
    5.7.57.  LOGIN: 535 5.7.139 basic authentication is disabled (unless
    basic_auth=True and passwords= has the user).
  - switches (attributes, also while running):
      smtp_auth_disabled = True  every AUTH: `535 5.7.139 Authentication
          unsuccessful, SmtpClientAuthentication is disabled for the
          Tenant. Visit https://aka.ms/smtp_auth_disabled for more
          information. [HOST]`
      thread_limit = 3  an authenticated session that makes a mailbox's
          sessions open at once more than this gets `432 4.3.2
          STOREDRV.ClientSubmit; sender thread limit exceeded
          [Hostname=HOST]` for each message (at the final dot; at MAIL
          with thread_limit_at = "mail"); None: no limit
      send_as = {mailbox: {other senders}}  MAIL FROM other than the
          mailbox (or those): `550 5.7.60 SMTP; Client does not have
          permissions to send as this sender [HOST]`
      expire_soon = 600  a token with less than that many seconds left:
          `501 5.5.127 Invalid XOAUTH2 auth data - Token will expire soon
          [HOST]` (None: off)
ProviderSmtp("gmail", cert, token_server) -- smtp.gmail.com:587
  - after STARTTLS `AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN OAUTHBEARER
    XOAUTH`; AUTH before it: 530 5.7.0 Must issue a STARTTLS command
    first.
  - a bad XOAUTH2 token: `334 ` + base64 {"status":"401","schemes":
    "bearer","scope":"https://mail.google.com/"}; the client's next line
    (it must be empty) then gets `535-5.7.8 Username and Password not
    accepted. ...`; OAUTHBEARER (RFC 7628 §3.2.3): `334 ` + base64
    {"status":"invalid_token",...}, the client must send AQ== (%x01):
    535, or `*`: 501 5.7.0 (RFC 4954 §4 cancel).
  - command lines longer than 512 octets with CRLF (RFC 5321 §4.5.3.1.4,
    Gmail's limit): `555 5.5.2 Syntax error, line too long`, so a
    too-long inline AUTH is caught; the line after `334 ` may be up to
    12288 octets (RFC 4954 §4).  LOGIN/PLAIN: app passwords in
    passwords=, else 535-5.7.8.
Both: implicit=True for implicit TLS (port 465 style); reject={rcpt:
reply}; CHUNKING (BDAT, RFC 3030) and DATA; every client line in
`commands` ((session id, line) -- AUTH lines hold tokens: this is a test
server), every session in `sessions`, every message in `messages`
(Msg: mail_from, rcpt_tos, data bytes as received after dot-unstuffing,
user, session id); stop() closes every connection.

Fixtures: m365_server, gmail_server, stopped at teardown; they use
token_server and test_cert, so a test module imports all it uses:
  from net_util import test_cert                      # noqa: F401
  from oauth_server import token_server               # noqa: F401
  from provider_smtp import m365_server               # noqa: F401
"""
import base64
import binascii
import collections
import itertools
import json
import secrets
import socket
import socketserver
import ssl
import threading
import time

import pytest


M365_HOST = "PH7PR17CA0001.outlook.office365.com"
M365_MBX = "PH7PR17MB0001.namprd17.prod.outlook.com"
GMAIL_HOST = "smtp.gmail.com"
GOOGLE_SCOPE = "https://mail.google.com/"
M365_SCOPES = ("https://outlook.office.com/SMTP.Send",
               "https://outlook.office365.com/.default")
AUTH_LINE_MAX = 12288  # RFC 4954 §4
HARD_LINE_MAX = 65536

Msg = collections.namedtuple("Msg", "mail_from rcpt_tos data user session")


class Session:
    def __init__(self, sid):
        self.id = sid
        self.tls = False
        self.user = None
        self.mech = None
        self.over_limit = False
        self.closed = False
        self.lines = []


class _Drop(Exception):
    pass


class ProviderSmtp:
    def __init__(self, kind, cert, token_server=None, validate=None,
                 implicit=False, passwords=None, reject=None,
                 max_line=None, command_timeout=60):
        assert kind in ("m365", "gmail"), kind
        self.kind = kind
        self.cert = cert
        self.validate = validate or (token_server.introspect
                                     if token_server else None)
        self.implicit = implicit
        self.passwords = dict(passwords or {})
        self.reject = dict(reject or {})
        self.max_line = max_line if max_line is not None else (
            512 if kind == "gmail" else HARD_LINE_MAX)
        self.command_timeout = command_timeout
        # switches (see the module's doc)
        self.smtp_auth_disabled = False
        self.basic_auth = False
        self.thread_limit = 3 if kind == "m365" else None
        self.thread_limit_at = "dot"
        self.send_as = {}
        self.expire_soon = None
        # records
        self.commands = []
        self.sessions = []
        self.messages = []
        self.lock = threading.Lock()
        self._ids = itertools.count(1)
        self._active = collections.Counter()  # authenticated, per user
        self._socks = set()
        self.ctx = cert.server_context()
        self.srv = None
        self.port = None

    # --- life -----------------------------------------------------------
    def start(self):
        self.srv = _TCPServer(("127.0.0.1", 0), _Conn)
        self.srv.owner = self
        self.port = self.srv.server_address[1]
        self.thread = threading.Thread(target=self.srv.serve_forever,
                                       kwargs={"poll_interval": 0.1},
                                       name="provider-smtp-" + self.kind,
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.srv is None:
            return
        self.srv.shutdown()
        self.srv.server_close()
        with self.lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(10)
        self.srv = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def host(self):
        return M365_HOST if self.kind == "m365" else GMAIL_HOST

    def open_sessions(self, user=None):
        with self.lock:
            return sum(1 for s in self.sessions if not s.closed and
                       (user is None or s.user == user))

    def wait_messages(self, n, timeout=10):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if len(self.messages) >= n:
                return list(self.messages)
            time.sleep(0.02)
        raise AssertionError("%d messages, want %d" % (len(self.messages), n))

    # --- replies --------------------------------------------------------
    def _gid(self):
        """Gmail's per-session tag at the end of each reply."""
        return "%s - gsmtp" % secrets.token_hex(6)

    def greeting(self):
        if self.kind == "m365":
            return "220 %s Microsoft ESMTP MAIL Service ready at %s" % (
                self.host, time.strftime("%a, %d %b %Y %H:%M:%S +0000",
                                         time.gmtime()))
        return "220 smtp.gmail.com ESMTP %s" % self._gid()

    def ehlo(self, s, arg):
        if self.kind == "m365":
            lines = ["%s Hello [127.0.0.1]" % self.host, "SIZE 157286400",
                     "PIPELINING", "DSN", "ENHANCEDSTATUSCODES"]
            lines += ["AUTH LOGIN XOAUTH2"] if s.tls else ["STARTTLS"]
            lines += ["8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"]
        else:
            lines = ["smtp.gmail.com at your service, [127.0.0.1]",
                     "SIZE 35882577", "8BITMIME"]
            lines += (["AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN "
                       "OAUTHBEARER XOAUTH"] if s.tls else ["STARTTLS"])
            lines += ["ENHANCEDSTATUSCODES", "PIPELINING", "CHUNKING",
                      "SMTPUTF8"]
        return "\r\n".join("250%s%s" % ("-" if i < len(lines) - 1 else " ",
                                        l) for i, l in enumerate(lines))

    def r(self, code, text):
        """One reply in the provider's style."""
        if self.kind == "m365":
            return "%s %s" % (code, text)
        return "%s %s %s" % (code, text, self._gid())

    def gmail_535(self):
        return ("535-5.7.8 Username and Password not accepted. For more "
                "information, go to\r\n535 5.7.8  https://support.google."
                "com/mail/?p=BadCredentials %s" % self._gid())

    def m365_535(self):
        return "535 5.7.3 Authentication unsuccessful [%s]" % M365_MBX

    # --- tokens ---------------------------------------------------------
    def check_token(self, user, token):
        """(user, reply if not ok or None) for user's bearer token; user
        None (OAUTHBEARER without a=) is the token's own."""
        info = self.validate(token) if self.validate else {"active": False}
        if user is None:
            user = info.get("username")
        ok = bool(info.get("active")) and user is not None and \
            info.get("username", "").lower() == user.lower()
        scopes = info.get("scope", "").split()
        if ok and self.kind == "m365":
            ok = any(sc in scopes for sc in M365_SCOPES)
        elif ok:
            ok = GOOGLE_SCOPE in scopes
        if ok and self.kind == "m365" and self.expire_soon is not None \
                and info.get("exp", 0) - time.time() < self.expire_soon:
            return None, ("501 5.5.127 Invalid XOAUTH2 auth data - Token "
                          "will expire soon [%s]" % M365_MBX)
        return (user, None) if ok else (None, "")

    # --- AUTH -----------------------------------------------------------
    def auth(self, c, s, arg):
        parts = arg.split(" ")
        mech = parts[0].upper()
        ir = parts[1] if len(parts) > 1 else None
        if len(parts) > 2:
            return c.send(self.r(501, "5.5.4 Syntax error in parameters"))
        if s.user is not None:
            return c.send(self.r(503, "5.5.1 Already authenticated"))
        if not s.tls:
            if self.kind == "m365":
                return c.send("504 5.7.4 Unrecognized authentication type "
                              "[%s]" % M365_MBX)
            return c.send(self.r(530, "5.7.0 Must issue a STARTTLS command "
                                      "first."))
        offered = (("LOGIN", "XOAUTH2") if self.kind == "m365" else
                   ("LOGIN", "PLAIN", "XOAUTH2", "PLAIN-CLIENTTOKEN",
                    "OAUTHBEARER", "XOAUTH"))
        if mech not in offered:
            if self.kind == "m365":
                return c.send("504 5.7.4 Unrecognized authentication type "
                              "[%s]" % M365_MBX)
            return c.send(self.r(504, "5.7.4 Unrecognized authentication "
                                      "type."))
        if mech == "LOGIN":
            return self._auth_login(c, s, ir)
        if mech == "PLAIN":
            return self._auth_plain(c, s, ir)
        if mech in ("XOAUTH2", "OAUTHBEARER"):
            return self._auth_bearer(c, s, mech, ir)
        return c.send(self.gmail_535())  # PLAIN-CLIENTTOKEN, XOAUTH

    def _response(self, c, challenge=""):
        """Send 334 challenge, read the client's line: (decoded bytes, or
        None for a line that is not base64, or "*" for a cancel)."""
        c.send("334 " + challenge)
        line = c.readline(AUTH_LINE_MAX)
        if line == "*":
            return "*"
        return _b64(line)

    def _cancelled(self, c):
        c.send(self.r(501, "5.7.0 Authentication aborted"))

    def _success(self, c, s, user, mech):
        with self.lock:
            s.user, s.mech = user, mech
            self._active[user] += 1
            if self.thread_limit is not None and \
                    self._active[user] > self.thread_limit:
                s.over_limit = True
        c.send("235 2.7.0 Authentication successful" if self.kind == "m365"
               else "235 2.7.0 Accepted")

    def _fail(self, c, reply=None):
        c.send(reply or (self.m365_535() if self.kind == "m365"
                         else self.gmail_535()))

    def _disabled(self, c):
        c.send("535 5.7.139 Authentication unsuccessful, "
               "SmtpClientAuthentication is disabled for the Tenant. Visit "
               "https://aka.ms/smtp_auth_disabled for more information. "
               "[%s]" % M365_MBX)

    def _password_ok(self, user, pw):
        want = self.passwords.get(user)
        return want is not None and secrets.compare_digest(
            want.encode(), pw.encode())

    def _auth_login(self, c, s, ir):
        user = _b64(ir) if ir else self._response(c, "VXNlcm5hbWU6")
        if user == "*":
            return self._cancelled(c)
        pw = self._response(c, "UGFzc3dvcmQ6")
        if pw == "*":
            return self._cancelled(c)
        if user is None or pw is None:
            return c.send(self.r(501, "5.5.2 Cannot Decode response"))
        user, pw = user.decode("utf-8", "replace"), pw.decode("utf-8",
                                                              "replace")
        return self._password(c, s, "LOGIN", user, pw)

    def _auth_plain(self, c, s, ir):
        data = _b64(ir) if ir is not None else self._response(c)
        if data == "*":
            return self._cancelled(c)
        if data is None or data.count(b"\0") != 2:
            return c.send(self.r(501, "5.5.2 Cannot Decode response"))
        _, user, pw = data.decode("utf-8", "replace").split("\0")
        return self._password(c, s, "PLAIN", user, pw)

    def _password(self, c, s, mech, user, pw):
        if self.kind == "m365":
            if self.smtp_auth_disabled:
                return self._disabled(c)
            if not self.basic_auth:
                return c.send("535 5.7.139 Authentication unsuccessful, "
                              "basic authentication is disabled. [%s]"
                              % M365_MBX)
        if self._password_ok(user, pw):
            return self._success(c, s, user, mech)
        return self._fail(c)

    def _auth_bearer(self, c, s, mech, ir):
        data = _b64(ir) if ir is not None else self._response(c)
        if data == "*":
            return self._cancelled(c)
        user, token = (_parse_xoauth2 if mech == "XOAUTH2" else
                       _parse_oauthbearer)(data)
        if self.kind == "m365":
            if self.smtp_auth_disabled:
                return self._disabled(c)
            if token is None:
                return self._fail(c)
            user, reply = self.check_token(user, token)
            if user is not None:
                return self._success(c, s, user, mech)
            return self._fail(c, reply)
        if data is None:
            return c.send(self.r(501, "5.5.2 Cannot Decode response"))
        if token is not None:
            user, _ = self.check_token(user, token)
            if user is not None:
                return self._success(c, s, user, mech)
        # Google: the error as a challenge; the exchange ends only with
        # the client's next line (empty for XOAUTH2, %x01 for OAUTHBEARER).
        status = "401" if mech == "XOAUTH2" else "invalid_token"
        js = json.dumps({"status": status, "schemes": "bearer",
                         "scope": GOOGLE_SCOPE}, separators=(",", ":"))
        line = self._response(c, base64.b64encode(js.encode()).decode())
        if line == "*":
            return self._cancelled(c)
        return self._fail(c)

    # --- MAIL, RCPT, DATA, BDAT -----------------------------------------
    def mail(self, c, s, arg, tx):
        if not s.tls and self.kind == "m365":
            return c.send("451 5.7.3 STARTTLS is required to send mail [%s]"
                          % M365_MBX)
        if s.user is None:
            if self.kind == "m365":
                return c.send("530 5.7.57 Client not authenticated to send "
                              "mail. [%s]" % M365_MBX)
            return c.send("530-5.7.0 Authentication Required. For more "
                          "information, go to\r\n530 5.7.0  https://support."
                          "google.com/mail/?p=WantAuthError " + self._gid())
        if tx.get("from") is not None:
            return c.send(self.r(503, "5.5.1 Sender already specified"))
        if not arg.upper().startswith("FROM:"):
            return c.send(self.r(501, "5.5.4 Invalid arguments"))
        addr = _path(arg[5:])
        if addr is None:
            return c.send(self.r(501, "5.1.7 Invalid address"))
        if self.kind == "m365":
            allowed = {s.user.lower()} | {a.lower() for a in
                                          self.send_as.get(s.user, ())}
            if addr.lower() not in allowed:
                return c.send("550 5.7.60 SMTP; Client does not have "
                              "permissions to send as this sender [%s]"
                              % M365_MBX)
            if s.over_limit and self.thread_limit_at == "mail":
                return c.send(self._thread_limit())
        tx["from"] = addr
        tx["rcpt"] = []
        c.send("250 2.1.0 Sender OK" if self.kind == "m365" else
               self.r(250, "2.1.0 OK"))

    def _thread_limit(self):
        return ("432 4.3.2 STOREDRV.ClientSubmit; sender thread limit "
                "exceeded [Hostname=%s]" % M365_MBX)

    def rcpt(self, c, s, arg, tx):
        if tx.get("from") is None:
            return c.send(self.r(503, "5.5.1 Need mail command"))
        if not arg.upper().startswith("TO:"):
            return c.send(self.r(501, "5.5.4 Invalid arguments"))
        addr = _path(arg[3:])
        if not addr:
            return c.send(self.r(501, "5.1.3 Invalid address"))
        if addr in self.reject:
            return c.send(self.reject[addr])
        tx["rcpt"].append(addr)
        c.send("250 2.1.5 Recipient OK" if self.kind == "m365" else
               self.r(250, "2.1.5 OK"))

    def deliver(self, c, s, tx, data):
        with self.lock:
            over = s.over_limit and self.thread_limit_at == "dot"
            if not over:
                self.messages.append(Msg(tx["from"], list(tx["rcpt"]), data,
                                         s.user, s.id))
        tx.clear()
        if over:
            return c.send(self._thread_limit())
        if self.kind == "m365":
            c.send("250 2.0.0 OK <%s@%s> [Hostname=%s]" % (
                secrets.token_hex(8), M365_MBX, M365_MBX))
        else:
            c.send(self.r(250, "2.0.0 OK  %d" % time.time()))

    # --- the session ------------------------------------------------------
    def session(self, c):
        s = Session(next(self._ids))
        c.s = s
        with self.lock:
            self.sessions.append(s)
        try:
            if self.implicit:
                c.starttls()
                s.tls = True
            c.send(self.greeting())
            self._loop(c, s)
        finally:
            with self.lock:
                s.closed = True
                if s.user is not None:
                    self._active[s.user] -= 1

    def _loop(self, c, s):
        tx = {}
        helo = False
        while True:
            line = c.readline(self.max_line)
            if line is None:
                c.send(self.r(555, "5.5.2 Syntax error, line too long."))
                continue
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb in ("EHLO", "HELO"):
                helo = True
                tx.clear()
                c.send(self.ehlo(s, arg) if verb == "EHLO" else
                       "250 %s Hello [127.0.0.1]" % self.host)
            elif verb == "STARTTLS":
                if s.tls:
                    c.send(self.r(503, "5.5.1 TLS already active"))
                    continue
                c.send("220 2.0.0 SMTP server ready" if self.kind == "m365"
                       else "220 2.0.0 Ready to start TLS")
                c.starttls()
                s.tls, helo = True, False
                tx.clear()
            elif verb == "AUTH":
                if not helo:
                    c.send(self.r(503, "5.5.1 Send hello first"))
                else:
                    self.auth(c, s, arg)
            elif verb == "MAIL":
                self.mail(c, s, arg, tx)
            elif verb == "RCPT":
                self.rcpt(c, s, arg, tx)
            elif verb == "DATA":
                if not tx.get("rcpt"):
                    c.send(self.r(503, "5.5.1 Need rcpt command"))
                    continue
                c.send("354 Start mail input; end with <CRLF>.<CRLF>"
                       if self.kind == "m365" else self.r(354, " Go ahead"))
                self.deliver(c, s, tx, c.read_data())
            elif verb == "BDAT":
                self._bdat(c, s, arg, tx)
            elif verb == "RSET":
                tx.clear()
                c.send("250 2.0.0 Resetting" if self.kind == "m365" else
                       self.r(250, "2.1.5 Flushed"))
            elif verb == "NOOP":
                c.send(self.r(250, "2.0.0 OK"))
            elif verb == "QUIT":
                c.send("221 2.0.0 Service closing transmission channel"
                       if self.kind == "m365" else
                       self.r(221, "2.0.0 closing connection"))
                return
            else:
                c.send(self.r(502, "5.5.1 Unrecognized command."))

    def _bdat(self, c, s, arg, tx):
        """RFC 3030 §2: BDAT size [LAST]; the chunk follows at once."""
        parts = arg.split()
        if not parts or not parts[0].isdigit() or len(parts) > 2 or (
                len(parts) == 2 and parts[1].upper() != "LAST"):
            return c.send(self.r(501, "5.5.4 Syntax error in parameters"))
        chunk = c.read_exact(int(parts[0]))
        if not tx.get("rcpt"):
            return c.send(self.r(503, "5.5.1 Need rcpt command"))
        tx.setdefault("bdat", []).append(chunk)
        if len(parts) == 2:
            return self.deliver(c, s, tx, b"".join(tx["bdat"]))
        c.send(self.r(250, "2.0.0 %d octets received" % len(chunk)))


def _b64(text):
    """RFC 4954 §4: base64, "=" alone for an empty response; None if not
    base64."""
    if text is None:
        return None
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def _parse_xoauth2(data):
    """user=U^Aauth=Bearer T^A^A -> (U, T), or (None, None)."""
    if data is None or not data.endswith(b"\x01\x01"):
        return None, None
    fields = data[:-2].split(b"\x01")
    if len(fields) != 2 or not fields[0].startswith(b"user=") or \
            not fields[1].startswith(b"auth=Bearer "):
        return None, None
    return (fields[0][5:].decode("utf-8", "replace"),
            fields[1][12:].decode("utf-8", "replace"))


def _parse_oauthbearer(data):
    """RFC 7628 §3.1: gs2-header ^A key=value ^A ... ^A^A -> (user or None,
    token), or (None, None)."""
    if data is None or not data.endswith(b"\x01\x01"):
        return None, None
    parts = data[:-2].split(b"\x01")
    gs2 = parts[0].split(b",")
    if len(gs2) < 3 or gs2[0] not in (b"n", b"y"):
        return None, None
    user = None
    if gs2[1].startswith(b"a="):
        user = gs2[1][2:].replace(b"=2C", b",").replace(b"=3D", b"=")
        user = user.decode("utf-8", "replace")
    token = None
    for kv in parts[1:]:
        if kv.startswith(b"auth=Bearer "):
            token = kv[12:].decode("utf-8", "replace")
    return user, token


def _path(text):
    """The address of "<addr> [params]" ("" for <>), or None."""
    text = text.strip()
    if not text.startswith("<") or ">" not in text:
        return None
    return text[1:text.index(">")]


class _TCPServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False

    def handle_error(self, request, client_address):
        pass


class _Conn(socketserver.BaseRequestHandler):
    """Line I/O on one connection, plain or TLS."""

    def setup(self):
        self.o = self.server.owner
        self.sock = self.request
        self.sock.settimeout(self.o.command_timeout)
        self.buf = b""
        self.s = None
        with self.o.lock:
            self.o._socks.add(self.sock)

    def handle(self):
        try:
            self.o.session(self)
        except (_Drop, OSError, ssl.SSLError):
            pass

    def finish(self):
        with self.o.lock:
            self.o._socks.discard(self.sock)
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, text):
        self.sock.sendall(text.encode() + b"\r\n")

    def starttls(self):
        # RFC 3207 §4.2: what the client sent after STARTTLS is dropped.
        self.buf = b""
        self.sock.settimeout(self.o.command_timeout)
        tls = self.o.ctx.wrap_socket(self.sock, server_side=True)
        with self.o.lock:
            self.o._socks.discard(self.sock)
            self.o._socks.add(tls)
        self.sock = tls

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise _Drop()
        self.buf += data

    def readline(self, limit):
        """One line without its CRLF, recorded; None if it was longer than
        limit octets with the CRLF (the line is consumed all the same)."""
        while b"\r\n" not in self.buf:
            if len(self.buf) > HARD_LINE_MAX:
                raise _Drop()
            self._fill()
        raw, self.buf = self.buf.split(b"\r\n", 1)
        line = raw.decode("utf-8", "replace")
        with self.o.lock:
            self.o.commands.append((self.s.id, line))
            self.s.lines.append(line)
        if len(raw) + 2 > limit:
            return None
        return line

    def read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def read_data(self):
        """DATA up to CRLF.CRLF (RFC 5321 §4.1.1.4), dot-unstuffed."""
        out = []
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            raw, self.buf = self.buf.split(b"\r\n", 1)
            if raw == b".":
                return b"".join(out)
            out.append((raw[1:] if raw.startswith(b".") else raw) + b"\r\n")


@pytest.fixture
def m365_server(test_cert, token_server):
    s = ProviderSmtp("m365", test_cert, token_server).start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def gmail_server(test_cert, token_server):
    s = ProviderSmtp("gmail", test_cert, token_server).start()
    try:
        yield s
    finally:
        s.stop()
