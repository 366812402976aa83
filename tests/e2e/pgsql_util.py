"""A throwaway PostgreSQL cluster for the end-to-end tests.

PgCluster makes a cluster in its own directory under /tmp (initdb), starts
it (pg_ctl -w start) listening on a Unix socket in that directory and on
127.0.0.1 at a free port, creates the database "postern" with posternd's
table, and stops it (pg_ctl -m fast stop) and removes the directory at the
end.  PostgreSQL refuses to run as root: as root the server runs as the
`postgres` system user (runuser), and the directory is handed to it.

If PostgreSQL is not installed the tests fail (never skip) with the exact
command that installs it.
"""
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time

import pytest

INSTALL = ("apt-get update && apt-get install -y postgresql "
           "(or: tools/deps.sh test)")

# posternd's table (docs/posternd.conf.5, src/posternd/userdb_pgsql.h).
SCHEMA = """
CREATE TABLE users (
    name       text PRIMARY KEY,
    password   text NOT NULL,
    allow_from text
);
"""


def pg_bindir():
    """The directory of initdb/pg_ctl/postgres (Debian keeps them per
    version under /usr/lib/postgresql), or None."""
    cands = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(p.split("/")[4]) if p.split("/")[4].isdigit()
                   else 0, reverse=True)
    for c in cands:
        d = os.path.dirname(c)
        if all(os.access(os.path.join(d, t), os.X_OK)
               for t in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


def require_postgresql():
    """The bin directory, or the test fails saying how to install it."""
    d = pg_bindir()
    if d is None or shutil.which("psql") is None:
        pytest.fail("PostgreSQL is not installed (initdb, pg_ctl, postgres "
                    "and psql are needed); run as root: " + INSTALL,
                    pytrace=False)
    return d


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sql_str(s):
    """A string literal (standard_conforming_strings is on by default)."""
    if s is None:
        return "NULL"
    assert "\0" not in s
    return "'" + s.replace("'", "''") + "'"


class PgCluster:
    def __init__(self):
        self.bindir = require_postgresql()
        # Not under pytest's tmp_path: that is root's, mode 0700, and the
        # server runs as postgres.  Short, too: a socket path has a limit.
        self.dir = tempfile.mkdtemp(prefix="postern-pg-")
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "postgres.log")
        self.port = free_port()
        self.user = None
        self.running = False
        if os.geteuid() == 0:
            self.user = "postgres"
            try:
                pw = pwd.getpwnam(self.user)
            except KeyError:
                pytest.fail("no 'postgres' system user to run PostgreSQL "
                            "as; run as root: " + INSTALL, pytrace=False)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o755)

    # --- the server -------------------------------------------------------
    def _as_server(self, argv):
        if self.user is not None:
            return ["runuser", "-u", self.user, "--"] + argv
        return argv

    def _run(self, argv, **kw):
        p = subprocess.run(self._as_server(argv), capture_output=True,
                           text=True, timeout=120, **kw)
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}):\n"
                               f"{p.stdout}{p.stderr}\n{self.log()}")
        return p

    def initdb(self):
        self._run([os.path.join(self.bindir, "initdb"), "-D", self.data,
                   "-A", "trust", "-U", "postgres", "-E", "UTF8",
                   "--locale=C", "--no-sync"])
        return self

    def start(self):
        opts = (f"-k {self.dir} -c listen_addresses=127.0.0.1 -p {self.port} "
                "-c fsync=off -c max_connections=100")
        self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data,
                   "-l", self.logfile, "-w", "-t", "60", "-o", opts, "start"])
        self.running = True
        return self

    def stop(self):
        """pg_ctl -m fast stop (sessions are disconnected)."""
        if not self.running:
            return
        self._run([os.path.join(self.bindir, "pg_ctl"), "-D", self.data,
                   "-m", "fast", "-w", "-t", "60", "stop"])
        self.running = False

    def destroy(self):
        try:
            if self.running:
                self.stop()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    def log(self):
        try:
            return open(self.logfile, errors="replace").read()[-3000:]
        except OSError:
            return ""

    # --- clients ----------------------------------------------------------
    def conninfo(self, tcp=False, db="postern"):
        """A libpq connection string: the Unix socket in the cluster's
        directory, or 127.0.0.1 and the port."""
        host = "hostaddr=127.0.0.1" if tcp else f"host={self.dir}"
        return f"{host} port={self.port} dbname={db} user=postgres"

    def psql(self, sql, db="postern", check=True):
        """Run sql (several statements allowed) with psql; returns its
        output (unaligned, tuples only)."""
        p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v",
                            "ON_ERROR_STOP=1", "-h", self.dir, "-p",
                            str(self.port), "-U", "postgres", "-d", db],
                           input=sql, capture_output=True, text=True,
                           timeout=60)
        if check and p.returncode != 0:
            raise RuntimeError(f"psql failed: {p.stderr}\n{sql}")
        return p.stdout

    def create_schema(self):
        self.psql("CREATE DATABASE postern;", db="postgres")
        self.psql(SCHEMA)
        return self

    def set_user(self, name, password, allow_from=None):
        """Insert or replace one row of users."""
        self.psql("INSERT INTO users (name, password, allow_from) VALUES "
                  f"({sql_str(name)}, {sql_str(password)}, "
                  f"{sql_str(allow_from)}) ON CONFLICT (name) DO UPDATE SET "
                  "password = EXCLUDED.password, "
                  "allow_from = EXCLUDED.allow_from;")

    def delete_user(self, name):
        self.psql(f"DELETE FROM users WHERE name = {sql_str(name)};")

    def wait_connections(self, app, want, timeout=10):
        """Wait until `want` backends of application_name app exist."""
        deadline = time.time() + timeout
        while True:
            n = int(self.psql("SELECT count(*) FROM pg_stat_activity WHERE "
                              f"application_name = {sql_str(app)};",
                              db="postgres").strip() or 0)
            if n == want or time.time() >= deadline:
                return n
            time.sleep(0.05)


def verifiers(postern_bin, user, password, schemes, realm):
    """The password column for user: one {SCHEME}value per scheme, made by
    `postern pw`, separated by spaces (as in a passwd-file)."""
    out = []
    for s in schemes:
        p = subprocess.run([str(postern_bin), "pw", "-s", s, "-u", user,
                            "-r", realm], input=password + "\n",
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, f"postern pw -s {s}: {p.stderr}"
        out.append(p.stdout.strip())
    return " ".join(out)
