"""Brute-force throttling (issue 6): failed logins from one address are
held and then locked out with 421 4.7.0; a success from one address does
not help another; exempt networks are never throttled.  No test here
asserts a duration: only replies and log lines."""
import pytest

from posternd_util import Posternd, SMTPRaw, b64

WRONG = b64(b"\0tim@example.test\0wrong")


def wrong(i):
    """A distinct wrong guess: repeating the same one counts once."""
    return b64(b"\0tim@example.test\0wrong%d" % i)
RIGHT = b64(b"\0tim@example.test\0tanstaaftanstaaf")
UNKNOWN = b64(b"\0nobody@example.test\0wrong")

POLICY = ("auth_throttle = yes\n"
          "auth_throttle_delay = 0\n"       # no hold: tests stay fast
          "auth_throttle_max_delay = 0\n"
          "auth_throttle_lockout_failures = 3\n"
          "auth_throttle_lockout_time = 1h\n")


def start(tmp_path, extra):
    return Posternd(tmp_path, extra_global=extra,
                    listeners={"plain": "tls = none\nauth = required\n"
                                        "auth_before_tls = all\n"}).start()


def attempt(p, resp):
    s = SMTPRaw(p.ports["plain"])
    try:
        code, lines = s.reply()
        if code != 220:
            return code, lines
        s.ehlo()
        return s.cmd("AUTH PLAIN " + resp)
    finally:
        s.close()


def test_lockout_after_failures(tmp_path):
    p = start(tmp_path, POLICY)
    try:
        for i in range(2):
            assert attempt(p, wrong(i))[0] == 535
        # The third failure locks the address: its 535 is followed by
        # 421 4.7.0 and the connection closes.
        s = SMTPRaw(p.ports["plain"])
        assert s.reply()[0] == 220
        s.ehlo()
        code, lines = s.cmd("AUTH PLAIN " + UNKNOWN)
        assert (code, lines[-1][:9]) == (535, "535 5.7.8")
        code, lines = s.reply()
        assert code == 421 and lines[0].startswith("421 4.7.0 ")
        assert "too many failed authentications" in lines[0]
        assert s.closed()
        s.close()
        # New connections are refused at once, even with the right
        # password.
        code, lines = attempt(p, RIGHT)
        assert code == 421 and lines[0].startswith("421 4.7.0 ")
        assert p.wait_log(r"event=connect .*refused=\"?auth lockout")
        assert p.wait_log(r"event=auth_lockout ")
    finally:
        assert p.stop() == 0


def test_unknown_user_counts_like_wrong_password(tmp_path):
    """Unknown users and wrong passwords are one kind of failure."""
    p = start(tmp_path, POLICY)
    try:
        assert attempt(p, UNKNOWN)[0] == 535
        assert attempt(p, WRONG)[0] == 535
        assert attempt(p, b64(b"\0other@example.test\0x"))[0] == 535
        code, lines = attempt(p, RIGHT)
        assert code == 421, lines
    finally:
        assert p.stop() == 0


def test_success_resets_the_address(tmp_path):
    p = start(tmp_path, POLICY)
    try:
        assert attempt(p, wrong(1))[0] == 535
        assert attempt(p, wrong(2))[0] == 535
        assert attempt(p, RIGHT)[0] == 235
        # The counter starts again: two more failures do not lock.
        assert attempt(p, wrong(3))[0] == 535
        assert attempt(p, wrong(4))[0] == 535
        assert attempt(p, RIGHT)[0] == 235
    finally:
        assert p.stop() == 0


def test_malformed_attempts_do_not_count(tmp_path):
    """A malformed exchange tested no password and probed no user.  (A
    cancelled one counts: test_posternd_throttle_cancel.py.)"""
    p = start(tmp_path, POLICY)
    try:
        for _ in range(5):
            s = SMTPRaw(p.ports["plain"])
            assert s.reply()[0] == 220
            s.ehlo()
            assert s.cmd("AUTH PLAIN !!!")[0] == 501
            assert s.cmd("AUTH LOGIN")[0] == 334
            assert s.cmd("!!!")[0] == 501
            s.close()
        assert attempt(p, RIGHT)[0] == 235
    finally:
        assert p.stop() == 0


@pytest.mark.parametrize("exempt", ["127.0.0.0/8 ::1", "127.0.0.1/32"])
def test_exempt_network_never_locked(tmp_path, exempt):
    p = start(tmp_path, POLICY + f"auth_throttle_exempt = {exempt}\n")
    try:
        for i in range(6):
            assert attempt(p, wrong(i))[0] == 535
        assert attempt(p, RIGHT)[0] == 235
    finally:
        assert p.stop() == 0


def test_same_guess_counts_once(tmp_path):
    """Dovecot's rule: a client retrying one wrong password (a device
    with a stale password) is not locked out by its own retries."""
    p = start(tmp_path, POLICY)
    try:
        for _ in range(6):
            assert attempt(p, WRONG)[0] == 535
        assert attempt(p, RIGHT)[0] == 235
    finally:
        assert p.stop() == 0


def test_throttle_off(tmp_path):
    p = start(tmp_path, "auth_throttle = no\n")
    try:
        for i in range(12):
            assert attempt(p, wrong(i))[0] == 535
        assert attempt(p, RIGHT)[0] == 235
    finally:
        assert p.stop() == 0


def test_held_reply_still_arrives(tmp_path):
    """With a real delay the 535 is held, not lost, and commands
    pipelined behind it are answered after it, in order."""
    p = start(tmp_path, "auth_throttle = yes\nauth_throttle_delay = 1\n"
                        "auth_throttle_lockout_failures = 0\n")
    try:
        s = SMTPRaw(p.ports["plain"])
        assert s.reply()[0] == 220
        s.ehlo()
        s.send("AUTH PLAIN " + WRONG + "\r\nNOOP\r\n")
        assert s.reply()[0] == 535
        assert s.reply()[0] == 250
        s.send("AUTH PLAIN " + RIGHT + "\r\n")
        assert s.reply()[0] == 235
        s.close()
    finally:
        assert p.stop() == 0
