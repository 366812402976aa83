"""Real smarthosts on 127.0.0.1 for the relay tests: a private Postfix with
Dovecot SASL (passwords and OAuth2 bearer tokens), and aiosmtpd.

PostfixSmarthost (Debian 12: Postfix 3.7, Dovecot 2.3.19)
  - Postfix from its own configuration directory (`postfix -c DIR`, no
    chroot, queue and data directories of its own, inet_interfaces
    127.0.0.1): `ports["starttls"]` an smtpd with STARTTLS,
    `ports["implicit"]` one with implicit TLS (smtpd_tls_wrappermode),
    both smtpd_tls_auth_only=yes and AUTH required for every recipient;
    the certificate is tools/gen-cert.sh's (self.cert, CN localhost, IP
    SANs 127.0.0.1 and ::1).
  - SASL by a private Dovecot (`dovecot -c FILE`, auth socket in DIR): a
    passwd-file (users={addr: password} or {addr: (password, SCHEME)},
    SCHEME as `doveadm pw -s` takes it, default PLAIN) for the password
    mechanisms, and with token_server= the oauth2 passdb
    (introspection_mode = post at the token server's /introspect,
    active_attribute = active) for XOAUTH2 and OAUTHBEARER: Dovecot
    itself checks every bearer token with the token server, so an expired
    or revoked one fails.  mechanisms= sets auth_mechanisms.
  - Recipients: the `mailboxes` (default: the users and rcpt@example.test,
    rcpt@example.org), delivered by virtual(8) into Maildirs; anyone else
    in their domains gets 550 5.1.1 at RCPT, other domains 550 5.7.1;
    reject={addr: "452 4.2.2 Mailbox full"} (or set_reply()) answers
    that recipient with exactly that reply (check_recipient_access, a
    texthash map).  Nothing ever leaves: default_transport is error.
  - Controls: stop()/start() (Postfix down and up; Dovecot stays),
    stop_auth()/start_auth() (Dovecot alone: a session already past EHLO
    gets 454 4.7.0 Temporary authentication failure at AUTH; a new one is
    dropped at its EHLO after STARTTLS, smtpd logging "fatal: no SASL
    authentication mechanisms", and the master holds new connections
    back for service_throttle_time, 1 s here),
    slow(stage, seconds) (a `sleep` restriction: stage "connect" delays
    the greeting, "rcpt", "data", "dot" the reply to RCPT, DATA, the
    final dot; 0 removes it), messages(addr=None) / wait_messages(n),
    maillog() (Postfix's own log: maillog_file, through postlogd),
    dovecot_log(), queue_count().
  Everything lives in a /tmp/pst-sh-* directory of mode 0755 (Postfix's
  and Dovecot's processes run as postfix, dovecot and nobody, and cannot
  enter pytest's 0700 tmp_path; Unix socket paths must be short too);
  at teardown the logs are copied into tmp_path, both servers are
  stopped and the directory is removed.

AiosmtpdSmarthost (python3-aiosmtpd 1.4.3, in this process)
  - STARTTLS (auth_require_tls, so AUTH only after it) or implicit TLS
    (implicit=True), AUTH PLAIN and LOGIN against users={addr: password}
    (a failure answers 535 5.7.8: INTEROP.md's silent-failure quirk is
    avoided with handled=False), reject={addr: reply}, every message in
    memory (self.messages: Msg) and in a Maildir under the given dir.

Fixtures (each stopped at teardown, also when the test failed):
  postfix_smarthost   PostfixSmarthost with passwords and OAuth2 (uses
                      token_server); USER / PASSWORD log in
  aiosmtpd_smarthost  AiosmtpdSmarthost, STARTTLS, USER / PASSWORD
  (test_cert and token_server come from net_util and oauth_server)
Use them from another test file by importing them (pytest finds a
fixture in the test module's namespace), with the ones they use:
  from net_util import test_cert                      # noqa: F401
  from oauth_server import token_server               # noqa: F401
  from smarthost_util import postfix_smarthost        # noqa: F401
Helpers: xoauth2(user, token) and oauthbearer(user, token) build the
SASL responses (not yet base64), b64() encodes, strip_trace() turns a
delivered file back into the message the client sent.
"""
import collections
import glob
import grp
import logging
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import warnings

