"""`postern pw`: making and checking verifiers, cross-checked against
Dovecot's own `doveadm pw` in both directions, published vectors, exit
codes, and the no-echo terminal prompt."""
import os
import pty
import select
import shutil
import subprocess
import time

import pytest

USER = "tim@example.test"

# Every scheme postern makes, with Dovecot's names (encodings too).
SCHEMES = [
    "PLAIN", "CLEAR", "CLEARTEXT", "PLAIN.b64", "CRAM-MD5", "HMAC-MD5",
    "CRAM-MD5.hex", "DIGEST-MD5", "SCRAM-SHA-1", "SCRAM-SHA-256",
    "SHA512-CRYPT", "SHA256-CRYPT", "BLF-CRYPT", "MD5-CRYPT", "CRYPT",
    "SHA512-CRYPT.b64",
]
# Dovecot makes these too; postern verifies them (DES-CRYPT it never makes).
DOVECOT_ONLY = ["DES-CRYPT"]

# (right, wrong): a plain one, one with spaces and a colon, one in UTF-8.
# The wrong ones differ in the first 8 characters (DES-CRYPT sees 8).
PASSWORDS = [
    ("tanstaaftanstaaf", "Tanstaaftanstaaf"),
    ("pen cil:1 2", "Pen cil:1 2"),
    ("p\u00e9ncil\u00df", "P\u00e9ncil\u00df"),    # fits ISO 8859-1
    ("p\u20acncil \u2713", "P\u20acncil \u2713"),   # does not
]


def latin1_not_ascii(password):
    try:
        password.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return not password.isascii()


