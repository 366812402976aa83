#!/usr/bin/python3
"""bench/run.py - posternd side by side with Postfix+Dovecot, aiosmtpd and
Postfix's smtp-sink, with the same `postern bench` load (issue 7).

    bench/run.py [BUILD_DIR] [--duration S] [--reps N] [--quick] ...

Everything runs on 127.0.0.1 from a fresh directory (removed at the end
unless --keep): posternd from BUILD_DIR with a configuration written
here; Postfix from its own configuration directory (`postfix -c DIR`)
with Dovecot SASL (`dovecot -c FILE`, a passwd-file) and virtual(8)
delivery to a Maildir; aiosmtpd (bench/aiosmtpd_maildir.py, Maildir, no
fsync); smtp-sink (stores nothing, and answers AUTH with 250, so it runs
without AUTH).  Nothing of the machine's own mail configuration is read
or changed, and every server started here is stopped at the end.

Missing Debian packages are installed with apt-get when run as root;
otherwise the exact command is printed and the script stops (exit 69).

Results: a dated entry in bench/RESULTS.md (--results), a plot
bench/sessions-vs-concurrency-DATE.png, and the raw JSON of every run in the
work directory (bench-results.json).  Run by hand, never by `make test`;
10 to 15 minutes with the defaults (--quick: about 5); the work
directory grows to about 2 GB (every message delivered stays there until
the end).
"""
import argparse
import datetime
import json
import os
import platform
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
HOST = "mail.example.test"
USER = "bench@example.test"
CLK_TCK = os.sysconf("SC_CLK_TCK")
NOFILE = 65536

# (Debian package, a file it installs or a Python module "py:NAME")
PACKAGES = [
    ("postfix", "/usr/sbin/postfix"),
    ("dovecot-core", "/usr/sbin/dovecot"),
    ("python3-aiosmtpd", "py:aiosmtpd"),
    ("msmtp", "/usr/bin/msmtp"),
    ("hyperfine", "/usr/bin/hyperfine"),
    ("gnuplot-nox", "/usr/bin/gnuplot"),
    ("valgrind", "/usr/bin/valgrind"),
    ("linux-perf", "/usr/bin/perf"),
    ("openssl", "/usr/bin/openssl"),
]


def log(msg):
    print("bench: " + msg, file=sys.stderr, flush=True)


def die(msg, code=1):
    log(msg)
    sys.exit(code)


# --- Packages -------------------------------------------------------------

def have(what):
    if what.startswith("py:"):
        return subprocess.run(["/usr/bin/python3", "-c",
                               "import " + what[3:]],
                              capture_output=True).returncode == 0
    return os.path.exists(what)


def ensure_packages(install, packages=None):
    missing = [p for p, what in (packages or PACKAGES) if not have(what)]
    if not missing:
        return
    cmd = ["apt-get", "install", "-y", "--no-install-recommends"] + missing
    shown = ("echo 'postfix postfix/main_mailer_type select No "
             "configuration' | debconf-set-selections && "
             "DEBIAN_FRONTEND=noninteractive " + " ".join(cmd))
    if os.geteuid() != 0 or not install:
        die("missing packages: %s; install them as root with:\n    %s"
            % (" ".join(missing), shown), 69)
    log("installing " + " ".join(missing))
    # "No configuration": the package must not set up (or start) a
    # system Postfix; this script brings its own configuration.
    subprocess.run(["debconf-set-selections"], check=True,
                   input=b"postfix postfix/main_mailer_type select "
                         b"No configuration\n")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(["apt-get", "update"], env=env, check=True)
        subprocess.run(cmd, env=env, check=True)


# --- Processes: CPU and memory ---------------------------------------------

def proc_children():
    kids = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                st = f.read()
        except OSError:
            continue
        ppid = int(st[st.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    return kids


def proc_tree(roots):
    kids = proc_children()
    out, todo = [], [p for p in roots if p]
    while todo:
        p = todo.pop()
        if p in out:
            continue
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(roots):
    """utime+stime of every process in the trees, plus the children each
    has reaped (cutime+cstime), so processes that come and go during a
    run (Postfix's smtpd, cleanup, virtual) are counted once."""
    total = 0
    for p in proc_tree(roots):
        try:
            with open("/proc/%d/stat" % p) as f:
                st = f.read()
        except OSError:
            continue
        f = st[st.rindex(")") + 2:].split()
        total += sum(int(x) for x in f[11:15])
    return total / CLK_TCK


def memory_kib(roots):
    """(sum of VmRSS, sum of Pss) over the trees, KiB."""
    rss = pss = 0
    for p in proc_tree(roots):
        try:
            with open("/proc/%d/status" % p) as f:
                m = re.search(r"^VmRSS:\s+(\d+)", f.read(), re.M)
            rss += int(m.group(1)) if m else 0
            with open("/proc/%d/smaps_rollup" % p) as f:
                m = re.search(r"^Pss:\s+(\d+)", f.read(), re.M)
            pss += int(m.group(1)) if m else 0
        except OSError:
            continue
    return rss, pss


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(NOFILE, soft)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(want, hard)))
    except (ValueError, OSError):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout, proc=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5) as s:
                s.settimeout(2)
                s.recv(512)  # the greeting: the server is really up
                return True
        except OSError:
            time.sleep(0.1)
    return False


def stop_proc(p, timeout=30):
    if p is None or p.poll() is not None:
        return
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


# --- Servers ---------------------------------------------------------------

class Server:
    name = "?"
    durable = False
    durable_text = "no"
    auth = True
    tls = True

    def __init__(self, w):
        self.w = w
        self.port = free_port()

    @property
    def url(self):
        return "smtp://127.0.0.1:%d" % self.port

    def roots(self):
        return []

    def settle(self):
        """Wait until work the server does after its last reply (Postfix's
        queue manager and delivery) is done, so that it is counted in this
        run's CPU time and does not run into the next."""

    def stop(self):
        pass


class Posternd(Server):
    name = "posternd"
    durable = True
    durable_text = "yes: Maildir file and directory fsync'd before 250"

    def __init__(self, w, build, tag="posternd", env=None, wrapper=None,
                 extra=""):
        super().__init__(w)
        self.build = build
        self.dir = os.path.join(w.dir, tag)
        self.env = env
        self.wrapper = wrapper or []
        self.proc = None
        os.makedirs(os.path.join(self.dir, "mail"))
        os.makedirs(os.path.join(self.dir, "spool"))
        self.conf = os.path.join(self.dir, "posternd.conf")
        self.logf = os.path.join(self.dir, "posternd.log")
        with open(self.conf, "w") as f:
            f.write("""# written by bench/run.py
hostname = %(host)s
userdb = passwd-file:%(users)s
mailbox = maildir:%(dir)s/mail/%%d/%%n
spool = %(dir)s/spool
tls_cert = %(cert)s
tls_key = %(key)s
auth_throttle_exempt = 127.0.0.0/8 ::1
max_connections = 30000
max_connections_per_ip = 30000
%(extra)s
[listener submission]
address = 127.0.0.1:%(port)d
tls = starttls
auth = required
auth_before_tls = all
mechanisms = SCRAM-SHA-256 CRAM-MD5 PLAIN LOGIN
""" % dict(host=HOST, users=w.users, dir=self.dir, cert=w.cert,
           key=w.key, port=self.port, extra=extra))

    def start(self, timeout=30):
        logf = open(self.logf, "ab")
        self.proc = subprocess.Popen(
            self.wrapper + [os.path.join(self.build, "src/posternd/posternd"),
                            "-c", self.conf],
            stdout=logf, stderr=logf, env=self.env)
        logf.close()
        if not wait_port(self.port, timeout, self.proc):
            die("posternd did not start; see " + self.logf)
        return self

    def roots(self):
        return [self.proc.pid] if self.proc else []

    def stop(self, timeout=30):
        stop_proc(self.proc, timeout)
        return self.proc.returncode if self.proc else None

    def group_commit(self):
        """(fsyncs of new/ run, links covered by another's fsync) from
        the "stopped" line of the log, or None."""
        with open(self.logf, errors="replace") as f:
            m = re.findall(r"event=stopped dir_syncs=(\d+) "
                           r"dir_syncs_shared=(\d+)", f.read())
        return tuple(int(x) for x in m[-1]) if m else None


