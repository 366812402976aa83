"""`postern user add|passwd|del|list`: atomic edits that keep every other
byte of the file, refusals (duplicate, unknown user, broken file) that leave
it untouched, sysexits exit codes, and the file read back by Dovecot."""
import os
import shutil
import stat
import subprocess
import threading

import pytest

# A file with what real ones hold: comments, blank lines, a CRLF line,
# Dovecot's full form with extra fields, a bare crypt hash, and no final
# newline.
ORIG = (
    b"# postern users\n"
    b"\n"
    b"alice:{PLAIN}alice-pw\n"
    b"bob:{SCRAM-SHA-256}4096,W22ZaJ0SNY7soEsUEjb6gQ==,"
    b"WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=,"
    b"wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU= "
    b"{CRAM-MD5}d06d4e1b26fccaa4b0b61801132340a354b21152711fb604ca3e035e"
    b"7015116b:1000:1000:Bob:/home/bob::allow_from=10.0.0.0/8 nodelay\n"
    b"\t\n"
    b"carol:{PLAIN}carol-pw\r\n"
    b"# trailing comment\n"
    b"dave:$1$zc5Aw6.g$lOXlrfCb3NSJdvsDB7JMM0"
)


def user(bin_, *args, stdin="", timeout=60):
    return subprocess.run([str(bin_), "user", *map(str, args)], input=stdin,
                          capture_output=True, text=True, timeout=timeout)


def pwtest(bin_, hashed, password, who="x"):
    return subprocess.run([str(bin_), "pw", "-t", hashed, "-u", who],
                          input=password + "\n", capture_output=True,
                          text=True, timeout=60).returncode


@pytest.fixture
def userfile(tmp_path):
    f = tmp_path / "users"
    f.write_bytes(ORIG)
    f.chmod(0o640)
    return f


def snapshot(path):
    st = os.stat(path)
    return (path.read_bytes(), st.st_ino, st.st_mtime_ns, st.st_mode)


def line_of(data, name):
    for line in data.split(b"\n"):
        if line.startswith(name.encode() + b":"):
            return line
    return None


def no_temp_files(path):
    left = [f for f in os.listdir(path.parent) if f.startswith(".")]
    assert left == [], f"temporary files left: {left}"


def test_add_appends_and_keeps_every_byte(postern_bin, userfile):
    p = user(postern_bin, "add", "-f", userfile, "eve@example.test",
             stdin="eve pw\n")
    assert p.returncode == 0, p.stderr
    data = userfile.read_bytes()
    # The old bytes, a newline for the unterminated last line, the user.
    assert data.startswith(ORIG + b"\n")
    new = data[len(ORIG) + 1:]
    assert new.startswith(b"eve@example.test:{SCRAM-SHA-256}4096,")
    assert new.endswith(b"\n") and new.count(b"\n") == 1
    assert pwtest(postern_bin, new[len("eve@example.test:"):-1].decode(),
                  "eve pw") == 0
    # Mode kept (0640), no temporary file left.
    assert stat.S_IMODE(os.stat(userfile).st_mode) == 0o640
    no_temp_files(userfile)


def test_add_creates_a_private_file(postern_bin, tmp_path):
    f = tmp_path / "new-users"
    p = user(postern_bin, "add", "-f", f, "bob", "-s",
             "SCRAM-SHA-256,CRAM-MD5,DIGEST-MD5", "-r", "example.test",
             stdin="pencil\n")
    assert p.returncode == 0, p.stderr
    assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    data = f.read_bytes()
    assert data.startswith(b"bob:{SCRAM-SHA-256}") and data.endswith(b"\n")
    parts = data[4:-1].decode().split(" ")
    assert [x[:x.index("}") + 1] for x in parts] == [
        "{SCRAM-SHA-256}", "{CRAM-MD5}", "{DIGEST-MD5}"]
    assert pwtest(postern_bin, parts[2], "pencil", "bob@example.test") == 0
    # A DIGEST-MD5 verifier without any realm gets a note.
    p = user(postern_bin, "add", "-f", f, "carl", "-s", "DIGEST-MD5",
             stdin="pencil\n")
    assert p.returncode == 0 and "empty realm" in p.stderr


