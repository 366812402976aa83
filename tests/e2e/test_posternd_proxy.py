"""proxy_protocol and proxy_from (DESIGN.md "Operations"): behind a load
balancer the PROXY header names the client, and that address is the
client's in the log, the throttle, the per-address limit and Received;
a peer outside proxy_from, an invalid header, the other version or one
not complete within timeout_command is closed without a reply.

The test plays the load balancer itself (it connects from 127.0.0.1 and
writes the header), so it can send any header; the scale-out test
(test_posternd_haproxy.py) runs a real HAProxy.
"""
import socket
import ssl
import struct
import subprocess
import time

import pytest

from posternd_util import (Posternd, SMTPRaw, b64, make_message,
                           posternd_bin, read_all_replies, strip_return_path)

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def v2(src, sport=40000, dst="127.0.0.1", dport=587, command=1, tlv=b""):
    """A version 2 header (proxy-protocol.txt §2.2) for TCP."""
    if ":" in src:
        fam = 0x21
        addr = (socket.inet_pton(socket.AF_INET6, src) +
                socket.inet_pton(socket.AF_INET6, dst))
    else:
        fam = 0x11
        addr = socket.inet_aton(src) + socket.inet_aton(dst)
    body = addr + struct.pack("!HH", sport, dport) + tlv
    return SIG + bytes([0x20 | command, fam]) + struct.pack("!H", len(body)) \
        + body


def v2_local():
    return SIG + b"\x20\x00\x00\x00"


def v1(src, sport=40000, dst="127.0.0.1", dport=587):
    proto = "TCP6" if ":" in src else "TCP4"
    return f"PROXY {proto} {src} {dst} {sport} {dport}\r\n".encode()


LISTENERS = {
    "lb": "tls = starttls\nauth_before_tls = all\nproxy_protocol = v2\n"
          "proxy_from = 127.0.0.1/32 ::1\n",
    "lb1": "tls = starttls\nauth_before_tls = all\nproxy_protocol = v1\n"
           "proxy_from = 127.0.0.1\n",
    "lbtls": "tls = implicit\nproxy_protocol = v2\nproxy_from = 127.0.0.1\n",
    "direct": "tls = none\nauth_before_tls = all\n",
}


@pytest.fixture(scope="module")
def d(tmp_path_factory):
    p = Posternd(tmp_path_factory.mktemp("proxy"), listeners=LISTENERS,
                 extra_global="max_connections_per_ip = 3\n")
    p.start()
    yield p
    assert p.stop() == 0


