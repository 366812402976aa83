"""Start and stop a real posternd for the end-to-end tests.

A Posternd object writes a configuration into a temporary directory (a
self-signed certificate from tools/gen-cert.sh, a user file made with
`postern user add`, a Maildir tree and a spool), starts posternd on free
loopback ports, waits until every listener is up, and stops it at the
end, failing the test if posternd did not exit 0 on SIGTERM.
"""
import base64
import os
import re
import signal
import socket
import ssl
import subprocess
import time
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build_dir():
    return os.environ.get("POSTERN_BUILD", os.path.join(ROOT, "build"))


def posternd_bin():
    return os.path.join(build_dir(), "src", "posternd", "posternd")


def postern_bin():
    return os.path.join(build_dir(), "src", "postern", "postern")


def free_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


ALL_SCHEMES = "SCRAM-SHA-256,SCRAM-SHA-1,CRAM-MD5,DIGEST-MD5,SHA512-CRYPT"


class Posternd:
    """One posternd with listeners named by their role:

    plain     no TLS, auth_before_tls = all (legacy LAN)
    starttls  STARTTLS, auth_before_tls = none
    implicit  implicit TLS
    legacy    STARTTLS, auth_before_tls = challenge
    """

    def __init__(self, tmp, users=None, extra_global="", listeners=None,
                 hostname="mail.example.test", env=None, extra_sections=""):
        self.dir = str(tmp)
        # Extra environment for posternd (e.g. POSTERN_MAILDIR_NO_TMPFILE).
        self.env = dict(env or {})
        self.hostname = hostname
        self.users = users if users is not None else {
            "tim@example.test": ("tanstaaftanstaaf", ALL_SCHEMES, ""),
        }
        self.ports = {}
        self.proc = None
        self.log_path = os.path.join(self.dir, "posternd.log")
        self.conf = os.path.join(self.dir, "posternd.conf")
        self.userfile = os.path.join(self.dir, "users")
        self.maildir_root = os.path.join(self.dir, "mail")
        self.spool = os.path.join(self.dir, "spool")
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.extra_global = extra_global
        # Sections after the listeners ("[relay NAME]" ...).
        self.extra_sections = extra_sections
        self.listener_spec = listeners or {
            "plain": "tls = none\nauth = required\nauth_before_tls = all\n",
            "starttls": "tls = starttls\nauth = required\nauth_before_tls = none\n",
            "implicit": "tls = implicit\nauth = required\n",
            "legacy": "tls = starttls\nauth = required\nauth_before_tls = challenge\n",
        }

    # --- set-up ---------------------------------------------------------
    def write_users(self):
        open(self.userfile, "w").close()
        for name, (pw, schemes, extra) in self.users.items():
            # DIGEST-MD5 verifiers are made for the realm posternd
            # offers: its hostname.
            p = subprocess.run([postern_bin(), "user", "add", "-f", self.userfile,
                                name, "-s", schemes, "-r", self.hostname],
                               input=pw + "\n",
                               capture_output=True, text=True)
            assert p.returncode == 0, p.stderr
            if extra:
                # Append extra fields to the user's line (passwd-file
                # columns: name:pass:uid:gid:gecos:home:shell:extra).
                lines = open(self.userfile).read().split("\n")
                out = []
                for line in lines:
                    if line.startswith(name + ":"):
                        fields = line.split(":")
                        while len(fields) < 7:
                            fields.append("")
                        line = ":".join(fields[:7] + [extra])
                    out.append(line)
                open(self.userfile, "w").write("\n".join(out))

    def throttle_default(self):
        """Tests make many failed logins from 127.0.0.1: exempt loopback
        from brute-force throttling unless a test sets its own policy."""
        if "auth_throttle" in self.extra_global:
            return ""
        return "auth_throttle_exempt = 127.0.0.0/8 ::1\n"

    def failure_delay_default(self):
        """Every wrong password would wait a second (auth_failure_delay's
        default): none unless a test sets it."""
        if "auth_failure_delay" in self.extra_global:
            return ""
        return "auth_failure_delay = 0\n"

    def write_config(self):
        text = (f"hostname = {self.hostname}\n"
                f"userdb = passwd-file:{self.userfile}\n"
                f"mailbox = maildir:{self.maildir_root}/%d/%n\n"
                f"spool = {self.spool}\n"
                f"tls_cert = {self.cert}\n"
                f"tls_key = {self.key}\n"
                f"{self.throttle_default()}"
                f"{self.failure_delay_default()}"
                f"{self.extra_global}\n")
        for name, spec in self.listener_spec.items():
            while name not in self.ports:
                # Two calls can hand out the same free port: keep them
                # distinct (posternd refuses overlapping listeners).
                port = free_port()
                if port not in self.ports.values():
                    self.ports[name] = port
            text += (f"[listener {name}]\naddress = 127.0.0.1:{self.ports[name]}\n"
                     f"{spec}\n")
        text += self.extra_sections
        with open(self.conf, "w") as f:
            f.write(text)

    def prepare(self):
        """Write every file start() needs (certificate, user file,
        configuration, directories) without starting posternd."""
        os.makedirs(self.maildir_root, exist_ok=True)
        os.makedirs(self.spool, exist_ok=True)
        if not os.path.exists(self.cert):
            subprocess.run([os.path.join(ROOT, "tools", "gen-cert.sh"), "-t", "ec",
                            self.hostname, self.dir], check=True,
                           capture_output=True)
        if not os.path.exists(self.userfile):
            self.write_users()
        self.write_config()
        return self

    def start(self, timeout=15):
        self.prepare()
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen([posternd_bin(), "-c", self.conf],
                                     stdout=self.logf, stderr=self.logf,
                                     env=dict(os.environ, **self.env))
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("posternd exited %s:\n%s" % (self.proc.returncode,
                                                                 self.log()))
            if all(self._port_open(p) for p in self.ports.values()):
                return self
            time.sleep(0.05)
        raise RuntimeError("posternd did not start:\n" + self.log())

    @staticmethod
    def _port_open(port):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            return False

    # --- running ---------------------------------------------------------
    def log(self):
        try:
            return open(self.log_path, encoding="utf-8", errors="replace").read()
        except OSError:
            return ""

    def wait_log(self, pattern, timeout=10):
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while time.time() < deadline:
            if rx.search(self.log()):
                return True
            time.sleep(0.05)
        return False

    def events(self, event, **match):
        """The log lines of one event, each as a dict of its key=value
        pairs, that carry every key=value of match."""
        out = []
        for line in self.log().splitlines():
            kv = parse_log_line(line)
            if kv.get("event") != event:
                continue
            if all(kv.get(k) == v for k, v in match.items()):
                out.append(kv)
        return out

    def wait_event(self, event, timeout=10, count=1, **match):
        """Wait until at least count lines of event (with match) are in
        the log; returns them, or [] after timeout seconds."""
        deadline = time.time() + timeout
        while True:
            ev = self.events(event, **match)
            if len(ev) >= count:
                return ev
            if time.time() >= deadline:
                return []
            time.sleep(0.05)

    def hup(self):
        self.proc.send_signal(signal.SIGHUP)

    def wait_exit(self, timeout=20):
        """The exit code once posternd exits (killed after timeout)."""
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("posternd did not exit:\n" + self.log())

    def stop(self, timeout=20):
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("posternd did not stop on SIGTERM:\n" + self.log())
        self.logf.close()
        return rc

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    # --- mail ---------------------------------------------------------------
    def maildir(self, address):
        local, domain = address.split("@")
        return os.path.join(self.maildir_root, domain, local)

    def messages(self, address):
        """The delivered messages of address, oldest first, as bytes."""
        new = os.path.join(self.maildir(address), "new")
        if not os.path.isdir(new):
            return []
        names = sorted(os.listdir(new),
                       key=lambda n: os.stat(os.path.join(new, n)).st_mtime_ns)
        return [open(os.path.join(new, n), "rb").read() for n in names]

    def spool_files(self):
        tmp = os.path.join(self.spool, "tmp")
        return os.listdir(tmp) if os.path.isdir(tmp) else []

    def open_spool_files(self):
        """The spool files posternd has open: named ones, and unnamed
        (O_TMPFILE) ones, which /proc shows as "SPOOL/tmp/#INODE
        (deleted)"."""
        out = []
        fds = f"/proc/{self.proc.pid}/fd"
        prefix = os.path.join(self.spool, "tmp") + "/"
        try:
            names = os.listdir(fds)
        except FileNotFoundError:
            return out
        for fd in names:
            try:
                target = os.readlink(os.path.join(fds, fd))
            except OSError:
                continue
            if target.startswith(prefix):
                out.append(target[len(prefix):])
        return sorted(out)

    def maildir_files(self, address):
        """Every file under address's Maildir (tmp/, new/ and cur/)."""
        out = []
        for sub in ("tmp", "new", "cur"):
            d = os.path.join(self.maildir(address), sub)
            if os.path.isdir(d):
                out += [os.path.join(sub, n) for n in os.listdir(d)]
        return out

    # --- clients -----------------------------------------------------------
    def ssl_context(self):
        """A client TLS context that trusts (only) posternd's certificate
        and checks the name 127.0.0.1 (the certificate carries it)."""
        return ssl.create_default_context(cafile=self.cert)

    def raw(self, listener, timeout=10):
        """An SMTPRaw on listener's port (TLS first for "implicit");
        the greeting is not read."""
        port = self.ports[listener]
        if self.listener_spec.get(listener, "").find("tls = implicit") >= 0:
            return SMTPRaw.implicit(port, self.ssl_context(), timeout=timeout)
        return SMTPRaw(port, timeout=timeout)