def pw(bin_, *args, stdin="", timeout=60):
    return subprocess.run([str(bin_), "pw", *args], input=stdin,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def doveadm():
    """`doveadm pw` without a running Dovecot: -c /dev/null (an empty
    configuration) is enough for the pw command."""
    exe = shutil.which("doveadm")
    if exe is None:
        pytest.fail("doveadm (dovecot-core) not installed: tools/deps.sh test")
    cmd = [exe, "-c", "/dev/null", "pw"]
    p = subprocess.run(cmd + ["-s", "PLAIN", "-p", "x"], capture_output=True,
                       text=True, timeout=30)
    if p.returncode != 0 or p.stdout.strip() != "{PLAIN}x":
        pytest.fail(f"doveadm pw does not run here: {p.stderr.strip()}")
    return cmd


def dove_make(doveadm, scheme, password):
    p = subprocess.run(doveadm + ["-s", scheme, "-p", password, "-u", USER],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"doveadm pw -s {scheme}: {p.stderr}"
    return p.stdout.strip()


def dove_test(doveadm, hashed, password):
    return subprocess.run(doveadm + ["-t", hashed, "-p", password, "-u", USER],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("password,wrong", PASSWORDS)
@pytest.mark.parametrize("scheme", SCHEMES + DOVECOT_ONLY)
def test_doveadm_hash_verified_by_postern(postern_bin, doveadm, scheme,
                                         password, wrong):
    hashed = dove_make(doveadm, scheme, password)
    p = pw(postern_bin, "-t", hashed, "-u", USER, stdin=password + "\n")
    assert p.returncode == 0, f"{hashed}: got exit {p.returncode}: {p.stderr}"
    assert p.stdout == f"{hashed} (verified)\n"
    p = pw(postern_bin, "-t", hashed, "-u", USER, stdin=wrong + "\n")
    assert p.returncode == 77, f"{hashed}: got exit {p.returncode}, want 77"
    assert "password mismatch" in p.stderr
    assert p.stdout == ""


@pytest.mark.parametrize("password,wrong", PASSWORDS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_postern_hash_verified_by_doveadm(postern_bin, doveadm, scheme,
                                         password, wrong):
    args = ["-s", scheme, "-u", USER]
    if scheme.startswith("BLF"):
        args += ["--rounds", "5"]
    p = pw(postern_bin, *args, stdin=password + "\n")
    assert p.returncode == 0, p.stderr
    hashed = p.stdout.rstrip("\n")
    assert "\n" not in hashed
    assert hashed.upper().startswith("{" + scheme.upper())
    p = dove_test(doveadm, hashed, password)
    if scheme.startswith("DIGEST-MD5") and latin1_not_ascii(password):
        # The one intended difference: RFC 2831 §2.1.2.1 clients hash a
        # password that fits ISO 8859-1 in it, and so does postern, so
        # that the verifier serves them; Dovecot hashes UTF-8.
        assert p.returncode != 0
        p = pw(postern_bin, "-t", hashed, "-u", USER, stdin=password + "\n")
        assert p.returncode == 0
        return
    assert p.returncode == 0, f"doveadm pw -t {hashed}: {p.stderr}"
    assert "(verified)" in p.stdout
    p = dove_test(doveadm, hashed, wrong)
    assert p.returncode != 0, f"doveadm accepted a wrong password for {hashed}"


def test_published_vectors(postern_bin):
    # RFC 2195 password; Dovecot's stored CRAM-MD5 context (INTEROP.md).
    p = pw(postern_bin, "-s", "CRAM-MD5", stdin="tanstaaftanstaaf\n")
    assert p.stdout == ("{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152"
                        "711fb604ca3e035e7015116b\n")
    # RFC 2831 §4: H(chris:elwood.innosoft.com:secret).
    want = "{DIGEST-MD5}eb5a750053e4d2c34aa84bbc9b0b6ee7\n"
    p = pw(postern_bin, "-s", "DIGEST-MD5", "-u", "chris", "-r",
           "elwood.innosoft.com", stdin="secret\n")
    assert p.stdout == want, p.stderr
    p = pw(postern_bin, "-s", "DIGEST-MD5", "-u", "chris@elwood.innosoft.com",
           stdin="secret\n")
    assert p.stdout == want
    # RFC 5802 §5 and RFC 7677 §3 stored keys check with "pencil".
    for h in ["{SCRAM-SHA-1}4096,QSXCR+Q6sek8bf92,6dlGYMOdZcOPutkcNY8U2g7vK9Y=,"
              "D+CSWLOshSulAsxiupA+qs2/fTE=",
              "{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"
              "WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
              "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="]:
        assert pw(postern_bin, "-t", h, stdin="pencil\n").returncode == 0
        assert pw(postern_bin, "-t", h, stdin="pencils\n").returncode == 77
    # -r with -t: the realm joins the user as user@realm.
    h = "{DIGEST-MD5}eb5a750053e4d2c34aa84bbc9b0b6ee7"
    assert pw(postern_bin, "-t", h, "-u", "chris", "-r", "elwood.innosoft.com",
              stdin="secret\n").returncode == 0
    assert pw(postern_bin, "-t", h, "-u", "chris", "-r", "example.test",
              stdin="secret\n").returncode == 77


def test_defaults_and_fresh_salt(postern_bin):
    a = pw(postern_bin, stdin="pencil\n")
    b = pw(postern_bin, stdin="pencil\n")
    assert a.returncode == 0 and b.returncode == 0
    # Default: SCRAM-SHA-256, 4096 iterations, a new salt each time.
    assert a.stdout.startswith("{SCRAM-SHA-256}4096,")
    assert a.stdout.split(",")[1] != b.stdout.split(",")[1]
    p = pw(postern_bin, "-s", "SCRAM-SHA-1", "--rounds", "10000",
           stdin="pencil\n")
    assert p.stdout.startswith("{SCRAM-SHA-1}10000,")
    # Several schemes: one line, single spaces, each verifies.
    p = pw(postern_bin, "-s", "SCRAM-SHA-256,CRAM-MD5,DIGEST-MD5", "-u", USER,
           stdin="pencil\n")
    assert p.returncode == 0, p.stderr
    parts = p.stdout.rstrip("\n").split(" ")
    assert [x[:x.index("}") + 1] for x in parts] == [
        "{SCRAM-SHA-256}", "{CRAM-MD5}", "{DIGEST-MD5}"]
    for part in parts:
        assert pw(postern_bin, "-t", part, "-u", USER,
                  stdin="pencil\n").returncode == 0
    # A CRLF line end is not part of the password.
    p = pw(postern_bin, "-s", "PLAIN", stdin="pencil\r\n")
    assert p.stdout == "{PLAIN}pencil\n"
    # A password the file could not hold as it is goes out in base64.
    p = pw(postern_bin, "-s", "PLAIN", stdin="pen cil\n")
    assert p.stdout == "{PLAIN.b64}cGVuIGNpbA==\n"


@pytest.mark.parametrize("args,stdin,code,msg", [
    (["-s", "NOPE"], "pencil\n", 64, "unknown scheme 'NOPE'"),
    (["-s", "SCRAM-SHA-256,"], "pencil\n", 64, "bad scheme list"),
    (["-s", "SCRAM-SHA-256", "--rounds", "4095"], "pencil\n", 64,
     "at least 4096 iterations"),
    (["--rounds", "x"], "pencil\n", 64, "--rounds wants a positive number"),
    (["-s", "BLF-CRYPT", "--rounds", "32"], "pencil\n", 64, "out of range"),
    (["-s", "DES-CRYPT"], "pencil\n", 64, "DES uses only the first 8"),
    (["-s", "DIGEST-MD5"], "pencil\n", 64, "needs the user name"),
    (["extra"], "pencil\n", 64, "unexpected argument 'extra'"),
    (["--bogus"], "pencil\n", 64, "usage:"),
    ([], "", 66, "no password on standard input"),
    ([], "\n", 65, "empty password refused"),
    ([], "x" * 5000 + "\n", 65, "password longer than 4096 bytes"),
    (["-s", "SCRAM-SHA-256"], "pen\x01cil\n", 65, "SASLprep"),
    (["-t", "{CRAM-MD5}abc"], "pencil\n", 65, "not a valid verifier"),
    (["-t", "{NOPE}abc"], "pencil\n", 65, "unknown password scheme"),
    (["-t", "{DIGEST-MD5}eb5a750053e4d2c34aa84bbc9b0b6ee7"], "secret\n", 64,
     "needs -u"),
    (["-t", "{PLAIN}pencil"], "", 66, "no password"),
])
def test_errors(postern_bin, args, stdin, code, msg):
    p = pw(postern_bin, *args, stdin=stdin)
    assert p.returncode == code, f"got exit {p.returncode}, want {code}: " \
                                 f"{p.stderr}"
    assert msg in p.stderr
    assert p.stdout == ""


def test_help(postern_bin):
    p = pw(postern_bin, "--help")
    assert p.returncode == 0
    assert "usage: postern pw" in p.stdout
    # The note on legacy devices says what CRAM-MD5 and DIGEST-MD5 store.
    assert "-s SCRAM-SHA-256,CRAM-MD5" in p.stdout
    assert "MD5(user:realm:password)" in p.stdout
    assert "HMAC-MD5" in p.stdout
    p = subprocess.run([str(postern_bin), "--help"], capture_output=True,
                       text=True)
    assert "pw" in p.stdout and "user" in p.stdout


class Tty:
    """postern pw with its standard input on a pseudo-terminal."""

    def __init__(self, bin_, *args):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen([str(bin_), "pw", *args], stdin=slave,
                                     stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        os.close(slave)
        self.echo = b""

    def wait_stderr(self, text, timeout=10):
        got = b""
        end = time.monotonic() + timeout
        while text.encode() not in got:
            left = end - time.monotonic()
            assert left > 0, f"no prompt {text!r}; stderr so far {got!r}"
            r, _, _ = select.select([self.proc.stderr], [], [], left)
            if r:
                b = os.read(self.proc.stderr.fileno(), 1)
                assert b, f"stderr closed before {text!r}: {got!r}"
                got += b
        return got

    def type(self, line):
        os.write(self.master, line.encode() + b"\n")

    def finish(self):
        out, err = self.proc.communicate(timeout=30)
        # What the terminal showed: with echo off, only the new lines.
        while True:
            r, _, _ = select.select([self.master], [], [], 0.2)
            if not r:
                break
            try:
                b = os.read(self.master, 1024)
            except OSError:
                break
            if not b:
                break
            self.echo += b
        os.close(self.master)
        return self.proc.returncode, out.decode(), err.decode()


def test_tty_twice_without_echo(postern_bin):
    t = Tty(postern_bin, "-s", "PLAIN")
    t.wait_stderr("Password: ")
    t.type("s3cret-pw")
    t.wait_stderr("Retype password: ")
    t.type("s3cret-pw")
    rc, out, err = t.finish()
    assert rc == 0, err
    assert out == "{PLAIN}s3cret-pw\n"
    assert b"s3cret" not in t.echo


def test_tty_mismatch(postern_bin):
    t = Tty(postern_bin, "-s", "PLAIN")
    t.wait_stderr("Password: ")
    t.type("s3cret-pw")
    t.wait_stderr("Retype password: ")
    t.type("s3cret-px")
    rc, out, err = t.finish()
    assert rc == 65
    assert "do not match" in err
    assert out == ""
    assert b"s3cret" not in t.echo


def test_tty_verify_asks_once(postern_bin):
    t = Tty(postern_bin, "-t", "{PLAIN}s3cret-pw")
    t.wait_stderr("Password: ")
    t.type("s3cret-pw")
    rc, out, err = t.finish()
    assert rc == 0, err
    assert "Retype" not in err
    assert out == "{PLAIN}s3cret-pw (verified)\n"