def via(d, listener, header, source="127.0.0.1"):
    """A connection to listener from source with header sent first."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(10)
    s.bind((source, 0))
    s.connect(("127.0.0.1", d.ports[listener]))
    s.sendall(header)
    r = SMTPRaw.__new__(SMTPRaw)
    r.sock, r.buf, r.timeout = s, b"", 10
    return r


def nothing_then_closed(r, timeout=10):
    """The server closes without sending a byte."""
    r.sock.settimeout(timeout)
    try:
        data = r.sock.recv(4096)
    except ConnectionResetError:
        data = b""
    r.close()
    return data == b""


def send_message(d, r, rcpt):
    assert r.reply()[0] == 220
    assert r.ehlo()[0] == 250
    assert r.login()[0] == 235
    assert r.cmd("MAIL FROM:<tim@example.test>")[0] == 250
    assert r.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(make_message(to=rcpt) + b".\r\n")
    code, lines = r.reply()
    assert code == 250, lines
    r.cmd("QUIT")
    r.close()
    msgs = d.messages(rcpt)
    assert len(msgs) == 1
    return strip_return_path(msgs[0])


def test_v2_client_address_everywhere(d):
    r = via(d, "lb", v2("203.0.113.7", sport=41234))
    rcpt = "v2@example.test"
    msg = send_message(d, r, rcpt)
    # Received names the client of the header, not the balancer.
    assert msg.startswith(b"Received: from client.example.test "
                          b"(unknown [203.0.113.7])\r\n"), msg[:200]
    ev = d.wait_event("proxy", peer="203.0.113.7")
    assert ev and ev[0]["proxy"] == "127.0.0.1" and ev[0]["version"] == "v2"
    sid = ev[0]["sid"]
    conn = d.events("connect", sid=sid)
    assert conn and conn[0]["peer"] == "203.0.113.7"
    assert conn[0]["listener"] == "lb"
    assert d.events("auth_ok", sid=sid)[0]["peer"] == "203.0.113.7"
    assert d.wait_event("disconnect", sid=sid)[0]["peer"] == "203.0.113.7"
    # The balancer's address is logged only as proxy=.
    for line in d.log().splitlines():
        if f"sid={sid} " in line and "event=proxy " not in line:
            assert "127.0.0.1" not in line, line


def test_v1_ipv6_client(d):
    r = via(d, "lb1", v1("2001:db8::5", dst="2001:db8::1"))
    msg = send_message(d, r, "v1@example.test")
    assert msg.startswith(b"Received: from client.example.test "
                          b"(unknown [IPv6:2001:db8::5])\r\n"), msg[:200]
    ev = d.wait_event("proxy", peer="2001:db8::5")
    assert ev and ev[0]["version"] == "v1"


def test_v2_tlvs_and_ipv6(d):
    r = via(d, "lb", v2("2001:db8::77", dst="2001:db8::1",
                        tlv=b"\x04\x00\x03abc" + b"\x02\x00\x02mx"))
    assert r.reply()[0] == 220
    r.cmd("QUIT")
    r.close()
    assert d.wait_event("connect", peer="2001:db8::77")


def test_local_and_unknown_mean_the_peer(d):
    r = via(d, "lb", v2_local())
    assert r.reply()[0] == 220
    r.cmd("QUIT")
    r.close()
    ev = d.wait_event("proxy", command="local")
    assert ev and ev[0]["peer"] == "127.0.0.1"
    r = via(d, "lb1", b"PROXY UNKNOWN\r\n")
    assert r.reply()[0] == 220
    r.cmd("QUIT")
    r.close()
    assert d.wait_event("proxy", command="local", version="v1")


def test_implicit_tls_right_after_the_header(d):
    """The header and the ClientHello in one write: nothing after the
    header may be lost to it."""
    ctx = d.ssl_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    hello = outgoing.read()
    s = socket.create_connection(("127.0.0.1", d.ports["lbtls"]), timeout=10)
    s.sendall(v2("198.51.100.44") + hello)
    while True:
        try:
            tls.do_handshake()
            break
        except ssl.SSLWantReadError:
            data = outgoing.read()
            if data:
                s.sendall(data)
            chunk = s.recv(65536)
            assert chunk, "closed during the handshake"
            incoming.write(chunk)
    s.sendall(outgoing.read())
    buf = b""
    while b"\r\n" not in buf:
        try:
            buf += tls.read(4096)
        except ssl.SSLWantReadError:
            incoming.write(s.recv(65536))
    assert buf.startswith(b"220 "), buf
    s.close()
    assert d.wait_event("tls", timeout=5)
    assert d.wait_event("connect", peer="198.51.100.44")


def test_peer_outside_proxy_from(d):
    r = via(d, "lb", v2("203.0.113.8"), source="127.0.0.2")
    assert nothing_then_closed(r)
    ev = d.wait_event("proxy_refused", peer="127.0.0.2")
    assert ev and ev[0]["reason"] == "not in proxy_from"
    assert not d.events("connect", peer="203.0.113.8")


@pytest.mark.parametrize("listener,header", [
    ("lb", b"EHLO client.example.test\r\n"),
    ("lb", v1("192.0.2.1")),               # v1 where v2 is configured
    ("lb1", v2("192.0.2.1")),              # and the other way
    ("lb1", b"PROXY TCP4 192.0.2.1 127.0.0.1 0400 587\r\n"),
    ("lb1", b"PROXY TCP4 192.0.2.1 127.0.0.1 1 587\n"),
    ("lb", SIG + b"\x21\x12\x00\x0c" + bytes(12)),   # UDP
    ("lb", SIG + b"\x22\x11\x00\x0c" + bytes(12)),   # command 2
])
def test_invalid_header_closed_without_reply(d, listener, header):
    before = len(d.events("proxy_refused", reason="invalid header"))
    r = via(d, listener, header)
    assert nothing_then_closed(r)
    assert d.wait_event("proxy_refused", count=before + 1,
                        reason="invalid header")
    ev = d.events("proxy_refused", reason="invalid header")[-1]
    assert ev["proxy"] == "127.0.0.1"


def test_header_byte_by_byte(d):
    """A header that comes in pieces is read whole."""
    hdr = v2("192.0.2.99")
    s = socket.create_connection(("127.0.0.1", d.ports["lb"]), timeout=10)
    for i in range(len(hdr)):
        s.sendall(hdr[i:i + 1])
        time.sleep(0.01)
    r = SMTPRaw.__new__(SMTPRaw)
    r.sock, r.buf, r.timeout = s, b"", 10
    assert r.reply()[0] == 220
    r.cmd("QUIT")
    r.close()
    assert d.wait_event("connect", peer="192.0.2.99")


def test_per_address_limit_uses_the_client(d):
    """max_connections_per_ip = 3 counts clients, not the balancer."""
    held = [via(d, "lb", v2("192.0.2.50")) for _ in range(3)]
    for r in held:
        assert r.reply()[0] == 220
    fourth = via(d, "lb", v2("192.0.2.50"))
    code, lines = fourth.reply()
    assert code == 421, lines
    other = via(d, "lb", v2("192.0.2.51"))
    assert other.reply()[0] == 220
    for r in held + [fourth, other]:
        r.close()


def test_timeout_and_shutdown(tmp_path):
    """No header, half a header: closed after timeout_command without a
    reply.  A connection still waiting for its header does not hold
    up a stop."""
    p = Posternd(tmp_path, listeners={"lb": LISTENERS["lb"]},
                 extra_global="timeout_command = 1\ngrace_period = 30\n")
    p.start()
    try:
        t0 = time.time()
        silent = via(p, "lb", b"")
        half = via(p, "lb", v2("192.0.2.1")[:20])
        assert nothing_then_closed(silent)
        assert nothing_then_closed(half)
        assert time.time() - t0 < 5
        assert p.wait_event("proxy_refused", reason="no header in time")
        assert p.wait_event("proxy_refused",
                            reason="header incomplete in time")
        waiting = via(p, "lb", SIG[:5])
        time.sleep(0.2)
        t0 = time.time()
    finally:
        assert p.stop() == 0
    assert time.time() - t0 < 5
    assert nothing_then_closed(waiting)


def test_lockout_by_the_client_address(tmp_path):
    """The throttle counts the client of the header: the one guessing
    passwords is locked out, another behind the same balancer is not."""
    p = Posternd(tmp_path, listeners={"lb": LISTENERS["lb"]},
                 extra_global="auth_throttle = yes\n"
                              "auth_throttle_delay = 0\n"
                              "auth_throttle_max_delay = 0\n"
                              "auth_throttle_lockout_failures = 3\n")
    p.start()
    try:
        r = via(p, "lb", v2("198.51.100.66"))
        assert r.reply()[0] == 220
        assert r.ehlo()[0] == 250
        replies = []
        for i in range(3):
            # Each a new guess: the same one again does not count.
            replies.append(r.cmd("AUTH PLAIN " +
                                 b64(f"\0tim@example.test\0wrong{i}"))[0])
        assert replies == [535, 535, 535]
        assert r.closed() or read_all_replies(r)[-1][0] == 421
        r.close()
        again = via(p, "lb", v2("198.51.100.66"))
        code, lines = again.reply()
        assert code == 421 and "4.7.0" in lines[0], lines
        again.close()
        other = via(p, "lb", v2("198.51.100.67"))
        assert other.reply()[0] == 220
        assert other.ehlo()[0] == 250
        assert other.login()[0] == 235
        other.close()
        ev = p.wait_event("auth_lockout")
        assert ev and ev[0]["peer"] == "198.51.100.66"
    finally:
        assert p.stop() == 0


def test_check_refuses_proxy_without_proxy_from(tmp_path):
    p = Posternd(tmp_path, listeners={
        "lb": "tls = none\nauth_before_tls = all\nproxy_protocol = v1\n"})
    p.prepare()
    out = subprocess.run([posternd_bin(), "-c", p.conf, "-t"],
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "[listener lb]: proxy_protocol = v1 needs proxy_from" in out.stderr


def test_profile_and_allow_nets_by_the_client(tmp_path):
    """A compatibility profile is chosen by the header's client, and so
    is a user's allow_nets= (Dovecot's meaning): the same balancer, two
    clients, two outcomes."""
    users = {
        "tim@example.test": ("tanstaaftanstaaf", "SHA512-CRYPT", ""),
        "scan@example.test": ("scan-pw-1", "SHA512-CRYPT",
                              "allow_nets=198.51.100.0/24"),
    }
    p = Posternd(tmp_path, users=users,
                 listeners={"lb": LISTENERS["lb"]},
                 extra_sections=("[profile scanners]\n"
                                 "networks = 198.51.100.0/24\n"
                                 "helo_auth = yes\n"))
    p.start()
    try:
        # The scanner's network: its profile (AUTH after HELO) and its
        # login.
        r = via(p, "lb", v2("198.51.100.20"))
        assert r.reply()[0] == 220
        assert r.cmd("HELO scanner")[0] == 250
        assert r.cmd("AUTH PLAIN " +
                     b64("\0scan@example.test\0scan-pw-1"))[0] == 235
        r.cmd("QUIT")
        r.close()
        ev = p.wait_event("profile", peer="198.51.100.20")
        assert ev and ev[0]["profile"] == "scanners"
        # Another client through the same balancer: no profile (AUTH
        # after HELO is refused), and allow_nets refuses the login.
        r = via(p, "lb", v2("203.0.113.20"))
        assert r.reply()[0] == 220
        assert r.cmd("HELO elsewhere")[0] == 250
        assert r.cmd("AUTH PLAIN " +
                     b64("\0scan@example.test\0scan-pw-1"))[0] == 503
        assert r.ehlo()[0] == 250
        assert r.cmd("AUTH PLAIN " +
                     b64("\0scan@example.test\0scan-pw-1"))[0] == 535
        r.cmd("QUIT")
        r.close()
        assert not p.events("profile", peer="203.0.113.20")
        fail = p.wait_event("auth_failed", peer="203.0.113.20")
        assert fail and fail[0]["user"] == "scan@example.test"
        assert fail[0]["reason"].startswith("allow_nets: 203.0.113.20 not "
                                            "in the allowed networks")
    finally:
        assert p.stop() == 0