def test_add_duplicate_refused(postern_bin, userfile):
    before = snapshot(userfile)
    p = user(postern_bin, "add", "-f", userfile, "bob", stdin="x\n")
    assert p.returncode == 65
    assert f"user 'bob' already exists in {userfile} (line 4)" in p.stderr
    assert snapshot(userfile) == before


def test_passwd_changes_only_the_password_field(postern_bin, userfile):
    p = user(postern_bin, "passwd", "-f", userfile, "bob", stdin="new pw\n")
    assert p.returncode == 0, p.stderr
    data = userfile.read_bytes()
    old_lines, new_lines = ORIG.split(b"\n"), data.split(b"\n")
    assert len(old_lines) == len(new_lines)
    for a, b in zip(old_lines, new_lines):
        if a.startswith(b"bob:"):
            # Same schemes as before, new values; the rest of the line kept.
            fields = b.split(b":", 2)
            assert fields[2] == (b"1000:1000:Bob:/home/bob::"
                                 b"allow_from=10.0.0.0/8 nodelay")
            verifiers = fields[1].decode().split(" ")
            assert [v[:v.index("}") + 1] for v in verifiers] == [
                "{SCRAM-SHA-256}", "{CRAM-MD5}"]
            for v in verifiers:
                assert pwtest(postern_bin, v, "new pw") == 0
                assert pwtest(postern_bin, v, "pencil") == 77
        else:
            assert a == b
    assert stat.S_IMODE(os.stat(userfile).st_mode) == 0o640
    no_temp_files(userfile)


@pytest.mark.parametrize("name,schemes,want", [
    ("carol", ["-s", "SHA512-CRYPT"], b"carol:{SHA512-CRYPT}$6$"),
    ("dave", [], b"dave:{CRYPT}$"),           # a bare crypt hash is CRYPT
    ("alice", [], b"alice:{PLAIN}"),          # PLAIN stays PLAIN
])
def test_passwd_schemes(postern_bin, userfile, name, schemes, want):
    p = user(postern_bin, "passwd", "-f", userfile, name, *schemes,
             stdin="n3w\n")
    assert p.returncode == 0, p.stderr
    data = userfile.read_bytes()
    line = line_of(data, name)
    assert line.startswith(want), line
    # carol's CRLF and dave's missing final newline survive.
    if name == "carol":
        assert line.endswith(b"\r")
    if name == "dave":
        assert not data.endswith(b"\n")
    hashed = line.split(b":")[1].rstrip(b"\r").decode()
    assert pwtest(postern_bin, hashed, "n3w") == 0


def test_del(postern_bin, userfile):
    p = user(postern_bin, "del", "-f", userfile, "bob")
    assert p.returncode == 0, p.stderr
    data = userfile.read_bytes()
    assert data == b"\n".join(l for l in ORIG.split(b"\n")
                              if not l.startswith(b"bob:"))
    # The last line, without its newline.
    p = user(postern_bin, "del", "-f", userfile, "dave")
    assert p.returncode == 0
    assert userfile.read_bytes() == data[:data.index(b"dave:")]
    no_temp_files(userfile)


@pytest.mark.parametrize("action", ["passwd", "del"])
def test_unknown_user_refused(postern_bin, userfile, action):
    before = snapshot(userfile)
    p = user(postern_bin, action, "-f", userfile, "Bob", stdin="x\n")
    assert p.returncode == 67
    assert f"no user 'Bob' in {userfile}" in p.stderr
    assert snapshot(userfile) == before


def test_list(postern_bin, userfile):
    p = user(postern_bin, "list", "-f", userfile)
    assert p.returncode == 0, p.stderr
    assert p.stdout == (
        "alice PLAIN\n"
        "bob SCRAM-SHA-256,CRAM-MD5 allow_from=10.0.0.0/8 nodelay\n"
        "carol PLAIN\n"
        "dave CRYPT\n")
    p = user(postern_bin, "list", "-f", userfile, "carol")
    assert p.stdout == "carol PLAIN\n"
    p = user(postern_bin, "list", "-f", userfile, "zed")
    assert p.returncode == 67