class Postfix(Server):
    name = "postfix+dovecot"
    durable = True
    durable_text = "yes: queue file fsync'd before 250, then delivered"

    def __init__(self, w, tag="postfix"):
        super().__init__(w)
        d = self.dir = os.path.join(w.dir, tag)
        self.etc = os.path.join(d, "etc")
        self.spool = os.path.join(d, "spool")
        self.vmail = os.path.join(d, "vmail")
        self.ddir = os.path.join(d, "dovecot")
        self.auth_sock = os.path.join(d, "dovecot-auth")
        self.dovecot = None
        nobody = pwd.getpwnam("nobody")
        for p in (self.etc, self.spool, os.path.join(d, "data"),
                  self.vmail, os.path.join(self.ddir, "run"),
                  os.path.join(self.ddir, "state")):
            os.makedirs(p)
        os.chown(os.path.join(d, "data"), pwd.getpwnam("postfix").pw_uid,
                 -1)
        os.chown(self.vmail, nobody.pw_uid, nobody.pw_gid)
        users = os.path.join(self.ddir, "users")
        with open(users, "w") as f:
            f.write("%s:{PLAIN}%s\n" % (USER, w.password))
        dovecot_gid = pwd.getpwnam("dovecot").pw_gid
        os.chown(users, 0, dovecot_gid)
        os.chmod(users, 0o640)
        self.dconf = os.path.join(self.ddir, "dovecot.conf")
        with open(self.dconf, "w") as f:
            f.write("""# written by bench/run.py: SASL for Postfix only
base_dir = %(dd)s/run/
state_dir = %(dd)s/state
instance_name = postern-bench
protocols =
listen = 127.0.0.1
log_path = %(dd)s/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
passdb {
  driver = passwd-file
  args = scheme=PLAIN %(users)s
}
userdb {
  driver = static
  args = uid=65534 gid=65534 home=/nonexistent
}
service auth {
  unix_listener %(sock)s {
    mode = 0660
    user = postfix
    group = postfix
  }
}
""" % dict(dd=self.ddir, users=users, sock=self.auth_sock))
        with open(os.path.join(self.etc, "vmailbox"), "w") as f:
            f.write("%s example.test/bench/\n" % USER)
        with open(os.path.join(self.etc, "main.cf"), "w") as f:
            f.write("""# written by bench/run.py
compatibility_level = 3.6
queue_directory = %(spool)s
data_directory = %(dir)s/data
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
mail_owner = postfix
setgid_group = postdrop
maillog_file = %(dir)s/maillog
myhostname = %(host)s
mydomain = example.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_transport = error:5.1.1 no local delivery here
relay_domains =
%(delivery)ssmtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = %(sock)s
smtpd_tls_security_level = may
smtpd_tls_cert_file = %(cert)s
smtpd_tls_key_file = %(key)s
smtpd_tls_auth_only = no
smtpd_relay_restrictions = permit_sasl_authenticated, reject
smtpd_recipient_restrictions = permit_sasl_authenticated, reject
biff = no
""" % dict(spool=self.spool, dir=d, host=HOST,
           delivery=self.delivery_cf(), sock=self.auth_sock, cert=w.cert,
           key=w.key))
        # The daemons of master.cf.proto, none chrooted (the chroot would
        # need copies of /etc files), and one smtpd on our port.
        master = [
            "127.0.0.1:%d inet n - n - - smtpd" % self.port,
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
        with open(os.path.join(self.etc, "master.cf"), "w") as f:
            f.write("# written by bench/run.py\n" + "\n".join(master) + "\n")

    def delivery_cf(self):
        """The main.cf lines that say where accepted mail goes: virtual(8)
        into the Maildir of vmailbox (bench/relay.py: the relayhost)."""
        nobody = pwd.getpwnam("nobody")
        return """virtual_mailbox_domains = example.test
virtual_mailbox_base = %(vmail)s
virtual_mailbox_maps = texthash:%(etc)s/vmailbox
virtual_uid_maps = static:%(uid)d
virtual_gid_maps = static:%(gid)d
""" % dict(vmail=self.vmail, etc=self.etc, uid=nobody.pw_uid,
           gid=nobody.pw_gid)

    def postfix(self, *args, check=True):
        return subprocess.run(["/usr/sbin/postfix", "-c", self.etc] +
                              list(args), capture_output=True, text=True,
                              check=check)

    def master_pid(self):
        try:
            with open(os.path.join(self.spool, "pid", "master.pid")) as f:
                return int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self):
        dlog = open(os.path.join(self.ddir, "dovecot.out"), "ab")
        self.dovecot = subprocess.Popen(
            ["/usr/sbin/dovecot", "-F", "-c", self.dconf],
            stdout=dlog, stderr=dlog)
        dlog.close()
        for _ in range(100):
            if os.path.exists(self.auth_sock):
                break
            time.sleep(0.1)
        else:
            die("dovecot did not start; see %s/dovecot.log" % self.ddir)
        # create-missing makes the queue directories with their owners.
        self.postfix("post-install", "create-missing", check=False)
        r = self.postfix("start", check=False)
        if r.returncode != 0 or not wait_port(self.port, 30):
            die("postfix did not start: %s%s\nsee %s/maillog"
                % (r.stdout, r.stderr, self.dir))
        return self

    def roots(self):
        return [p for p in (self.master_pid(),
                            self.dovecot.pid if self.dovecot else None) if p]

    def queue_files(self):
        n = 0
        for q in ("maildrop", "incoming", "active", "deferred", "hold"):
            for _, _, files in os.walk(os.path.join(self.spool, q)):
                n += len(files)
        return n

    def settle(self, timeout=180):
        end = time.monotonic() + timeout
        while time.monotonic() < end and self.queue_files() > 0:
            time.sleep(0.2)
        if self.queue_files() > 0:
            log("postfix: %d messages still queued after %d s"
                % (self.queue_files(), timeout))

    def stop(self):
        pid = self.master_pid()
        self.postfix("stop", check=False)
        for _ in range(100):
            if pid is None or not os.path.exists("/proc/%d" % pid):
                break
            time.sleep(0.1)
        stop_proc(self.dovecot)


