"""A /dev/log of the test's own, to see what posternd sends to syslog(3).

glibc's syslog(3) always writes to the Unix datagram socket /dev/log.  A
SyslogSink binds a datagram socket in the test's directory, collects
every message sent to it, and gives the command prefix that runs a
program in a private mount namespace where that socket is /dev/log
(a tmpfs over /dev holding /dev/log and the few device nodes a program
needs, bound from the real /dev).  Nothing outside the program's
namespace changes.  Needs root (unshare, mount).
"""
import os
import re
import socket
import threading
import time

# RFC 3164 §4.1.1 / RFC 5424 §6.2.1: PRI = facility * 8 + severity.
FACILITY_MAIL = 2
SEVERITY = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4,
            "notice": 5, "info": 6, "debug": 7}

# What glibc sends: "<PRI>Mmm dd hh:mm:ss TAG[PID]: MESSAGE" (RFC 3164
# without the host name, which the syslog daemon adds).
MSG_RE = re.compile(r"^<(\d+)>([A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) "
                    r"([^\[: ]+)\[(\d+)\]: (.*)$", re.S)

# unshare(1) runs this with the mounts' propagation unchanged: its own
# "--propagation private" makes / private, which fails (EINVAL) when / is
# not a mount point, as inside a chroot (../shared/tools/fresh-debian).
# So the script makes private, in its namespace, every mount it is about
# to mount on (all of them when / is a mount point) before mounting
# anything: nothing it does can propagate out.
_NS_SCRIPT = r"""
set -e
old=$1 sock=$2
shift 2
if ! mount --make-rprivate / 2>/dev/null; then
    mount --make-rprivate "$(findmnt -n -o TARGET -T /dev)"
    mount --make-rprivate "$(findmnt -n -o TARGET -T "$old")"
fi
mount --rbind /dev "$old"
mount -t tmpfs -o mode=0755 tmpfs /dev
for n in null zero full random urandom; do
    : >"/dev/$n"
    mount --bind "$old/$n" "/dev/$n"
done
: >/dev/log
mount --bind "$sock" /dev/log
ln -s /proc/self/fd /dev/fd
exec "$@"
"""


class Message:
    def __init__(self, raw):
        self.raw = raw
        m = MSG_RE.match(raw)
        if m is None:
            raise ValueError("not a syslog(3) message: %r" % raw)
        pri = int(m.group(1))
        self.facility, self.severity = pri >> 3, pri & 7
        self.stamp = m.group(2)
        self.tag = m.group(3)
        self.pid = int(m.group(4))
        self.text = m.group(5)

    def file_line(self, host="mail"):
        """The line as rsyslog writes it to /var/log/mail.log
        (RFC 3164 format with the host name)."""
        return f"{self.stamp} {host} {self.tag}[{self.pid}]: {self.text}"


class SyslogSink:
    def __init__(self, tmp):
        self.dir = str(tmp)
        self.path = os.path.join(self.dir, "devlog.sock")
        self.olddev = os.path.join(self.dir, "olddev")
        os.makedirs(self.olddev, exist_ok=True)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        os.chmod(self.path, 0o666)
        self.raw = []
        self.lock = threading.Lock()
        self.done = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self.done:
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self.lock:
                self.raw.append(data.decode("utf-8", "replace"))

    def prefix(self):
        """The command prefix: run the rest with this sink as /dev/log."""
        return ["unshare", "--mount", "--propagation", "unchanged", "sh",
                "-c", _NS_SCRIPT, "sh", self.olddev, self.path]

    def messages(self):
        with self.lock:
            return [Message(r) for r in self.raw]

    def wait(self, pattern, timeout=10):
        """The messages whose text matches pattern, once there is one
        (or [] after timeout seconds)."""
        rx = re.compile(pattern)
        deadline = time.time() + timeout
        while True:
            found = [m for m in self.messages() if rx.search(m.text)]
            if found or time.time() >= deadline:
                return found
            time.sleep(0.05)

    def close(self):
        self.done = True
        self.thread.join(2)
        self.sock.close()