def read_all_replies(r):
    """Every reply on SMTPRaw r until the server closes."""
    out = []
    while True:
        try:
            out.append(r.reply())
        except (EOFError, ConnectionResetError):
            return out


def wait_until(cond, timeout=10, interval=0.05):
    """Poll cond() until it is true (returns True) or timeout seconds
    pass (returns False)."""
    deadline = time.time() + timeout
    while True:
        if cond():
            return True
        if time.time() >= deadline:
            return False
        time.sleep(interval)


def parse_log_line(line):
    """key=value pairs of one log line; values may be "quoted"."""
    kv = {}
    for m in re.finditer(r'(\w+)=("(?:[^"\\]|\\.)*"|\S*)', line):
        v = m.group(2)
        if v.startswith('"'):
            v = re.sub(r'\\(.)', r'\1', v[1:-1])
        kv[m.group(1)] = v
    return kv


def b64(data):
    """Base64 of str (UTF-8) or bytes, as str."""
    if isinstance(data, str):
        data = data.encode()
    return base64.b64encode(data).decode()


def unique_rcpt(tag="rcpt", domain="example.test"):
    """A recipient address nobody else uses, so that tests sharing one
    posternd see only their own messages."""
    tag = re.sub(r"[^a-z0-9-]", "-", tag.lower())[:40]
    return f"{tag}-{uuid.uuid4().hex[:10]}@{domain}"