import pytest

from net_util import b64, free_port, wait_port, wait_until  # noqa: F401

USER = "relay@example.test"  # oauth_server.DEFAULT_USER too
PASSWORD = "relay-pw-7Jq2"
HOSTNAME = "smarthost.example.test"
POSTFIX = "/usr/sbin/postfix"
MASTER = "/usr/lib/postfix/sbin/master"
DOVECOT = "/usr/sbin/dovecot"
INSTALL = ("echo 'postfix postfix/main_mailer_type select No configuration' "
           "| debconf-set-selections && apt-get install -y postfix "
           "dovecot-core (or: tools/deps.sh test)")
STAGES = {"connect": "smtpd_client_restrictions",
          "rcpt": "smtpd_recipient_restrictions",
          "data": "smtpd_data_restrictions",
          "dot": "smtpd_end_of_data_restrictions"}

Msg = collections.namedtuple("Msg", "path raw")


def require_postfix():
    for f in (POSTFIX, DOVECOT, "/usr/bin/doveadm"):
        if not os.access(f, os.X_OK):
            pytest.fail("%s is not installed; as root: %s" % (f, INSTALL),
                        pytrace=False)


def _alive(pid):
    """pid runs (a zombie does not: the master is a daemon, not our child,
    and whoever reaps it may take a while)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _write(path, text):
    """Whole or not at all: a starting smtpd never reads half a file.
    Dated 10 s back: Postfix reads a file modified within the last second
    again and again for up to two seconds (dict_load_fp(), in case it is
    still being edited), and every smtpd here reads main.cf anew."""
    with open(path + ".new", "w") as f:
        f.write(text)
    t = time.time() - 10
    os.utime(path + ".new", (t, t))
    os.rename(path + ".new", path)


def strip_trace(raw):
    """A Maildir file as delivered by virtual(8) -> the message as the
    client sent it: without the Return-Path, X-Original-To and
    Delivered-To lines virtual(8) prepends and the Received: header
    smtpd prepends, with CRLF line ends again (Postfix stores LF)."""
    lines = raw.split(b"\n")
    i = 0
    while i < len(lines) and lines[i].split(b":")[0] in (
            b"Return-Path", b"X-Original-To", b"Delivered-To"):
        i += 1
    if i < len(lines) and lines[i].startswith(b"Received:"):
        i += 1
        while i < len(lines) and lines[i][:1] in (b" ", b"\t"):
            i += 1
    return b"\r\n".join(lines[i:])


class PostfixSmarthost:
    def __init__(self, cert, token_server=None, users=None, mailboxes=None,
                 mechanisms=None, reject=None, logdir=None,
                 hostname=HOSTNAME):
        require_postfix()
        self.token_server = token_server
        self.users = dict(users if users is not None else
                          {USER: PASSWORD})
        self.mailboxes = list(mailboxes if mailboxes is not None else
                              list(self.users) + ["rcpt@example.test",
                                                  "rcpt@example.org"])
        self.mechanisms = mechanisms or (
            "plain login" + (" xoauth2 oauthbearer" if token_server else ""))
        self.reject = dict(reject or {})
        self.delays = {}
        self.logdir = str(logdir) if logdir else None
        self.hostname = hostname
        self.dovecot = None
        self.ports = {"starttls": free_port(), "implicit": free_port()}
        while self.ports["implicit"] == self.ports["starttls"]:
            self.ports["implicit"] = free_port()
        self.dir = tempfile.mkdtemp(prefix="pst-sh-", dir="/tmp")
        try:
            self._setup(cert)
        except BaseException:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise

    def _setup(self, cert):
        d = self.dir
        os.chmod(d, 0o755)
        self.etc = os.path.join(d, "etc")
        self.spool = os.path.join(d, "spool")
        self.data = os.path.join(d, "data")
        self.vmail = os.path.join(d, "vmail")
        self.ddir = os.path.join(d, "dovecot")
        self.auth_sock = os.path.join(d, "auth")
        self.maillog_path = os.path.join(d, "maillog")
        self.cert = os.path.join(d, "cert.pem")
        self.key = os.path.join(d, "key.pem")
        shutil.copy(cert.cert, self.cert)
        shutil.copy(cert.key, self.key)
        os.chmod(self.cert, 0o644)
        os.chmod(self.key, 0o600)
        nobody = pwd.getpwnam("nobody")
        self.uid, self.gid = nobody.pw_uid, nobody.pw_gid
        for p in (self.etc, self.spool, self.data, self.vmail,
                  os.path.join(self.ddir, "run"),
                  os.path.join(self.ddir, "state")):
            os.makedirs(p)
        os.chown(self.data, pwd.getpwnam("postfix").pw_uid, -1)
        os.chown(self.vmail, self.uid, self.gid)
        self._write_dovecot()
        self._write_postfix()

    # --- configuration --------------------------------------------------
    def _write_dovecot(self):
        users = os.path.join(self.ddir, "users")
        with open(users, "w") as f:
            for name, pw in self.users.items():
                pw, scheme = pw if isinstance(pw, tuple) else (pw, "PLAIN")
                if scheme == "PLAIN":
                    stored = "{PLAIN}" + pw
                else:
                    stored = subprocess.run(
                        ["/usr/bin/doveadm", "-O", "pw", "-s", scheme, "-p",
                         pw], capture_output=True, text=True, check=True,
                        timeout=30).stdout.strip()
                f.write("%s:%s\n" % (name, stored))
        os.chown(users, 0, pwd.getpwnam("dovecot").pw_gid)
        os.chmod(users, 0o640)
        oauth = ""
        pw_mechs = " ".join(m for m in self.mechanisms.split()
                            if m.lower() not in ("xoauth2", "oauthbearer"))
        if self.token_server is not None:
            conf = os.path.join(self.ddir, "oauth2.conf.ext")
            with open(conf, "w") as f:
                f.write("introspection_mode = post\n"
                        "introspection_url = %s\n"
                        "username_attribute = username\n"
                        "active_attribute = active\n"
                        "active_value = true\n"
                        "tls_ca_cert_file = %s\n"
                        "timeout_msecs = 10000\n"
                        % (self.token_server.introspect_url, self.cert))
            oauth = ("passdb {\n  driver = oauth2\n"
                     "  mechanisms = xoauth2 oauthbearer\n"
                     "  args = %s\n}\n" % conf)
        with open(os.path.join(self.ddir, "dovecot.conf"), "w") as f:
            f.write("""# written by smarthost_util.py: SASL for Postfix only