BROKEN = [
    (b"a:{PLAIN}x\nb:{PLAIN}y\n# c\na:{PLAIN}z\n",
     ":4: duplicate user 'a' (first on line 1)"),
    (b"a:{PLAIN}x\nb:{CRAM-MD5}0123\n",
     ":2: user 'b': bad password field: {CRAM-MD5}"),
    (b"a:{PLAIN}x\n\nnocolon\n", ":3: user 'nocolon': no ':'"),
]


@pytest.mark.parametrize("text,msg", BROKEN)
@pytest.mark.parametrize("action", [["add", "new"], ["passwd", "a"],
                                    ["del", "a"], ["list"]])
def test_broken_file_untouched(postern_bin, tmp_path, text, msg, action):
    f = tmp_path / "users"
    f.write_bytes(text)
    before = snapshot(f)
    p = user(postern_bin, action[0], "-f", f, *action[1:], stdin="x\n")
    assert p.returncode == 65, p.stderr
    assert f"{f}{msg}" in p.stderr
    assert "left unchanged" in p.stderr
    assert snapshot(f) == before


@pytest.mark.parametrize("args,stdin,code,msg", [
    (["add", "bob2"], "x\n", 64, "usage:"),                 # no -f
    (["frob", "-f", "F", "bob"], "x\n", 64, "unknown action 'frob'"),
    (["add", "-f", "F"], "x\n", 64, "usage:"),              # no user
    (["add", "-f", "F", "a", "b"], "x\n", 64, "usage:"),
    (["del", "-f", "F", "alice", "-s", "PLAIN"], "", 64, "usage:"),
    (["add", "-f", "F", "a:b"], "x\n", 65, "':' in a user name"),
    (["add", "-f", "F", "#a"], "x\n", 65, "start with '#'"),
    (["add", "-f", "F", "a b"], "x\n", 65, "space in a user name"),
    (["add", "-f", "F", "new", "-s", "NOPE"], "x\n", 64, "unknown scheme"),
    (["add", "-f", "F", "new", "-s", "SCRAM-SHA-1", "--rounds", "100"],
     "x\n", 64, "at least 4096"),
    (["add", "-f", "F", "new"], "", 66, "no password on standard input"),
    (["add", "-f", "F", "new"], "\n", 65, "empty password refused"),
    (["passwd", "-f", "F", "alice"], "", 66, "no password"),
])
def test_errors_leave_file_untouched(postern_bin, userfile, args, stdin, code,
                                     msg):
    before = snapshot(userfile)
    args = [str(userfile) if a == "F" else a for a in args]
    p = user(postern_bin, *args, stdin=stdin)
    assert p.returncode == code, f"got exit {p.returncode}, want {code}: " \
                                 f"{p.stderr}"
    assert msg in p.stderr
    assert snapshot(userfile) == before
    no_temp_files(userfile)


def test_missing_file_and_directory(postern_bin, tmp_path):
    p = user(postern_bin, "passwd", "-f", tmp_path / "nope", "a", stdin="x\n")
    assert p.returncode == 66
    p = user(postern_bin, "list", "-f", tmp_path / "nope")
    assert p.returncode == 66
    p = user(postern_bin, "add", "-f", tmp_path / "no" / "users", "a",
             stdin="x\n")
    assert p.returncode == 73
    assert not (tmp_path / "no").exists()


def test_unwritable_directory(postern_bin, userfile):
    """No temporary file can be made beside the user file: refused, the
    file untouched.  Root ignores permissions, so as root the directory
    is made immutable (chattr +i) instead of read-only."""
    before = snapshot(userfile)
    d = str(userfile.parent)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", d], check=True)
    else:
        userfile.parent.chmod(0o555)
    try:
        p = user(postern_bin, "add", "-f", userfile, "new", stdin="x\n")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", d], check=True)
        else:
            userfile.parent.chmod(0o755)
    assert p.returncode == 73
    assert snapshot(userfile) == before


