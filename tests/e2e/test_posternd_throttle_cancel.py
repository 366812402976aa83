"""Cancelled AUTH exchanges count for the throttle (issue "Hardening,
round 2", item 3): a client that starts SCRAM exchanges and cancels each
at the 334 (`*`) probed a user every time (before the server secret, the
salt told who exists) and used to be free to do so at any rate.  Now
each cancel counts as a failure: the address's delays apply to its next
attempts and lockout_failures cancels lock it out.  The 501 itself is
not held for auth_failure_delay (it tells nothing about the user), so a
fast canceller does not pile up connections that wait.  No duration is
asserted but that the 501 comes well before auth_failure_delay would."""
import time

from posternd_util import Posternd, SMTPRaw, b64

POLICY = ("auth_throttle = yes\n"
          "auth_throttle_delay = 0\n"
          "auth_throttle_max_delay = 0\n"
          "auth_throttle_lockout_failures = 3\n"
          "auth_throttle_lockout_time = 1h\n"
          "auth_failure_delay = 5s\n")
RIGHT = b64(b"\0tim@example.test\0tanstaaftanstaaf")


def start(tmp_path, extra):
    return Posternd(tmp_path, extra_global=extra,
                    listeners={"plain": "tls = none\nauth = required\n"
                                        "auth_before_tls = all\n"}).start()


def client_first(user):
    return b64(f"n,,n={user},r=rOprNGfwEbeRWgbNEkqO")


def test_cancel_counts_and_locks_out(tmp_path):
    p = start(tmp_path, POLICY)
    try:
        for i, user in enumerate(["tim@example.test", "nobody@example.test",
                                  "tim@example.test"]):
            s = SMTPRaw(p.ports["plain"])
            assert s.reply()[0] == 220
            s.ehlo()
            code, lines = s.cmd("AUTH SCRAM-SHA-256 " + client_first(user))
            assert code == 334, lines
            t0 = time.monotonic()
            code, lines = s.cmd("*")
            took = time.monotonic() - t0
            assert (code, lines) == (501, ["501 5.7.0 Authentication "
                                           "cancelled"]), lines
            # Not held for auth_failure_delay (5 s).
            assert took < 2.5, f"the 501 took {took:.2f} s"
            if i == 2:
                # The third failure locks the address out.
                code, lines = s.reply()
                assert code == 421 and lines[0].startswith("421 4.7.0 "), \
                    lines
                assert s.closed()
            s.close()
        s = SMTPRaw(p.ports["plain"])
        code, lines = s.reply()
        assert code == 421 and lines[0].startswith("421 4.7.0 "), lines
        s.close()
        ev = p.events("auth_failed", error="ECANCEL")
        assert len(ev) == 3, ev
        assert p.wait_log(r"event=auth_lockout ")
    finally:
        assert p.stop() == 0


def test_pipelined_cancels_locked_out(tmp_path):
    """120 pipelined probes on one connection: the lockout ends them
    after lockout_failures (3), where they all used to be answered."""
    p = start(tmp_path, POLICY)
    try:
        s = SMTPRaw(p.ports["plain"])
        assert s.reply()[0] == 220
        s.ehlo()
        probe = f"AUTH SCRAM-SHA-256 {client_first('nobody@x.test')}\r\n*\r\n"
        s.send("".join([probe] * 120))
        codes = []
        while True:
            try:
                codes.append(s.reply()[0])
            except (EOFError, ConnectionResetError):
                break
        assert codes == [334, 501] * 3 + [421], codes
        s.close()
    finally:
        assert p.stop() == 0


def test_cancels_exempt_network(tmp_path):
    """Exempt networks are not counted, cancels included."""
    p = start(tmp_path, POLICY + "auth_throttle_exempt = 127.0.0.0/8\n")
    try:
        for _ in range(5):
            s = SMTPRaw(p.ports["plain"])
            assert s.reply()[0] == 220
            s.ehlo()
            assert s.cmd("AUTH SCRAM-SHA-256 " +
                         client_first("nobody@example.test"))[0] == 334
            assert s.cmd("*")[0] == 501
            s.close()
        s = SMTPRaw(p.ports["plain"])
        assert s.reply()[0] == 220
        s.ehlo()
        assert s.cmd("AUTH PLAIN " + RIGHT)[0] == 235
        s.close()
    finally:
        assert p.stop() == 0
