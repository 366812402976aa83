"""Hostile input against a real posternd (issue 6): each case gets its
exact reply, and the server keeps serving other clients afterwards."""
import pytest

from posternd_util import Posternd, SMTPRaw, b64

RIGHT = b64(b"\0tim@example.test\0tanstaaftanstaaf")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    p = Posternd(tmp_path_factory.mktemp("hostile")).start()
    yield p
    assert p.stop() == 0


def still_serving(p):
    s = SMTPRaw(p.ports["plain"])
    assert s.reply()[0] == 220
    s.ehlo()
    assert s.cmd("AUTH PLAIN " + RIGHT)[0] == 235
    assert s.cmd("QUIT")[0] == 221
    s.close()


@pytest.mark.parametrize("request_line", [
    "GET / HTTP/1.1",
    "POST /login HTTP/1.1",
    "CONNECT example.org:443 HTTP/1.1",
    "HEAD / HTTP/1.0",
])
def test_http_request_closes_at_once(srv, request_line):
    """ALPACA class: an HTTP request is answered with one 421 and the
    connection closes; the headers that follow are never answered."""
    s = SMTPRaw(srv.ports["plain"])
    assert s.reply()[0] == 220
    s.send(request_line + "\r\nHost: mail.example.test\r\n"
           "Content-Length: 5\r\n\r\nhello")
    code, lines = s.reply()
    assert code == 421
    assert lines == ["421 4.7.0 mail.example.test Error: not an SMTP "
                     "command, closing"]
    assert s.closed()
    assert s.buf == b""
    s.close()
    still_serving(srv)


def test_http_on_implicit_tls_port(srv):
    """Plain HTTP to the TLS port fails the handshake; nothing leaks."""
    s = SMTPRaw(srv.ports["implicit"])
    s.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.closed()
    assert not s.buf.startswith(b"220")
    s.close()
    still_serving(srv)


def test_nul_bytes_in_commands(srv):
    s = SMTPRaw(srv.ports["plain"])
    assert s.reply()[0] == 220
    s.send(b"EH\x00LO x\r\n")
    assert s.reply()[0] == 500
    s.ehlo()
    s.send(b"AUTH PLAIN " + RIGHT.encode()[:8] + b"\x00" +
           RIGHT.encode()[8:] + b"\r\n")
    code, lines = s.reply()
    assert code == 501 and lines[0].startswith("501 5.5.2"), lines
    assert s.cmd("NOOP")[0] == 250
    s.close()
    still_serving(srv)


def test_100k_line(srv):
    """A 100 KB line gets one 500 5.5.6, and the session goes on."""
    s = SMTPRaw(srv.ports["plain"])
    assert s.reply()[0] == 220
    s.send("NOOP " + "x" * 100_000 + "\r\n")
    code, lines = s.reply()
    assert (code, lines[0][:9]) == (500, "500 5.5.6")
    assert s.cmd("NOOP")[0] == 250
    s.close()
    still_serving(srv)


def test_auth_response_never_asked_for(srv):
    """A base64 line sent as if answering a challenge that never came
    is just an unknown command."""
    s = SMTPRaw(srv.ports["plain"])
    assert s.reply()[0] == 220
    s.ehlo()
    code, lines = s.cmd(RIGHT)
    assert (code, lines[0][:9]) == (500, "500 5.5.1")
    s.close()


def test_pipelined_plain_glued_to_next_command(srv):
    """AUTH PLAIN with its response may be pipelined with what follows
    (RFC 4954 §4); the next command is answered after 235."""
    s = SMTPRaw(srv.ports["plain"])
    assert s.reply()[0] == 220
    s.ehlo()
    s.send("AUTH PLAIN " + RIGHT + "\r\nMAIL FROM:<tim@example.test>\r\n")
    assert s.reply()[0] == 235
    assert s.reply()[0] == 250
    s.close()
