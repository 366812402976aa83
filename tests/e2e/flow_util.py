"""Helpers for tests that push more at posternd than it reads at once
(pipelined bursts, clients that never read, floods).

send_while_reading() writes a large buffer while collecting whatever the
server answers meanwhile, from one thread.  Two threads on one TLS socket
(a writer in sendall() and a reader in recv()) is what Python's ssl
module does not support: both run OpenSSL calls on the same SSL object
with the GIL released, and now and then the reader sees end-of-file
(ssl's "ragged EOF", returned as b"") in the middle of the session.  That
was the flake of test_pipelined_burst[implicit]: the client saw EOF at
its first reply while posternd went on to answer all 60 messages and the
QUIT (its log: 60 message_accepted, then disconnect reason=quit).

rss_kib() and status_kib() read /proc for the memory tests.
"""
import select
import socket
import ssl
import time

_AGAIN = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError,
          InterruptedError)


def send_while_reading(r, data, timeout=60):
    """Send all of data on SMTPRaw r, appending what arrives meanwhile to
    r.buf (r.reply() parses it afterwards), one thread doing both.
    Raises EOFError if the server closes before everything is sent."""
    sock = r.sock
    sock.setblocking(False)
    pos = 0
    deadline = time.monotonic() + timeout
    try:
        while pos < len(data):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"sent {pos} of {len(data)} bytes")
            rl, wl, _ = select.select([sock], [sock], [], left)
            if rl or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
                try:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise EOFError(f"closed after {pos} bytes sent")
                    r.buf += chunk
                except _AGAIN:
                    pass
            if wl:
                try:
                    # The same bytes again after a WANT_WRITE: OpenSSL
                    # expects the retry to carry them.
                    pos += sock.send(data[pos:pos + 65536])
                except _AGAIN:
                    pass
    finally:
        sock.setblocking(True)
        sock.settimeout(r.timeout)
    return pos


def send_unread(sock, data, until, progress=None):
    """Write data on sock without ever reading, as fast as the server
    takes it, until the monotonic time until or until the server closes.
    Returns the bytes written (the server stops reading once its output
    is backed up); progress (a dict), if given, has them in "sent" all
    along."""
    sock.setblocking(False)
    sent = 0
    try:
        while sent < len(data):
            left = until - time.monotonic()
            if left <= 0:
                break
            _, wl, _ = select.select([], [sock], [], min(left, 0.2))
            if not wl:
                continue
            try:
                sent += sock.send(data[sent:sent + 65536])
            except _AGAIN:
                pass
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                break
            if progress is not None:
                progress["sent"] = sent
    finally:
        sock.setblocking(True)
    return sent


def status_kib(pid, field):
    """A field of /proc/PID/status in KiB ("VmRSS", "VmHWM")."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def rss_kib(pid):
    """Resident memory of pid (Rss of smaps_rollup), KiB."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            if line.startswith("Rss:"):
                return int(line.split()[1])
    return status_kib(pid, "VmRSS")


def closed_by_peer(sock, timeout):
    """True when the server closes sock (EOF or reset) within timeout
    seconds; whatever it sent meanwhile is read and dropped."""
    sock.settimeout(timeout)
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not sock.recv(1 << 20):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False