base_dir = %(dd)s/run/
state_dir = %(dd)s/state
instance_name = pst-sh-%(port)d
protocols =
listen = 127.0.0.1
log_path = %(dd)s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = %(mechs)s
auth_failure_delay = 0
auth_cache_size = 0
auth_verbose = yes
passdb {
  driver = passwd-file
  mechanisms = %(pw_mechs)s
  args = scheme=PLAIN %(users)s
}
%(oauth)suserdb {
  driver = static
  args = uid=%(uid)d gid=%(gid)d home=/nonexistent
}
service auth {
  unix_listener %(sock)s {
    mode = 0660
    user = postfix
    group = postfix
  }
}
# Dovecot's auth penalty (up to 15 s per failure from one address,
# INTEROP.md) would slow every test after a failed login: the auth
# process cannot connect to this socket, which turns the penalty off.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
""" % dict(dd=self.ddir, port=self.ports["starttls"], mechs=self.mechanisms,
           pw_mechs=pw_mechs or "none", users=users, oauth=oauth,
           uid=self.uid, gid=self.gid, sock=self.auth_sock))

    def _write_maps(self):
        _write(os.path.join(self.etc, "vmailbox"), "".join(
            "%s %s/%s/\n" % (m, m.partition("@")[2], m.partition("@")[0])
            for m in self.mailboxes))
        # access(5): the whole text after the address is the reply.
        _write(os.path.join(self.etc, "rcpt_access"), "".join(
            "%s %s\n" % (a, r) for a, r in self.reject.items()))

    def _restrictions(self, stage, rest):
        n = self.delays.get(stage)
        return ("sleep %d, " % n if n else "") + rest

    def _write_postfix(self):
        self._write_maps()
        domains = sorted({m.partition("@")[2] for m in self.mailboxes})
        _write(os.path.join(self.etc, "main.cf"), """\
