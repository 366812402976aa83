"""Helpers for the tests of the client side: `postern send`, `postern
probe` and postern invoked as sendmail.

- run_postern(): the built postern with a clean environment (HOME in a
  temporary directory so no ~/.config/postern/config is read, no
  POSTERN_PASSWORD unless given) and a bounded wait.
- LogMark: the part of posternd's log written after a point, split into
  key=value events, so a test can ask what posternd saw of its own
  connections.
- FakeSMTP: a scripted SMTP server in a thread that records every byte a
  client sends; for what posternd cannot be made to do (offer only some
  mechanisms in a given form, answer 4xx/5xx, say nothing).
"""
import base64
import os
import re
import shlex
import socket
import subprocess
import threading
import time

from posternd_util import postern_bin

USER = "tim@example.test"
PASSWORD = "tanstaaftanstaaf"
ALL_MECHS = ["SCRAM-SHA-256", "SCRAM-SHA-1", "DIGEST-MD5", "CRAM-MD5",
             "PLAIN", "LOGIN"]

# sysexits.h
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_PROTOCOL = 76
EX_NOPERM = 77
EX_CONFIG = 78

# A message that needs nothing added: CRLF line ends, Date and Message-ID.
FIXED_MSG = (b"From: <tim@example.test>\r\n"
             b"To: <tim@example.test>\r\n"
             b"Subject: fixed\r\n"
             b"Date: Mon, 02 Feb 2026 10:00:00 +0000\r\n"
             b"Message-ID: <fixed.1@example.test>\r\n"
             b"\r\n"
             b"line one\r\n"
             b"\r\n"
             b"last line\r\n")


def secret_forms(password=PASSWORD, user=USER):
    """Every way a password can show up on the wire or in a transcript:
    the password, its base64, and the PLAIN initial response."""
    pw = password.encode()
    return [pw, base64.b64encode(pw),
            base64.b64encode(b"\0" + user.encode() + b"\0" + pw)]


def clean_env(home, **extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("POSTERN_") or k == "POSTERN_BUILD"}
    env["HOME"] = str(home)
    env["LC_ALL"] = "C.UTF-8"
    for k, v in extra.items():
        env[k] = str(v)
    return env


def run_postern(args, input=b"", env=None, home="/nonexistent",
                timeout=60, argv0=None):
    """Run postern (or the link argv0) and return the CompletedProcess
    (bytes).  A hang is a test failure, never a stuck run."""
    exe = argv0 or postern_bin()
    try:
        # A session of its own: no controlling terminal, so a missing
        # password is an error, never a prompt on the tester's screen.
        return subprocess.run([str(exe), *map(str, args)], input=input,
                              capture_output=True, timeout=timeout,
                              start_new_session=True,
                              env=env if env is not None else clean_env(home))
    except subprocess.TimeoutExpired as e:
        raise AssertionError("postern %s did not finish in %ss; stderr: %r"
                             % (" ".join(map(shlex.quote, map(str, args))),
                                timeout, e.stderr)) from None


def describe(p):
    return "exit %s\nstdout: %s\nstderr: %s" % (
        p.returncode, p.stdout.decode("utf-8", "replace"),
        p.stderr.decode("utf-8", "replace"))


# --- posternd's log ----------------------------------------------------------

KV_RE = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)')