def make_message(subject="test", body="Hello.\r\n", sender="tim@example.test",
                 to="bob@example.test", extra=b""):
    """A small RFC 5322 message with CRLF line ends, as bytes."""
    msg = (f"From: <{sender}>\r\nTo: <{to}>\r\nSubject: {subject}\r\n"
           f"Message-ID: <{uuid.uuid4().hex}@example.test>\r\n\r\n"
           ).encode() + extra + body.encode()
    return msg


def strip_return_path(msg):
    """The message without the Return-Path line local delivery puts first
    (RFC 5321 §4.4: the envelope sender)."""
    assert re.match(rb"Return-Path: <[^<>\r\n]*>\r\n", msg), msg[:200]
    return msg[msg.index(b"\r\n") + 2:]


def strip_received(msg):
    """The message without the Return-Path and Received header fields
    posternd added (the first two, with their continuation lines)."""
    msg = strip_return_path(msg)
    assert msg.startswith(b"Received: "), msg[:200]
    lines = msg.split(b"\r\n")
    i = 1
    while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
        i += 1
    return b"\r\n".join(lines[i:])


class SMTPRaw:
    """A raw SMTP connection for exact reply checks."""

    def __init__(self, port, host="127.0.0.1", timeout=10):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.timeout = timeout

    @classmethod
    def implicit(cls, port, context, host="127.0.0.1", timeout=10):
        """A connection under TLS from the first byte (RFC 8314)."""
        r = cls(port, host=host, timeout=timeout)
        r.sock = context.wrap_socket(r.sock, server_hostname=host)
        return r

    def starttls(self, context, host="127.0.0.1"):
        """Run the TLS handshake on the connection (after the 220 to
        STARTTLS).  Bytes the server sent in clear after that 220 would be
        an error: they are returned (b"" when none) and dropped."""
        leftover, self.buf = self.buf, b""
        self.sock = context.wrap_socket(self.sock, server_hostname=host)
        return leftover

    def ehlo(self, name="client.example.test"):
        """EHLO; returns (code, {keyword: parameters})."""
        code, lines = self.cmd("EHLO " + name)
        kw = {}
        for line in lines[1:]:
            word, _, rest = line[4:].partition(" ")
            kw[word.upper()] = rest
        return code, kw

    def login(self, user="tim@example.test", password="tanstaaftanstaaf"):
        """AUTH PLAIN with an initial response; returns the reply."""
        return self.cmd("AUTH PLAIN " + b64(f"\0{user}\0{password}"))

    def send(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def reply(self):
        """One whole reply: (code, [lines])."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise EOFError("connection closed; got %r" % self.buf)
                self.buf += chunk
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line.decode("utf-8", "replace"))
            if len(line) < 4 or line[3:4] == b" ":
                return int(line[:3]), lines

    def cmd(self, line):
        self.send(line + "\r\n")
        return self.reply()

    def closed(self, timeout=5):
        """True when the server closed the connection (EOF)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self):
        self.sock.close()


def start_wrapped(p, prefix=(), preexec_fn=None, timeout=15):
    """Posternd.start() for p, but run as prefix + [posternd, -c, conf]
    (a wrapper such as valgrind) and with preexec_fn run in the child
    before exec (e.g. a resource limit).  p.stop(), p.kill() and
    p.wait_exit() work as after start()."""
    p.prepare()
    p.logf = open(p.log_path, "ab")
    p.proc = subprocess.Popen(list(prefix) + [posternd_bin(), "-c", p.conf],
                              stdout=p.logf, stderr=p.logf,
                              preexec_fn=preexec_fn,
                              env=dict(os.environ, **p.env))
    deadline = time.time() + timeout
    while time.time() < deadline:
        if p.proc.poll() is not None:
            raise RuntimeError("posternd exited %s:\n%s" % (p.proc.returncode,
                                                             p.log()))
        if all(p._port_open(port) for port in p.ports.values()):
            return p
        time.sleep(0.05)
    p.kill()
    raise RuntimeError("posternd did not start:\n" + p.log())