# written by smarthost_util.py
compatibility_level = 3.6
queue_directory = %(spool)s
data_directory = %(data)s
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
maillog_file = %(maillog)s
maillog_file_prefixes = %(dir)s
myhostname = %(host)s
mydomain = example.test
myorigin = $myhostname
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_transport = error:5.1.1 no local delivery here
default_transport = error:5.7.1 this test smarthost sends nothing out
relay_domains =
relayhost =
virtual_mailbox_domains = %(domains)s
virtual_mailbox_base = %(vmail)s
virtual_mailbox_maps = texthash:%(etc)s/vmailbox
virtual_uid_maps = static:%(uid)d
virtual_gid_maps = static:%(gid)d
smtpd_banner = $myhostname ESMTP Postfix
local_header_rewrite_clients =
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = %(sock)s
smtpd_tls_security_level = may
smtpd_tls_cert_file = %(cert)s
smtpd_tls_key_file = %(key)s
smtpd_tls_auth_only = yes
smtpd_tls_received_header = no
smtpd_delay_reject = %(delay_reject)s
smtpd_client_restrictions = %(client)s
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = %(rcpt)s
smtpd_data_restrictions = %(data_r)s
smtpd_end_of_data_restrictions = %(dot)s
smtpd_error_sleep_time = 0
service_throttle_time = 1s
biff = no
notify_classes =
""" % dict(spool=self.spool, data=self.data, maillog=self.maillog_path,
           dir=self.dir, host=self.hostname, domains=" ".join(domains),
           vmail=self.vmail, etc=self.etc, uid=self.uid, gid=self.gid,
           sock=self.auth_sock, cert=self.cert, key=self.key,
           delay_reject="no" if self.delays.get("connect") else "yes",
           client=self._restrictions("connect", "permit"),
           rcpt=self._restrictions(
               "rcpt", "check_recipient_access texthash:%s/rcpt_access, "
               "reject_unlisted_recipient, reject_unauth_destination, "
               "permit" % self.etc),
           data_r=self._restrictions("data", "permit"),
           dot=self._restrictions("dot", "permit")))
        # The daemons of master.cf.proto, none chrooted (the chroot would
        # need copies of /etc files), and the two smtpd listeners.
        master = [
            "127.0.0.1:%d inet n - n - - smtpd\n"
            "  -o max_use=1" % self.ports["starttls"],
            "127.0.0.1:%d inet n - n - - smtpd\n"
            "  -o max_use=1\n"
            "  -o smtpd_tls_wrappermode=yes\n"
            "  -o smtpd_tls_security_level=encrypt" % self.ports["implicit"],
            "pickup unix n - n 60 1 pickup",
            "cleanup unix n - n - 0 cleanup",
            "qmgr unix n - n 300 1 qmgr",
            "tlsmgr unix - - n 1000? 1 tlsmgr",
            "rewrite unix - - n - - trivial-rewrite",
            "bounce unix - - n - 0 bounce",
            "defer unix - - n - 0 bounce",
            "trace unix - - n - 0 bounce",
            "verify unix - - n - 1 verify",
            "flush unix n - n 1000? 0 flush",
            "proxymap unix - - n - - proxymap",
            "proxywrite unix - - n - 1 proxymap",
            "smtp unix - - n - - smtp",
            "relay unix - - n - - smtp",
            "showq unix n - n - - showq",
            "error unix - - n - - error",
            "retry unix - - n - - error",
            "discard unix - - n - - discard",
            "local unix - n n - - local",
            "virtual unix - n n - - virtual",
            "lmtp unix - - n - - lmtp",
            "anvil unix - - n - 1 anvil",
            "scache unix - - n - 1 scache",
            "postlog unix-dgram n - n - 1 postlogd",
        ]
        _write(os.path.join(self.etc, "master.cf"),
               "# written by smarthost_util.py\n" + "\n".join(master) + "\n")

    # --- processes ------------------------------------------------------
    def postfix(self, *args, check=True):
        p = subprocess.run([POSTFIX, "-c", self.etc] + list(args),
                           capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise RuntimeError("postfix %s failed: %s%s\n%s" % (
                " ".join(args), p.stdout, p.stderr, self.maillog()[-3000:]))
        return p

    def master_pid(self):
        try:
            with open(os.path.join(self.spool, "pid", "master.pid")) as f:
                pid = int(f.read().split()[0])
            return pid if _alive(pid) else None
        except (OSError, ValueError, IndexError):
            return None

    def start_auth(self, timeout=15):
        if self.dovecot is not None and self.dovecot.poll() is None:
            return
        if os.path.exists(self.auth_sock):
            os.unlink(self.auth_sock)
        out = open(os.path.join(self.ddir, "dovecot.out"), "ab")
        self.dovecot = subprocess.Popen(
            [DOVECOT, "-F", "-c", os.path.join(self.ddir, "dovecot.conf")],
            stdout=out, stderr=out, start_new_session=True)
        out.close()
        if not wait_until(lambda: os.path.exists(self.auth_sock) or
                          self.dovecot.poll() is not None, timeout) or \
                self.dovecot.poll() is not None:
            raise RuntimeError("dovecot did not start:\n" + self.dovecot_log())

    def stop_auth(self, timeout=15):
        p, self.dovecot = self.dovecot, None
        if p is None or p.poll() is not None:
            return
        # SIGTERM to its whole process group: each process leaves at once
        # (to the master alone, it waits a second for its children).
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)

    def _make_dirs(self):
        """The queue and data directories with the owners and modes of
        Postfix's own table (postfix-files, what `postfix post-install
        create-missing` reads; this is seconds faster)."""
        post = pwd.getpwnam("postfix").pw_uid
        postdrop = grp.getgrnam("postdrop").gr_gid
        with open("/etc/postfix/postfix-files") as f:
            for line in f:
                fld = line.strip().split(":")
                if len(fld) < 5 or fld[1] != "d" or not fld[0].startswith(
                        ("$queue_directory", "$data_directory")):
                    continue
                path = fld[0].replace("$queue_directory", self.spool).replace(
                    "$data_directory", self.data)
                os.makedirs(path, exist_ok=True)
                os.chown(path, post if fld[2] == "$mail_owner" else 0,
                         postdrop if fld[3] == "$setgid_group" else -1)
                os.chmod(path, int(fld[4], 8))

    def start(self, timeout=30):
        """Dovecot (if not running), then Postfix; returns once both
        listeners greet."""
        self.start_auth()
        self._make_dirs()
        # What `postfix start` runs once its integrity checks pass (they
        # and the command's own logging take seconds): the master, which
        # exits once its daemon child reports that it is up (-w).
        p = subprocess.run([MASTER, "-c", self.etc, "-w"],
                           capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError("postfix master failed: %s%s\n%s" % (
                p.stdout, p.stderr, self.maillog()[-3000:]))
        for port in self.ports.values():
            if not wait_port(port, timeout):
                raise RuntimeError("postfix did not listen on %d:\n%s"
                                   % (port, self.maillog()[-3000:]))
        if not wait_port(self.ports["starttls"], timeout, greeting=True):
            raise RuntimeError("postfix did not greet:\n" +
                               self.maillog()[-3000:])
        return self

    def stop(self, timeout=30):
        """Postfix down (connections are refused from then on); Dovecot
        stays.  What `postfix stop` does (SIGTERM to the master, which
        takes its children with it), without its one-second polls."""
        pid = self.master_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: not _alive(pid), timeout):
            os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: not any(wait_port(p, 0.1) for p in
                                   self.ports.values()), 10)

    def close(self):
        """Everything stopped, the logs copied to logdir, DIR removed."""
        try:
            self.stop()
        finally:
            self.stop_auth()
            if self.logdir:
                for f in (self.maillog_path,
                          os.path.join(self.ddir, "dovecot.log"),
                          os.path.join(self.ddir, "dovecot.out")):
                    if os.path.exists(f):
                        shutil.copy(f, os.path.join(
                            self.logdir, "smarthost-" + os.path.basename(f)))
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc):
        self.close()

    # --- changes while running -------------------------------------------
    def _reload(self):
        """New settings for new connections.  Every smtpd serves one
        connection (max_use=1) and reads main.cf and the maps when it
        starts, so rewriting them (atomically) is enough: no `postfix
        reload`, whose old idle smtpd processes would go on serving."""
        self._write_postfix()

    def set_reply(self, addr, reply):
        """RCPT TO:<addr> answers `reply` (e.g. "550 5.1.1 gone" or
        "451 4.3.0 try later"); None restores normal handling."""
        if reply is None:
            self.reject.pop(addr, None)
        else:
            self.reject[addr] = reply
        self._reload()

    def slow(self, stage, seconds):
        """Delay the reply of stage ("connect": the greeting; "rcpt",
        "data", "dot") by seconds (0: no delay), for new connections."""
        assert stage in STAGES, stage
        self.delays[stage] = int(seconds)
        self._reload()

    # --- results --------------------------------------------------------
    def messages(self, addr=None):
        """Every delivered message (Msg(path, raw bytes as stored)), the
        oldest first; only addr's with addr."""
        if addr:
            local, _, domain = addr.partition("@")
            pat = os.path.join(self.vmail, domain, local)
        else:
            pat = os.path.join(self.vmail, "*", "*")
        files = []
        for sub in ("new", "cur"):
            files += glob.glob(os.path.join(pat, sub, "*"))
        files.sort(key=lambda f: (os.stat(f).st_mtime, f))
        out = []
        for f in files:
            with open(f, "rb") as fh:
                out.append(Msg(f, fh.read()))
        return out

    def wait_messages(self, n, addr=None, timeout=15):
        """The messages once there are at least n (else AssertionError)."""
        got = wait_until(lambda: len(self.messages(addr)) >= n, timeout)
        if not got:
            raise AssertionError("%d messages after %ss, want %d\n%s" % (
                len(self.messages(addr)), timeout, n,
                self.maillog()[-3000:]))
        return self.messages(addr)

    def queue_count(self):
        n = 0
        for q in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(os.path.join(self.spool, q)):
                n += len(files)
        return n

    def maillog(self):
        try:
            with open(self.maillog_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def dovecot_log(self):
        text = ""
        for f in ("dovecot.log", "dovecot.out"):
            try:
                with open(os.path.join(self.ddir, f), errors="replace") as fh:
                    text += fh.read()
            except OSError:
                pass
        return text


# --- aiosmtpd ----------------------------------------------------------------

class AiosmtpdSmarthost:
    def __init__(self, cert, maildir, users=None, reject=None,
                 implicit=False, hostname="aiosmtpd.example.test"):
        import aiosmtpd.controller
        from aiosmtpd.smtp import AuthResult, LoginPassword
        self.users = dict(users if users is not None else {USER: PASSWORD})
        self.reject = dict(reject or {})
        self.maildir = str(maildir)
        self.messages = []
        self.auth_calls = []
        self.lock = threading.Lock()
        self.port = free_port()
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(self.maildir, sub), exist_ok=True)
        outer = self

        def authenticator(server, session, envelope, mechanism, data):
            ok = False
            if isinstance(data, LoginPassword):
                want = outer.users.get(data.login.decode("utf-8", "replace"))
                ok = want is not None and data.password == want.encode()
            outer.auth_calls.append((mechanism, getattr(data, "login", None),
                                     ok))
            # handled=False: aiosmtpd answers 535 5.7.8 itself (a bare
            # success=False answers nothing at all; INTEROP.md).
            return AuthResult(success=ok, handled=False,
                              auth_data=data if ok else None)

        class Handler:
            async def handle_RCPT(self, server, session, envelope, address,
                                  options):
                reply = outer.reject.get(address)
                if reply:
                    return reply
                envelope.rcpt_tos.append(address)
                return "250 2.1.5 Ok"

            async def handle_DATA(self, server, session, envelope):
                raw = envelope.original_content or envelope.content
                name = "%d.%d.aiosmtpd" % (time.time_ns(), len(
                    outer.messages))
                tmp = os.path.join(outer.maildir, "tmp", name)
                with open(tmp, "wb") as f:
                    f.write(raw)
                os.rename(tmp, os.path.join(outer.maildir, "new", name))
                # aiosmtpd 1.4: login_data is the login name (bytes), or
                # the auth_data the authenticator returned.
                login = getattr(session.login_data, "login",
                                session.login_data)
                with outer.lock:
                    outer.messages.append(AioMsg(
                        envelope.mail_from, list(envelope.rcpt_tos), raw,
                        login.decode() if login else None,
                        list(envelope.mail_options)))
                return "250 2.0.0 Ok: queued as %s" % name

        kw = {}
        if implicit:
            kw["ssl_context"] = cert.server_context()
        else:
            kw["tls_context"] = cert.server_context()
            kw["require_starttls"] = True
        class Controller(aiosmtpd.controller.Controller):
            def factory(self):
                # aiosmtpd warns, per connection, of AUTH without
                # STARTTLS, which implicit TLS is.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    return super().factory()

        logging.getLogger("mail.log").setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.ctl = Controller(
                Handler(), hostname="127.0.0.1", port=self.port,
                server_hostname=hostname, authenticator=authenticator,
                auth_required=True, auth_require_tls=not implicit,
                ready_timeout=10, **kw)

    def start(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.ctl.start()
        return self

    def stop(self):
        self.ctl.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def wait_messages(self, n, timeout=10):
        if not wait_until(lambda: len(self.messages) >= n, timeout):
            raise AssertionError("%d messages, want %d"
                                 % (len(self.messages), n))
        return list(self.messages)


AioMsg = collections.namedtuple("AioMsg", "mail_from rcpt_tos raw login "
                                "mail_options")


# --- fixtures ----------------------------------------------------------------

@pytest.fixture
def postfix_smarthost(tmp_path, test_cert, token_server):
    s = PostfixSmarthost(test_cert, token_server=token_server,
                         logdir=tmp_path)
    try:
        s.start()
        yield s
    finally:
        s.close()


@pytest.fixture
def aiosmtpd_smarthost(tmp_path, test_cert):
    s = AiosmtpdSmarthost(test_cert, tmp_path / "aiosmtpd-Maildir")
    s.start()
    try:
        yield s
    finally:
        s.stop()


def xoauth2(user, token):
    """The XOAUTH2 initial response, not yet base64 (Google's format)."""
    return "user=%s\x01auth=Bearer %s\x01\x01" % (user, token)


def oauthbearer(user, token, host="127.0.0.1", port=587):
    """RFC 7628 §3.1 client response, not yet base64."""
    return "n,a=%s,\x01host=%s\x01port=%d\x01auth=Bearer %s\x01\x01" % (
        user, host, port, token)