def parse_log_line(line):
    ev = {}
    for k, v in KV_RE.findall(line):
        if v.startswith('"'):
            v = v[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        ev[k] = v
    return ev


class LogMark:
    """What posternd logged after this object was made (or all of it,
    with start=0)."""

    def __init__(self, srv, start=None):
        self.srv = srv
        self.start = len(srv.log()) if start is None else start

    def text(self):
        return self.srv.log()[self.start:]

    def events(self, name=None):
        out = []
        for line in self.text().splitlines():
            ev = parse_log_line(line)
            if name is None or ev.get("event") == name:
                out.append(ev)
        return out

    def wait(self, pattern, timeout=10):
        """Wait until pattern appears in the new part of the log."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if rx.search(self.text()):
                return True
            time.sleep(0.05)
        return False

    def sessions_done(self, timeout=10):
        """Wait until every connection logged after the mark has ended;
        return their sids."""
        deadline = time.time() + timeout
        while True:
            evs = self.events()
            sids = [e["sid"] for e in evs if e.get("event") == "connect"]
            # The end of a session: posternd logs "disconnect" when the
            # client goes, a state change to "closed" (log_level = debug)
            # after QUIT, "tls_failed" when the handshake fails.
            gone = {e.get("sid") for e in evs
                    if e.get("event") in ("disconnect", "tls_failed") or
                    (e.get("event") == "state" and
                     e.get("line", "").endswith("-> closed"))}
            if all(s in gone for s in sids):
                return sids
            if time.time() > deadline:
                raise AssertionError("posternd sessions %s did not end:\n%s"
                                     % (sids, self.text()))
            time.sleep(0.05)

    def client_lines(self, sid):
        """The lines a client sent in session sid (log_level = debug)."""
        return [e.get("line", "") for e in self.events("client")
                if e.get("sid") == sid]


# --- a scripted SMTP server -------------------------------------------------

class Close(str):
    """A FakeSMTP reply after which the server closes the connection
    ("" for closing without a word)."""


class FakeSMTP:
    """A one-connection-at-a-time SMTP server in a thread.

    ehlo: the EHLO keyword lines; auth: the replies to an AUTH command
    and its continuation lines, in order (each "334 ..." reply makes the
    next client line a continuation; a callable gets the client's line
    and returns the reply); replies: overrides per command verb
    ("MAIL", "RCPT", "DATA", ".", "QUIT", "EHLO", "STARTTLS", "AUTH").  A
    reply of None means: say nothing (the client must time out); a
    Close reply ends the connection after it.  Every
    byte received is kept in .received (per connection), each message in
    .messages (still dot-stuffed, as sent).
    """

    def __init__(self, ehlo=("PIPELINING", "8BITMIME", "AUTH CRAM-MD5"),
                 auth=("535 5.7.8 Authentication credentials invalid",),
                 replies=None, greeting="220 fake.example.test ESMTP",
                 host="127.0.0.1"):
        self.ehlo = list(ehlo)
        self.auth = list(auth)
        self.replies = dict(replies or {})
        self.greeting = greeting
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.host = host
        self.received = []
        self.messages = []
        self.commands = []
        self.pending = []
        self.errors = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self.thread.join(10)
        self.sock.close()

    @property
    def url(self):
        h = "[%s]" % self.host if ":" in self.host else self.host
        return "smtp://%s:%d" % (h, self.port)

    def all_received(self):
        return b"".join(self.received)

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self._session(conn)
            except Exception as e:  # recorded, the test looks
                self.errors.append(repr(e))
            finally:
                conn.close()

    def _session(self, conn):
        conn.settimeout(15)
        buf = b""
        self.received.append(b"")
        idx = len(self.received) - 1

        def send(text):
            if text is None:
                return
            if text:
                conn.sendall(text.encode() + b"\r\n")
            if isinstance(text, Close):
                raise EOFError

        def line():
            nonlocal buf
            while b"\r\n" not in buf:
                if self._stop.is_set():
                    raise EOFError
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    raise EOFError
                if not chunk:
                    raise EOFError
                self.received[idx] += chunk
                buf += chunk
            ln, buf = buf.split(b"\r\n", 1)
            return ln

        auth_left = []
        try:
            send(self.greeting)
            while True:
                ln = line()
                if auth_left:
                    self.commands.append(ln)
                    r = auth_left.pop(0)
                    r = r(ln) if callable(r) else r
                    send(r)
                    if r is None or not r.startswith("334"):
                        auth_left = []
                    continue
                verb = ln.split(b" ", 1)[0].split(b":", 1)[0].upper()
                verb = verb.decode("ascii", "replace")
                self.commands.append(ln)
                # What the client had sent beyond this line when it was
                # read (PIPELINING: the rest of the group).
                self.pending.append((ln, buf))
                if verb in self.replies:
                    r = self.replies[verb]
                    r = r(ln) if callable(r) else r
                    send(r)
                    if verb == "DATA" and r and r.startswith("354"):
                        self._data(line, send)
                    elif verb == "QUIT":
                        return
                    continue
                if verb in ("EHLO", "HELO"):
                    lines = ["fake.example.test"] + self.ehlo
                    send("\r\n".join("250%s%s" % ("-" if i + 1 < len(lines)
                                                  else " ", t)
                                     for i, t in enumerate(lines)))
                elif verb == "AUTH":
                    auth_left = list(self.auth)
                    r = auth_left.pop(0)
                    r = r(ln) if callable(r) else r
                    send(r)
                    if r is None or not r.startswith("334"):
                        auth_left = []
                elif verb in ("MAIL", "RCPT", "RSET", "NOOP"):
                    send("250 2.0.0 Ok")
                elif verb == "DATA":
                    send("354 go ahead")
                    self._data(line, send)
                elif verb == "QUIT":
                    send("221 2.0.0 Bye")
                    return
                else:
                    send("502 5.5.1 Unknown command")
        except EOFError:
            return

    def _data(self, line, send):
        msg = []
        while True:
            ln = line()
            if ln == b".":
                break
            msg.append(ln + b"\r\n")
        self.messages.append(b"".join(msg))
        send(self.replies.get(".", "250 2.0.0 Ok: queued"))


def run_pty(args, env, respond=None, timeout=60):
    """Run postern on a new pseudo-terminal (stdin, stdout and stderr, and
    its controlling terminal).  respond = (prompt, answer): write answer
    once prompt has appeared.  Returns (exit code, everything the
    terminal showed)."""
    import pty
    import select
    import signal

    exe = str(postern_bin())
    pid, fd = pty.fork()
    if pid == 0:  # the child
        try:
            os.execve(exe, [exe, *map(str, args)], env)
        finally:
            os._exit(127)
    out = b""
    answered = respond is None
    deadline = time.time() + timeout
    try:
        while True:
            left = deadline - time.time()
            if left <= 0:
                os.kill(pid, signal.SIGKILL)
                raise AssertionError("postern on a terminal did not finish "
                                     "in %ss; it showed: %r" % (timeout, out))
            r, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not r:
                continue
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child is gone
                chunk = b""
            if not chunk:
                break
            out += chunk
            if not answered and respond[0] in out:
                os.write(fd, respond[1])
                answered = True
    finally:
        _, status = os.waitpid(pid, 0)
        os.close(fd)
    return os.waitstatus_to_exitcode(status), out


def settled(srv):
    """srv, once the connections Posternd.start() made to see that the
    ports are open have ended in the log: a LogMark taken afterwards
    holds only the test's own connections."""
    mark = LogMark(srv, start=0)
    deadline = time.time() + 10
    # start() connected to every port at least once; the log lines may
    # come after it returned.
    while len(mark.events("connect")) < len(srv.ports):
        assert time.time() < deadline, srv.log()
        time.sleep(0.02)
    mark.sessions_done()
    return srv


class TLSSayAndClose:
    """An implicit-TLS server that, once the handshake is done, sends
    `text` and its close_notify in one write (so the client reads both at
    once), then waits for the client to go.  .received: what the client
    sent under TLS."""

    def __init__(self, cert, key, text):
        import ssl
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        self.text = text
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.sock.settimeout(15)
        self.port = self.sock.getsockname()[1]
        self.url = "smtps://127.0.0.1:%d" % self.port
        self.received = b""
        self.errors = []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.thread.join(20)
        self.sock.close()

    def _run(self):
        import ssl
        try:
            conn, _ = self.sock.accept()
        except OSError as e:
            self.errors.append(repr(e))
            return
        conn.settimeout(10)
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = self.ctx.wrap_bio(inc, out, server_side=True)
        try:
            while True:
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    conn.sendall(out.read())
                    data = conn.recv(65536)
                    if not data:
                        raise EOFError("client left during the handshake")
                    inc.write(data)
            obj.write(self.text)
            try:
                obj.unwrap()
            except ssl.SSLWantReadError:
                pass
            conn.sendall(out.read())  # tickets, text, close_notify
            while True:
                data = conn.recv(65536)
                if not data:
                    break
                inc.write(data)
                try:
                    self.received += obj.read(65536)
                except (ssl.SSLError, ssl.SSLZeroReturnError):
                    pass
        except Exception as e:
            self.errors.append(repr(e))
        finally:
            conn.close()