def test_symlink_edits_the_target(postern_bin, userfile, tmp_path):
    link = tmp_path / "link"
    link.symlink_to(userfile)
    p = user(postern_bin, "add", "-f", link, "new", stdin="x y\n")
    assert p.returncode == 0, p.stderr
    assert link.is_symlink()
    assert line_of(userfile.read_bytes(), "new") is not None


def test_concurrent_adds_all_land(postern_bin, userfile):
    """Each run locks the directory, so no add overwrites another."""
    results = []

    def add(i):
        results.append(user(postern_bin, "add", "-f", userfile, f"u{i}",
                            "-s", "PLAIN", stdin=f"pw{i}\n").returncode)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [0] * 12
    data = userfile.read_bytes()
    assert data.startswith(ORIG)
    for i in range(12):
        assert line_of(data, f"u{i}") == f"u{i}:{{PLAIN}}pw{i}".encode()


def test_atomic_write_sequence(postern_bin, userfile, tmp_path):
    """The new file is written beside the old, fsync'd, renamed over it,
    and the directory fsync'd, in that order."""
    trace = tmp_path / "trace"
    p = subprocess.run(["strace", "-f", "-qq", "-o", str(trace), "-e",
                        "trace=openat,write,fsync,rename,renameat,renameat2,"
                        "close,flock",
                        str(postern_bin), "user", "passwd", "-f",
                        str(userfile), "alice"],
                       input="new\n", capture_output=True, text=True,
                       timeout=60,
                       # LeakSanitizer cannot ptrace a traced process.
                       env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    assert p.returncode == 0, p.stderr
    calls = [l.split(None, 1)[1] for l in trace.read_text().splitlines()]
    tmp_open = next(i for i, c in enumerate(calls)
                    if c.startswith("openat(") and "/.users." in c)
    fd = calls[tmp_open].rsplit("=", 1)[1].strip()
    flock = next(i for i, c in enumerate(calls) if c.startswith("flock("))
    write = next(i for i, c in enumerate(calls)
                 if c.startswith(f"write({fd},"))
    fsync_file = next(i for i, c in enumerate(calls)
                      if c.startswith(f"fsync({fd})"))
    rename = next(i for i, c in enumerate(calls) if c.startswith("rename"))
    fsync_dir = next(i for i, c in enumerate(calls)
                     if c.startswith("fsync(") and i > rename)
    assert flock < tmp_open < write < fsync_file < rename < fsync_dir
    assert str(userfile) in calls[rename]
    no_temp_files(userfile)


@pytest.fixture(scope="module")
def doveadm():
    exe = shutil.which("doveadm")
    if exe is None:
        pytest.fail("doveadm (dovecot-core) not installed: tools/deps.sh test")
    return [exe, "-c", "/dev/null"]


def test_dovecot_reads_what_we_write(postern_bin, doveadm, tmp_path):
    """Every verifier `postern user add` writes passes `doveadm pw -t`."""
    f = tmp_path / "users"
    schemes = ("SCRAM-SHA-256,SCRAM-SHA-1,CRAM-MD5,DIGEST-MD5,SHA512-CRYPT,"
               "BLF-CRYPT,PLAIN")
    p = user(postern_bin, "add", "-f", f, "tim@example.test", "-s", schemes,
             stdin="tanstaaftanstaaf\n")
    assert p.returncode == 0, p.stderr
    field = f.read_text().rstrip("\n").split(":", 1)[1]
    for v in field.split(" "):
        d = subprocess.run(doveadm + ["pw", "-t", v, "-p", "tanstaaftanstaaf",
                                      "-u", "tim@example.test"],
                           capture_output=True, text=True, timeout=60)
        assert d.returncode == 0, f"{v}: {d.stderr}"


def test_help(postern_bin):
    p = user(postern_bin, "--help")
    assert p.returncode == 0
    assert "postern user add" in p.stdout
    assert "CRAM-MD5" in p.stdout and "DIGEST-MD5" in p.stdout
    p = user(postern_bin, "add", "--help")
    assert p.returncode == 0
    p = user(postern_bin)
    assert p.returncode == 64