class Aiosmtpd(Server):
    name = "aiosmtpd"
    durable_text = "no: Maildir, no fsync"

    def __init__(self, w, tag="aiosmtpd"):
        super().__init__(w)
        self.dir = os.path.join(w.dir, tag)
        os.makedirs(self.dir)
        self.proc = None

    def start(self):
        logf = open(os.path.join(self.dir, "aiosmtpd.log"), "ab")
        self.proc = subprocess.Popen(
            ["/usr/bin/python3", os.path.join(BENCH, "aiosmtpd_maildir.py"),
             "--port", str(self.port), "--maildir",
             os.path.join(self.dir, "Maildir"), "--user", USER,
             "--password-file", self.w.pwfile, "--cert", self.w.cert,
             "--key", self.w.key], stdout=logf, stderr=logf)
        logf.close()
        if not wait_port(self.port, 30, self.proc):
            die("aiosmtpd did not start; see %s/aiosmtpd.log" % self.dir)
        return self

    def roots(self):
        return [self.proc.pid] if self.proc else []

    def stop(self):
        stop_proc(self.proc)


class SmtpSink(Server):
    name = "smtp-sink"
    durable_text = "no: stores nothing"
    auth = False  # it answers AUTH with "250 2.0.0 Ok", not 235
    tls = False

    def __init__(self, w):
        super().__init__(w)
        self.proc = None

    def start(self):
        self.proc = subprocess.Popen(
            ["/usr/sbin/smtp-sink", "-4", "-u", "nobody", "-m", "30000",
             "127.0.0.1:%d" % self.port, "4096"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.port, 30, self.proc):
            die("smtp-sink did not start")
        return self

    def roots(self):
        return [self.proc.pid] if self.proc else []

    def stop(self):
        stop_proc(self.proc)


# --- The work directory ----------------------------------------------------

class Work:
    def __init__(self, build, keep):
        self.build = build
        self.keep = keep
        self.dir = tempfile.mkdtemp(prefix="postern-bench.", dir="/var/tmp")
        # Postfix and Dovecot run as other users and must reach their
        # files below this directory.
        os.chmod(self.dir, 0o755)
        self.postern = os.path.join(build, "src/postern/postern")
        self.password = "bench-" + os.urandom(6).hex()
        self.pwfile = os.path.join(self.dir, "password")
        with open(self.pwfile, "w") as f:
            f.write(self.password + "\n")
        os.chmod(self.pwfile, 0o644)
        subprocess.run([os.path.join(ROOT, "tools/gen-cert.sh"), HOST,
                        self.dir], check=True, capture_output=True)
        self.cert = os.path.join(self.dir, "cert.pem")
        self.key = os.path.join(self.dir, "key.pem")
        self.users = os.path.join(self.dir, "users")
        # {PLAIN} first: AUTH PLAIN checks it as Dovecot checks its
        # {PLAIN} line; the stored CRAM-MD5 and SCRAM-SHA-256 forms let
        # those mechanisms run without deriving keys per session.
        subprocess.run([self.postern, "user", "add", "-f", self.users, USER,
                        "-s", "PLAIN,CRAM-MD5,SCRAM-SHA-256"],
                       input=self.password + "\n", text=True, check=True,
                       capture_output=True)
        self.msg = os.path.join(self.dir, "message.eml")
        with open(self.msg, "w") as f:
            f.write("From: <%s>\nTo: <%s>\nSubject: postern send\n\n" %
                    (USER, USER))
            while f.tell() < 4096:
                f.write("x" * 75 + "\n")
        self.results = []

    def cleanup(self):
        if self.keep:
            log("work directory kept: " + self.dir)
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


# --- Measurements ----------------------------------------------------------

def run_bench(w, args, timeout):
    cmd = [w.postern, "bench", "--json"] + args
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        die("postern bench failed (%d): %s %s\n%s" %
            (r.returncode, " ".join(cmd), r.stdout, r.stderr))


def auth_args(w, server, mech):
    if mech is None or not server.auth:
        return []
    return ["--mech", mech, "--user", USER, "--password-file", w.pwfile]


def load(w, server, c, duration, mech="PLAIN", starttls=False, tag="",
         rep=None):
    args = ["--server", server.url, "--concurrency", str(c), "--duration",
            str(duration)] + auth_args(w, server, mech)
    if starttls:
        args += ["--starttls", "--cafile", w.cert]
    cpu0 = cpu_seconds(server.roots())
    res = run_bench(w, args, duration * 4 + 120)
    server.settle()
    cpu = cpu_seconds(server.roots()) - cpu0
    res.update(server_name=server.name, tag=tag, server_cpu_s=round(cpu, 2),
               auth_used=bool(mech and server.auth), kind="load", rep=rep)
    res["server_cpu_ms_per_session"] = round(
        cpu * 1000 / res["sessions"], 3) if res["sessions"] else None
    w.results.append(res)
    log("%-16s %-22s c=%-4d %8.1f sessions/s  p50 %6.2f ms  p99 %7.2f ms"
        "  fail %d  server CPU %.1f s" %
        (server.name, tag or ("%s%s" % (mech if server.auth else "no AUTH",
                                         " STARTTLS" if starttls else "")),
         c, res["sessions_per_s"], res["latency_ms"]["p50"],
         res["latency_ms"]["p99"], res["failures"], cpu))
    if res["failure_samples"]:
        log("    first failure: [%s] %s" % (
            res["failure_samples"][0]["stage"],
            res["failure_samples"][0]["reply"]))
    return res


def idle(w, server, n, hold, starttls=False):
    """Hold n connections after EHLO on a freshly started server; memory
    per connection is the growth of the server's RSS (and PSS) / n."""
    time.sleep(1)
    rss0, pss0 = memory_kib(server.roots())
    errf = os.path.join(w.dir, "idle-%s-%d.err" % (server.name, n))
    args = [w.postern, "bench", "--json", "--server", server.url, "--idle",
            str(n), "--hold", str(hold)]
    if starttls:
        args += ["--starttls", "--cafile", w.cert]
    with open(errf, "w") as err:
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err,
                             text=True)
        rss1, pss1 = rss0, pss0
        end = time.monotonic() + 300
        while time.monotonic() < end and p.poll() is None:
            with open(errf) as f:
                if "idle: ready" in f.read():
                    time.sleep(min(2, hold / 3))
                    rss1, pss1 = memory_kib(server.roots())
                    break
            time.sleep(0.2)
        out, _ = p.communicate(timeout=hold + 600)
    # And once every connection has sent NOOP and QUIT and closed: what
    # the server keeps after a burst of activity on all of them.
    time.sleep(1)
    rss2, _ = memory_kib(server.roots())
    res = json.loads(out.strip().splitlines()[-1])
    res.update(server_name=server.name, kind="idle", rss0_kib=rss0,
               rss1_kib=rss1, pss0_kib=pss0, pss1_kib=pss1, rss2_kib=rss2,
               rss_per_conn_kib=round((rss1 - rss0) / n, 2),
               pss_per_conn_kib=round((pss1 - pss0) / n, 2))
    w.results.append(res)
    log("%-16s idle %5d%s: %d held, %d healthy, RSS %d -> %d KiB "
        "(%.1f KiB each), PSS %.1f KiB each" %
        (server.name, n, " TLS" if starttls else "", res["established"],
         res["healthy"], rss0, rss1, res["rss_per_conn_kib"],
         res["pss_per_conn_kib"]))
    return res


def fsync_cost(d, n=200):
    """Median ms of write 4 KiB + fsync(file) + rename + fsync(dir)."""
    tdir = os.path.join(d, "fsync-test")
    os.makedirs(tdir, exist_ok=True)
    dfd = os.open(tdir, os.O_RDONLY)
    times = []
    for i in range(n):
        t = time.monotonic()
        path = os.path.join(tdir, "f%d" % i)
        fd = os.open(path + ".tmp", os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"x" * 4096)
        os.fsync(fd)
        os.close(fd)
        os.rename(path + ".tmp", path)
        os.fsync(dfd)
        times.append((time.monotonic() - t) * 1000)
    os.close(dfd)
    shutil.rmtree(tdir, ignore_errors=True)
    return statistics.median(times)


def tls_bound(w, duration):
    """Full TLS handshakes/s of openssl s_server with s_time (the issue's
    bound for every server's STARTTLS rate), same certificate."""
    port = free_port()
    srv = subprocess.Popen(["openssl", "s_server", "-quiet", "-accept",
                            "127.0.0.1:%d" % port, "-cert", w.cert, "-key",
                            w.key], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        r = subprocess.run(["openssl", "s_time", "-connect",
                            "127.0.0.1:%d" % port, "-new", "-time",
                            str(duration)], capture_output=True, text=True,
                           timeout=duration + 60)
        m = re.search(r"([\d.]+) connections/user sec", r.stdout)
        m2 = re.search(r"(\d+) connections in (\d+) real seconds", r.stdout)
        real = int(m2.group(1)) / int(m2.group(2)) if m2 else None
        return {"kind": "tls_bound", "per_user_sec":
                float(m.group(1)) if m else None, "per_real_sec": real}
    finally:
        stop_proc(srv)


def send_vs_msmtp(w, server, runs):
    """One message end to end, process start to exit: postern send and
    msmtp against posternd, AUTH PLAIN, plaintext and STARTTLS."""
    out = []
    common = "--from=%s %s < %s" % (USER, USER, w.msg)
    for tls in (False, True):
        postern = ("%s send --server %s --user %s --password-file %s "
                   "--mech PLAIN --helo bench.example.test --from %s "
                   "--to %s %s < %s" % (
                       w.postern, server.url, USER, w.pwfile, USER, USER,
                       "--starttls=required --cafile %s" % w.cert if tls
                       else "--starttls=never --allow-plaintext-auth",
                       w.msg))
        msmtp = ("msmtp --host=127.0.0.1 --port=%d --auth=plain --user=%s "
                 "--passwordeval='cat %s' --domain=bench.example.test %s "
                 "%s" % (server.port, USER, w.pwfile,
                         "--tls=on --tls-starttls=on --tls-trust-file=%s"
                         % w.cert if tls else "--tls=off", common))
        for cmd in (postern, msmtp):  # each must work before timing
            r = subprocess.run(cmd, shell=True, capture_output=True,
                               text=True)
            if r.returncode != 0:
                die("failed (%d): %s\n%s%s" % (r.returncode, cmd, r.stdout,
                                               r.stderr))
        row = {"kind": "send", "tls": tls}
        if shutil.which("hyperfine"):
            jf = os.path.join(w.dir, "hyperfine-%d.json" % tls)
            subprocess.run(["hyperfine", "--warmup", "3", "--runs",
                            str(runs), "--export-json", jf, "--style",
                            "none", postern, msmtp], check=True,
                           capture_output=True)
            with open(jf) as f:
                h = json.load(f)["results"]
            row["postern_ms"] = h[0]["mean"] * 1000
            row["postern_sd_ms"] = h[0]["stddev"] * 1000
            row["msmtp_ms"] = h[1]["mean"] * 1000
            row["msmtp_sd_ms"] = h[1]["stddev"] * 1000
            row["tool"] = "hyperfine %d runs" % runs
        else:
            for key, cmd in (("postern", postern), ("msmtp", msmtp)):
                ts = []
                for _ in range(runs):
                    t = time.monotonic()
                    subprocess.run(cmd, shell=True, check=True,
                                   capture_output=True)
                    ts.append((time.monotonic() - t) * 1000)
                row[key + "_ms"] = statistics.mean(ts)
                row[key + "_sd_ms"] = statistics.stdev(ts)
            row["tool"] = "time.monotonic, %d runs" % runs
        w.results.append(row)
        out.append(row)
        log("send %-9s postern send %.2f ms, msmtp %.2f ms" %
            ("STARTTLS" if tls else "plaintext", row["postern_ms"],
             row["msmtp_ms"]))
    return out


def callgrind_self(path):
    """Self Ir by function of a callgrind output file: "function", or
    "object+address" where the function has no symbol (libcrypto's
    assembly)."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=no",
                          "--threshold=100", "--auto=no", path],
                         capture_output=True, text=True).stdout
    funcs = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \(\s*([\d.]+)%\)\s+(\S.*)$", line)
        if not m or "PROGRAM TOTALS" in line or "=>" in line:
            continue
        # "file:function [object]": keep the function, or the object
        # where the function has no symbol.
        fn = m.group(3)
        obj = re.search(r"\[(.*)\]\s*$", fn)
        fn = fn.split(" [")[0].split(":")[-1]
        if fn.startswith("0x") and obj:
            fn = os.path.basename(obj.group(1)) + "+" + fn
        funcs[fn] = funcs.get(fn, 0) + int(m.group(1).replace(",", ""))
    return funcs


def callgrind(w, sessions, starttls):
    """Instructions (Ir) per full session of posternd: callgrind over a
    run of `sessions` sessions minus a run of none (start-up, shutdown)."""
    totals = {}
    tag = "tls" if starttls else "plain"
    for n in (0, sessions):
        out = os.path.join(w.dir, "callgrind.%s.%d" % (tag, n))
        # LD_BIND_NOW: symbols are bound at start-up in both runs, not
        # lazily at the first session.
        srv = Posternd(w, w.build, tag="callgrind-%s-%d" % (tag, n),
                       env=dict(os.environ, LD_BIND_NOW="1"),
                       wrapper=["valgrind", "--tool=callgrind",
                                "--callgrind-out-file=" + out])
        srv.start(timeout=120)
        if n:
            args = ["--server", srv.url, "--concurrency", "1", "--count",
                    str(n), "--timeout", "120"] + auth_args(w, srv, "PLAIN")
            if starttls:
                args += ["--starttls", "--cafile", w.cert]
            res = run_bench(w, args, 1800)
            if res["sessions"] != n:
                die("callgrind run: %d of %d sessions" % (res["sessions"], n))
        rc = srv.stop(timeout=300)
        with open(out) as f:
            m = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
        totals[n] = int(m.group(1))
        if rc != 0:
            log("posternd under callgrind exited %s" % rc)
    per = (totals[sessions] - totals[0]) / sessions
    # The top functions of a session: self Ir of the run of N minus that
    # of the run of none, so that start-up (symbol binding: LD_BIND_NOW,
    # do_lookup_x) does not show as the sessions' cost.
    selfs = [callgrind_self(os.path.join(w.dir, "callgrind.%s.%d"
                                         % (tag, k))) for k in (0, sessions)]
    diff = {fn: (selfs[1].get(fn, 0) - selfs[0].get(fn, 0)) / sessions
            for fn in selfs[1]}
    funcs = [("%.2f" % (100.0 * ir / per), fn)
             for fn, ir in sorted(diff.items(), key=lambda x: -x[1])[:12]
             if per > 0]
    res = {"kind": "callgrind", "tls": starttls, "sessions": sessions,
           "ir_total": totals[sessions], "ir_startup": totals[0],
           "ir_per_session": round(per), "top_self": funcs}
    w.results.append(res)
    log("callgrind %s: %.0f Ir per session" % (tag, per))
    return res


def perf_profile(w, server, duration):
    """perf record -g of posternd under the headline load."""
    data = os.path.join(w.dir, "perf.data")
    args = ["--server", server.url, "--concurrency", "50", "--duration",
            str(duration)] + auth_args(w, server, "PLAIN")
    rec = subprocess.Popen(["perf", "record", "-g", "-F", "999", "-o", data,
                            "-p", str(server.proc.pid), "--", "sleep",
                            str(duration)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    res = run_bench(w, args, duration * 4 + 60)
    rec.wait()
    out = perf_summary(data)
    out.update(kind="perf", sessions_per_s=res["sessions_per_s"])
    w.results.append(out)
    return out


def perf_summary(data):
    """From a perf.data recorded with -g: the top symbols by self time
    (kernel and user), the objects, and the kernel time by system call."""
    rep = subprocess.run(["perf", "report", "-i", data, "--stdio",
                          "--no-children", "--sort", "dso,sym", "-g", "none",
                          "--percent-limit", "0.2"], capture_output=True,
                         text=True).stdout
    rows = []
    for line in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[[.k]\]\s+(.*)$", line)
        if m:
            rows.append((float(m.group(1)), m.group(2), m.group(3).strip()))
    # Kernel time by system call: the inclusive share of each syscall
    # entry point (with -g, --children adds callees to their callers).
    inc = subprocess.run(["perf", "report", "-i", data, "--stdio",
                          "--children", "--sort", "sym", "-g", "none",
                          "--percent-limit", "0.5"], capture_output=True,
                         text=True).stdout
    calls = []
    for line in inc.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[k\]\s+"
                     r"(__x64_sys_\w+|__do_sys_\w+)", line)
        if m:
            calls.append((float(m.group(1)), m.group(3)))
    cat = subprocess.run(["perf", "report", "-i", data, "--stdio",
                          "--no-children", "--sort", "dso", "-g", "none"],
                         capture_output=True, text=True).stdout
    dsos = []
    for line in cat.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+(\S+)\s*$", line)
        if m:
            dsos.append((float(m.group(1)), m.group(2)))
    kernel = [r for r in rows if r[1].startswith("[kernel")]
    user = [r for r in rows if not r[1].startswith("[kernel")]
    return {"top": kernel[:6] + user[:14], "dsos": dsos[:8],
            "syscalls": calls[:10]}


# --- Report ----------------------------------------------------------------

def machine():
    def sh(cmd):
        try:
            return subprocess.run(cmd, shell=True, capture_output=True,
                                  text=True).stdout.strip()
        except OSError:
            return ""
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        m = re.search(r"^model name\s*:\s*(.*)$", f.read(), re.M)
        cpu = m.group(1) if m else cpu
    with open("/proc/meminfo") as f:
        mem = int(re.search(r"MemTotal:\s+(\d+)", f.read()).group(1))
    osr = sh(". /etc/os-release && echo $PRETTY_NAME")
    return {
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "mem_gib": round(mem / 1024 / 1024, 1), "os": osr,
        "virt": sh("systemd-detect-virt 2>/dev/null") or "?",
        "fs": sh("df -T /var/tmp | awk 'NR==2 {print $2\" on \"$1}'"),
        "postfix": sh("postconf -d -h mail_version"),
        "dovecot": sh("dovecot --version").split(" ")[0],
        "aiosmtpd": sh("/usr/bin/python3 -c 'import aiosmtpd; "
                       "print(aiosmtpd.__version__)'"),
        "openssl": sh("openssl version").split(" ")[1] if sh(
            "openssl version") else "?",
        "libuv": sh("dpkg-query -W -f='${Version}' libuv1"),
        "gcc": sh("gcc -dumpfullversion"),
    }


def med(rows, key="sessions_per_s"):
    vals = [r[key] for r in rows]
    return statistics.median(vals) if vals else None


def fmt(v, nd=0):
    if v is None:
        return "—"
    return ("{:,.%df}" % nd).format(v)


def pick(w, **kv):
    return [r for r in w.results
            if all(r.get(k) == v for k, v in kv.items())]


def median_row(rows):
    """The run with the median sessions/s (its latencies go with it)."""
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: r["sessions_per_s"])
    return rows[(len(rows) - 1) // 2]


def load_table(w, tag, servers, lines):
    lines.append("| server | durable | sessions/s (median; runs) | "
                 "p50 / p90 / p99 ms | failures | server CPU s | "
                 "CPU ms/session |")
    lines.append("|---|---|---|---|---|---|---|")
    for s in servers:
        rows = pick(w, tag=tag, server_name=s.name)
        if not rows:
            continue
        m = median_row(rows)
        runs = ", ".join(fmt(r["sessions_per_s"]) for r in rows)
        note = "" if m["auth_used"] else " (no AUTH)"
        lines.append("| %s%s | %s | **%s** (%s) | %s / %s / %s | %d | %.1f |"
                     " %s |" % (
                         s.name, note, s.durable_text,
                         fmt(m["sessions_per_s"]), runs,
                         fmt(m["latency_ms"]["p50"], 1),
                         fmt(m["latency_ms"]["p90"], 1),
                         fmt(m["latency_ms"]["p99"], 1),
                         sum(r["failures"] for r in rows),
                         m["server_cpu_s"],
                         fmt(m["server_cpu_ms_per_session"], 2)))


def report(w, meta, plot_rel):
    """The dated entry, from the results and meta (what main() saved in
    bench-results.json, so --from-json can render it again)."""
    args = argparse.Namespace(**meta["args"])
    servers = [argparse.Namespace(**x) for x in meta["servers"]]
    info = meta["machine"]
    load_start, load_end = meta["load_start"], meta["load_end"]
    fsync_ms = meta["fsync_ms"]
    L = []
    when = meta["when"]
    L.append("### %s" % when)
    L.append("")
    L.append("- Machine: %s, %d CPUs \"%s\", %s GiB RAM, Linux %s, %s; "
             "work files on %s.  Load average %s at the start, %s at the "
             "end (other work on the machine shows as noise: each headline "
             "figure is the median of %d runs, the servers taking turns)."
             % (info["virt"], info["nproc"], info["cpu"], info["mem_gib"],
                info["kernel"], info["os"], info["fs"], load_start, load_end,
                args.reps))
    L.append("- Software: Postfix %s, Dovecot %s, aiosmtpd %s, OpenSSL %s, "
             "libuv %s, gcc %s; posternd and postern from `%s` (%s)."
             % (info["postfix"], info["dovecot"], info["aiosmtpd"],
                info["openssl"], info["libuv"], info["gcc"],
                args.build, args.buildtype))
    L.append("- Command: `bench/run.py %s` (%.0f minutes).  Load: `postern "
             "bench --concurrency C --duration %d`, AUTH PLAIN (except "
             "smtp-sink), 4 KiB message, 1 recipient, every reply checked."
             % (" ".join(args.argv), meta["elapsed_s"] / 60, args.duration))
    L.append("- One 4 KiB file written, fsync'd, renamed and its directory "
             "fsync'd: %.2f ms (median of 200) on this disk." % fsync_ms)
    L.append("")
    L.append("#### Plaintext, AUTH PLAIN, c=50")
    L.append("")
    load_table(w, "plain50", servers, L)
    L.append("")
    L.append("#### STARTTLS + AUTH PLAIN, c=50")
    L.append("")
    load_table(w, "tls50", [s for s in servers if s.tls], L)
    tb = pick(w, kind="tls_bound")
    if tb and tb[0]["per_real_sec"]:
        L.append("")
        L.append("Bound: `openssl s_server` + `openssl s_time -new` (full "
                 "handshakes, same certificate, RSA 2048): %s "
                 "handshakes/s." % fmt(tb[0]["per_real_sec"]))
    L.append("")
    L.append("#### posternd by mechanism, plaintext, c=50")
    L.append("")
    L.append("| mechanism | sessions/s (median; runs) | p50 / p99 ms | "
             "vs PLAIN | failures | CPU ms/session |")
    L.append("|---|---|---|---|---|---|")
    base = med(pick(w, tag="mech-PLAIN"))
    for mech in ("PLAIN", "CRAM-MD5", "SCRAM-SHA-256"):
        rows = pick(w, tag="mech-" + mech)
        if not rows:
            continue
        m = median_row(rows)
        L.append("| %s | **%s** (%s) | %s / %s | %s | %d | %s |" % (
            mech, fmt(m["sessions_per_s"]),
            ", ".join(fmt(r["sessions_per_s"]) for r in rows),
            fmt(m["latency_ms"]["p50"], 1), fmt(m["latency_ms"]["p99"], 1),
            "%+.0f %%" % ((med(rows) / base - 1) * 100) if base else "—",
            sum(r["failures"] for r in rows),
            fmt(m["server_cpu_ms_per_session"], 2)))
    L.append("")
    L.append("SCRAM: the client derived the salted password %s time(s) "
             "in all (RFC 5802 §5.1 cache); the server uses its stored "
             "keys." % sum(r.get("scram_pbkdf2_runs", 0)
                           for r in pick(w, tag="mech-SCRAM-SHA-256")))
    one = pick(w, tag="oneloop")
    if one:
        L.append("")
        L.append("Design check, same load: posternd with `workers = 1` (one "
                 "event loop; the default `auto` runs one per CPU, %s "
                 "here): %s sessions/s (runs: %s) against %s with the "
                 "default." % (
                     info["nproc"], fmt(med(one)),
                     ", ".join(fmt(r["sessions_per_s"]) for r in one),
                     fmt(med(pick(w, tag="plain50",
                                  server_name="posternd")))))
    gc = pick(w, kind="group_commit")
    if gc:
        L.append("")
        L.append("Group commit (`src/posternd/deliver_maildir.c`): over "
                 "all the loads above, %s links into `new/` needed %s "
                 "fsyncs of the directory; %s links (%s %%) were covered "
                 "by an fsync another delivery had started after them." % (
                     fmt(gc[0]["links"]), fmt(gc[0]["dir_syncs"]),
                     fmt(gc[0]["shared"]),
                     fmt(100.0 * gc[0]["shared"] / max(1, gc[0]["links"]))))
    pool = pick(w, tag="pool")
    if pool:
        L.append("")
        L.append("Design check, same load: posternd with "
                 "`UV_THREADPOOL_SIZE=%d` (libuv's default pool is 4 "
                 "threads, shared by password checks and fsyncs): %s "
                 "sessions/s (runs: %s) against %s with the default." % (
                     args.pool, fmt(med(pool)),
                     ", ".join(fmt(r["sessions_per_s"]) for r in pool),
                     fmt(med(pick(w, tag="plain50",
                                  server_name="posternd")))))
    L.append("")
    L.append("#### Sessions/s by concurrency (plaintext, AUTH PLAIN)")
    L.append("")
    L.append("![sessions/s versus concurrency](%s)" % plot_rel)
    L.append("")
    L.append("| server | " + " | ".join("c=%d" % c for c in args.sweep) +
             " |")
    L.append("|---|" + "---|" * len(args.sweep))
    for s in servers:
        cells = []
        for c in args.sweep:
            rows = pick(w, server_name=s.name, concurrency=c, kind="load",
                        starttls=False, tag="sweep") + \
                (pick(w, tag="plain50", server_name=s.name) if c == 50
                 else [])
            cells.append(fmt(med(rows)))
        L.append("| %s | %s |" % (s.name, " | ".join(cells)))
    L.append("")
    L.append("#### Idle connections after EHLO")
    L.append("")
    L.append("| server | connections | held | healthy at the end (NOOP) "
             "| RSS before → held → after all closed, KiB | RSS per held "
             "connection | PSS per held connection |")
    L.append("|---|---|---|---|---|---|---|")
    for r in pick(w, kind="idle"):
        L.append("| %s%s | %s | %s | %s | %s → %s → %s | **%.1f KiB** | "
                 "%.1f KiB |"
                 % (r["server_name"], " (STARTTLS)" if r["starttls"] else "",
                    fmt(r["connections"]), fmt(r["established"]),
                    fmt(r["healthy"]), fmt(r["rss0_kib"]),
                    fmt(r["rss1_kib"]), fmt(r["rss2_kib"]),
                    r["rss_per_conn_kib"], r["pss_per_conn_kib"]))
    L.append("")
    L.append("Postfix runs one smtpd process per connection and stops at "
             "its default `default_process_limit = 100`; more connections "
             "wait in the listen queue without a greeting, so it is "
             "measured with %d.  Its RSS sums every process (shared "
             "libraries counted in each); PSS shares them out."
             % args.postfix_idle)
    sends = pick(w, kind="send")
    if sends:
        L.append("")
        L.append("#### One message end to end: `postern send` vs msmtp "
                 "(posternd, AUTH PLAIN)")
        L.append("")
        L.append("| transport | postern send | msmtp | measured with |")
        L.append("|---|---|---|---|")
        for r in sends:
            L.append("| %s | %.2f ± %.2f ms | %.2f ± %.2f ms | %s |" % (
                "STARTTLS" if r["tls"] else "plaintext", r["postern_ms"],
                r["postern_sd_ms"], r["msmtp_ms"], r["msmtp_sd_ms"],
                r["tool"]))
    cgs = pick(w, kind="callgrind")
    if cgs:
        L.append("")
        L.append("#### Instructions per session (callgrind)")
        L.append("")
        L.append("posternd under `valgrind --tool=callgrind`, one client "
                 "(`postern bench --concurrency 1 --count N`), AUTH PLAIN, "
                 "4 KiB; Ir of N sessions minus Ir of a run with none "
                 "(start-up and shutdown), divided by N.  All threads; "
                 "the top functions are per session too (self Ir, N "
                 "sessions minus none).")
        L.append("")
        L.append("| session | N | Ir per session | top functions (self "
                 "Ir %) |")
        L.append("|---|---|---|---|")
        for r in cgs:
            L.append("| %s | %d | **%s** | %s |" % (
                "STARTTLS + AUTH PLAIN" if r["tls"] else "plaintext AUTH "
                "PLAIN", r["sessions"], fmt(r["ir_per_session"]),
                "; ".join("%s %s%%" % (f, p) for p, f in r["top_self"][:6])))
    perf = pick(w, kind="perf")
    if perf and perf[0]["top"]:
        p = perf[0]
        L.append("")
        L.append("#### Where posternd's CPU goes (perf, plaintext c=50, "
                 "%s sessions/s during the profile)" %
                 fmt(p["sessions_per_s"]))
        L.extend(perf_lines(p))
    L.append("")
    L.append("#### Issue 7 targets")
    L.append("")
    L.extend(targets(w, args))
    L.append("")
    return "\n".join(L)


def perf_lines(p):
    """The Markdown of a perf_summary(): objects, system calls, symbols."""
    L = [""]
    L.append("By object: " + ", ".join("%s %.1f %%" % (d, pc)
                                       for pc, d in p["dsos"]) + ".")
    L.append("")
    if p.get("syscalls"):
        L.append("")
        L.append("Kernel time by system call (inclusive %): " +
                 ", ".join("%s %.1f" % (sym.replace("__x64_sys_", "")
                                        .replace("__do_sys_", ""), pc)
                           for pc, sym in p["syscalls"]) + ".")
    L.append("")
    L.append("| self % | object | symbol |")
    L.append("|---|---|---|")
    for pc, dso, sym in p["top"]:
        L.append("| %.1f | %s | `%s` |" % (pc, dso, sym))
    return L


def paired(w, tag_a, name_a, tag_b, name_b):
    """Ratios a/b of runs made in the same round (the servers take turns
    within a round, so a busy moment on the machine hits both)."""
    a = {r["rep"]: r["sessions_per_s"] for r in pick(w, tag=tag_a)
         if r["server_name"] == name_a and r.get("rep") is not None}
    b = {r["rep"]: r["sessions_per_s"] for r in pick(w, tag=tag_b)
         if r["server_name"] == name_b and r.get("rep") is not None}
    return [a[k] / b[k] for k in sorted(a) if k in b and b[k] > 0]


def ratio_text(ratios, times=True):
    if not ratios:
        return ""
    f = (lambda x: "%.2f×" % x) if times else \
        (lambda x: "%+.1f %%" % ((x - 1) * 100))
    return "; paired by round: median **%s** (%s)" % (
        f(statistics.median(ratios)), ", ".join(f(x) for x in ratios))


def targets(w, args):
    out = ["| target | measured | met |", "|---|---|---|"]

    def row(name, measured, ok):
        out.append("| %s | %s | %s |" % (name, measured,
                                          "—" if ok is None else
                                          "yes" if ok else "**no**"))
    pd = med(pick(w, tag="plain50", server_name="posternd"))
    pf = med(pick(w, tag="plain50", server_name="postfix+dovecot"))
    sk = med(pick(w, tag="plain50", server_name="smtp-sink"))
    if pd and pf:
        pr = paired(w, "plain50", "posternd", "plain50", "postfix+dovecot")
        v = statistics.median(pr) if pr else pd / pf
        row("plaintext AUTH PLAIN c=50 ≥ 3× Postfix+Dovecot",
            "medians %s vs %s sessions/s: %.2f×%s" % (
                fmt(pd), fmt(pf), pd / pf, ratio_text(pr)), v >= 3)
    if pd and sk:
        pr = paired(w, "plain50", "posternd", "plain50", "smtp-sink")
        v = statistics.median(pr) if pr else pd / sk
        row("aim: half of smtp-sink's rate",
            "medians %s vs %s: %.2f×%s" % (fmt(pd), fmt(sk), pd / sk,
                                            ratio_text(pr)), v >= 0.5)
    base = med(pick(w, tag="mech-PLAIN"))
    for mech in ("CRAM-MD5", "SCRAM-SHA-256"):
        v = med(pick(w, tag="mech-" + mech))
        if base and v:
            pr = paired(w, "mech-" + mech, "posternd", "mech-PLAIN",
                        "posternd")
            x = statistics.median(pr) if pr else v / base
            row("%s within 10 %% of PLAIN" % mech, "medians %s vs %s: "
                "%+.1f %%%s" % (fmt(v), fmt(base), (v / base - 1) * 100,
                                ratio_text(pr, times=False)), x >= 0.9)
    td = med(pick(w, tag="tls50", server_name="posternd"))
    tf = med(pick(w, tag="tls50", server_name="postfix+dovecot"))
    if td and tf:
        pr = paired(w, "tls50", "posternd", "tls50", "postfix+dovecot")
        v = statistics.median(pr) if pr else td / tf
        row("STARTTLS + AUTH PLAIN c=50 ≥ 2× Postfix+Dovecot",
            "medians %s vs %s: %.2f×%s" % (fmt(td), fmt(tf), td / tf,
                                            ratio_text(pr)), v >= 2)
    for r in pick(w, kind="idle", server_name="posternd"):
        lim = 48 if r["starttls"] else 8
        row("%s idle %s connections: all healthy, ≤ %d KiB each" % (
            fmt(r["connections"]), "TLS" if r["starttls"] else "plaintext",
            lim), "%s healthy, %.1f KiB each" % (fmt(r["healthy"]),
                                                 r["rss_per_conn_kib"]),
            r["healthy"] == r["connections"] and
            r["rss_per_conn_kib"] <= lim)
    for r in pick(w, kind="send"):
        row("`postern send` no slower than msmtp (%s)" % (
            "STARTTLS" if r["tls"] else "plaintext"),
            "%.2f vs %.2f ms" % (r["postern_ms"], r["msmtp_ms"]),
            r["postern_ms"] <= r["msmtp_ms"] * 1.0 +
            max(r["postern_sd_ms"], r["msmtp_sd_ms"]) / 2)
    for r in pick(w, kind="callgrind"):
        row("callgrind Ir per session written down (%s)" % (
            "STARTTLS" if r["tls"] else "plaintext"),
            fmt(r["ir_per_session"]), True)
    return out


SECTION = "## Side by side: posternd, Postfix+Dovecot, aiosmtpd, smtp-sink"
MARK = "<!-- bench/run.py inserts each new run below this line -->"


INTRO = """Written by `bench/run.py` (see bench/README.md): the same `postern bench`
load against posternd and the reference servers on 127.0.0.1, one after
the other, in one run.  Newest first."""


def write_results(path, entry, section=SECTION, mark=MARK, intro=INTRO):
    """Insert entry below mark in path, adding the section (its title,
    intro and mark) at the end of the file when the mark is not there."""
    new = section + "\n\n" + intro + "\n\n" + mark + "\n"
    text = open(path).read() if os.path.exists(path) else \
        "# Benchmark results\n"
    if mark not in text:
        text = text.rstrip("\n") + "\n\n" + new
    head, tail = text.split(mark, 1)
    text = head + mark + "\n\n" + entry.rstrip("\n") + "\n\n" + \
        tail.lstrip("\n")
    if not text.endswith("\n"):
        text += "\n"
    with open(path, "w") as f:
        f.write(text)


def plot(w, args, servers, outfile):
    dat = os.path.join(w.dir, "sweep.dat")
    with open(dat, "w") as f:
        f.write("concurrency " + " ".join(
            '"%s%s"' % (s.name, "" if s.auth else " (no AUTH)")
            for s in servers) + "\n")
        for c in args.sweep:
            vals = []
            for s in servers:
                rows = pick(w, server_name=s.name, concurrency=c,
                            tag="sweep") + (
                    pick(w, tag="plain50", server_name=s.name)
                    if c == 50 else [])
                v = med(rows)
                vals.append("nan" if v is None else "%.1f" % v)
            f.write("%d %s\n" % (c, " ".join(vals)))
    if not shutil.which("gnuplot"):
        log("no gnuplot: plot data left in " + dat)
        return False
    sub = "bench/run.py %s, %d CPUs, %s" % (args.when, os.cpu_count(),
                                            platform.release())
    r = subprocess.run(["gnuplot", "-e", "datafile='%s'; outfile='%s'; "
                        "subtitle='%s'" % (dat, outfile, sub),
                        os.path.join(BENCH, "plot.gp")],
                       capture_output=True, text=True)
    if r.returncode != 0:
        log("gnuplot failed: " + r.stderr)
        return False
    return True


# --- Main --------------------------------------------------------------------

def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def check_build(args):
    """args.build made absolute, with posternd and postern built in it
    (else exit 64); args.buildtype from meson's introspection ("?" when
    unknown)."""
    args.build = os.path.abspath(args.build)
    for b in ("src/posternd/posternd", "src/postern/postern"):
        if not os.access(os.path.join(args.build, b), os.X_OK):
            die("%s/%s missing: build first (meson setup %s && ninja -C %s)"
                % (args.build, b, args.build, args.build), 64)
    try:
        with open(os.path.join(args.build, "meson-info",
                               "intro-buildoptions.json")) as f:
            args.buildtype = next(o["value"] for o in json.load(f)
                                  if o["name"] == "buildtype")
    except (OSError, StopIteration, ValueError):
        args.buildtype = "?"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", nargs="?", default=os.path.join(ROOT, "build"),
                    help="meson build directory (default: ./build)")
    ap.add_argument("--duration", type=int, default=10,
                    help="seconds per load point (default 10)")
    ap.add_argument("--reps", type=int, default=3,
                    help="runs of each headline point (default 3)")
    ap.add_argument("--sweep", default="1,10,50,100",
                    help="concurrencies for the plot (default 1,10,50,100)")
    ap.add_argument("--hold", type=int, default=10,
                    help="seconds idle connections are held (default 10)")
    ap.add_argument("--idle", type=int, default=10000)
    ap.add_argument("--idle-tls", type=int, default=2000)
    ap.add_argument("--postfix-idle", type=int, default=100)
    ap.add_argument("--pool", type=int, default=0,
                    help=argparse.SUPPRESS)  # an old design check
    ap.add_argument("--no-one-loop", dest="one_loop", action="store_false",
                    help="skip the design check with workers = 1")
    ap.add_argument("--callgrind-sessions", type=int, default=200)
    ap.add_argument("--send-runs", type=int, default=30)
    ap.add_argument("--quick", action="store_true",
                    help="short points, one run each, smaller idle counts")
    ap.add_argument("--no-install", action="store_true",
                    help="never run apt-get")
    ap.add_argument("--keep", action="store_true",
                    help="keep the work directory")
    ap.add_argument("--results", default=os.path.join(BENCH, "RESULTS.md"),
                    help="where to add the dated entry ('-': nowhere)")
    ap.add_argument("--from-json", metavar="FILE",
                    help="run nothing: render the entry (and the plot) "
                    "again from a bench-results.json")
    args = ap.parse_args()
    if args.from_json:
        return rerender(args)
    args.argv = sys.argv[1:]
    if args.quick:
        args.duration, args.reps, args.hold = 3, 1, 3
        args.idle, args.idle_tls = 2000, 500
        args.callgrind_sessions, args.send_runs = 20, 10
    args.sweep = [int(c) for c in args.sweep.split(",")]
    check_build(args)
    # Without root: the exact apt-get command, if anything is missing.
    ensure_packages(not args.no_install)
    if os.geteuid() != 0:
        die("run as root: Postfix and Dovecot need it", 77)
    nofile = raise_nofile()
    if nofile < args.idle + 100:
        die("file descriptor limit %d is below %d: raise it (ulimit -n)"
            % (nofile, args.idle + 100), 71)
    w = Work(args.build, args.keep)
    log("work directory " + w.dir)
    t_start = time.monotonic()
    load_start = loadavg()
    info = machine()
    started = []
    try:
        fsync_ms = fsync_cost(w.dir)
        pd = Posternd(w, args.build).start()
        started.append(pd)
        servers = [pd]
        for cls in (Postfix, Aiosmtpd, SmtpSink):
            s = cls(w).start()
            started.append(s)
            servers.append(s)
        d = args.duration
        # Headline points: the servers take turns, so a busy moment on
        # the machine does not land on one server only.
        for rep in range(args.reps):
            for s in servers:
                load(w, s, 50, d, tag="plain50", rep=rep)
            for s in servers:
                if s.tls:
                    load(w, s, 50, d, starttls=True, tag="tls50", rep=rep)
            for mech in ("PLAIN", "CRAM-MD5", "SCRAM-SHA-256"):
                load(w, pd, 50, d, mech=mech, tag="mech-" + mech, rep=rep)
        for c in args.sweep:
            if c == 50:
                continue
            for s in servers:
                load(w, s, c, d, tag="sweep")
        if args.one_loop:
            pp = Posternd(w, args.build, tag="posternd-oneloop",
                          extra="workers = 1\n").start()
            started.append(pp)
            for rep in range(max(1, args.reps - 1)):
                load(w, pp, 50, d, tag="oneloop")
            pp.stop()
        tb = tls_bound(w, d)
        w.results.append(tb)
        send_vs_msmtp(w, pd, args.send_runs)
        if shutil.which("perf"):
            perf_profile(w, pd, d)
        # Idle: fresh servers, so their memory before is a baseline.
        for s in started:
            s.stop()
        started = []
        gc = pd.group_commit()
        if gc:
            w.results.append({"kind": "group_commit", "dir_syncs": gc[0],
                              "shared": gc[1], "links": gc[0] + gc[1]})
        for n, tls in ((args.idle, False), (args.idle_tls, True)):
            s = Posternd(w, args.build, tag="posternd-idle-%d" % tls).start()
            started.append(s)
            idle(w, s, n, args.hold, starttls=tls)
            s.stop()
            started.remove(s)
        for cls, n in ((Postfix, args.postfix_idle), (Aiosmtpd, args.idle),
                       (SmtpSink, args.idle)):
            s = (cls(w, tag=cls.name + "-idle") if cls is not SmtpSink
                 else cls(w)).start()
            started.append(s)
            idle(w, s, n, args.hold)
            s.stop()
            started.remove(s)
        if args.callgrind_sessions and shutil.which("valgrind"):
            callgrind(w, args.callgrind_sessions, False)
            callgrind(w, max(10, args.callgrind_sessions // 4), True)
    finally:
        for s in started:
            try:
                s.stop()
            except Exception as e:  # keep stopping the others
                log("stopping %s: %s" % (s.name, e))
    meta = {
        "when": datetime.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "machine": info, "load_start": load_start, "load_end": loadavg(),
        "fsync_ms": fsync_ms, "elapsed_s": time.monotonic() - t_start,
        "args": {k: getattr(args, k) for k in (
            "argv", "build", "buildtype", "duration", "reps", "sweep",
            "pool", "one_loop", "postfix_idle")},
        "servers": [{"name": s.name, "auth": s.auth, "tls": s.tls,
                     "durable_text": s.durable_text} for s in servers],
    }
    if meta["args"]["build"].startswith(ROOT):
        meta["args"]["build"] = os.path.relpath(args.build, ROOT)
    with open(os.path.join(w.dir, "bench-results.json"), "w") as f:
        json.dump({"meta": meta, "results": w.results}, f, indent=1)
    finish(w, meta, args.results)
    w.cleanup()
    return 0


def finish(w, meta, results):
    # One plot per run, named by its date, so each entry keeps its own.
    png = os.path.join(BENCH, "sessions-vs-concurrency-%s.png" % re.sub(
        r"[^0-9]", "", meta["when"]))
    plot(w, argparse.Namespace(when=meta["when"], **meta["args"]),
         [argparse.Namespace(**x) for x in meta["servers"]], png)
    entry = report(w, meta, os.path.basename(png))
    print(entry)
    if results != "-":
        write_results(results, entry)
        log("results added to " + results)


def rerender(args):
    with open(args.from_json) as f:
        saved = json.load(f)
    w = argparse.Namespace(results=saved["results"],
                           dir=os.path.dirname(os.path.abspath(
                               args.from_json)))
    finish(w, saved["meta"], args.results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
