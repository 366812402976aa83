"""Dovecot's account flags in posternd's user stores.

A Dovecot user file must work as it is (DESIGN.md "The user file"), so
the passdb extra fields that refuse a login refuse it here too, with
Dovecot's meaning (doc.dovecot.org, "Password database extra fields"):

- nologin (any value, or none): the user may not log in even with the
  right password; reason= says why.  Dovecot shows the reason to the
  client; posternd only logs it and answers 535 5.7.8, as for a wrong
  password.
- noauthenticate: the store authenticates nobody for this user.
- allow_nets=: the client address must be in one of the networks (the
  tests connect from 127.0.0.1 and from 127.0.0.2, both loopback).
- relay=NAME is carried in the record (for routing) and changes nothing
  at login.

The same for the pgsql store, with columns of those names
(userdb_query).  Every refusal must look exactly like a wrong password
to the client, and say why in the log (auth_failed reason=...).
"""
import os
import smtplib

import pytest

from pgsql_util import PgCluster, sql_str, verifiers
from postern_client_util import (ALL_MECHS, EX_NOPERM, EX_OK, FIXED_MSG,
                                 describe, run_postern)
from posternd_util import (Posternd, postern_bin, posternd_bin, unique_rcpt,
                           wait_until)

PW = "tanstaaftanstaaf"
WRONG = "tanstaaftanstaaX"
SCHEMES = "SCRAM-SHA-256,SCRAM-SHA-1,CRAM-MD5,DIGEST-MD5,SHA512-CRYPT"
REALM = "mail.example.test"
SMTPLIB_MECHS = ["PLAIN", "LOGIN", "CRAM-MD5"]

# The user file: (password, schemes, extra fields).
USERS = {
    "tim@example.test": (PW, SCHEMES, ""),
    # The line of the issue: disabled, and restricted to a network the
    # tests never connect from.
    "carol@example.test": (PW, SCHEMES, "nologin=y reason=disabled "
                           "allow_nets=192.0.2.0/24"),
    "nora@example.test": (PW, SCHEMES, "nologin=y reason=disabled"),
    "nell@example.test": (PW, SCHEMES, "nologin"),
    "nina@example.test": (PW, SCHEMES, "noauthenticate"),
    "alice@example.test": (PW, SCHEMES, "allow_nets=127.0.0.1/32"),
    "ivan@example.test": (PW, SCHEMES, "allow_nets=192.0.2.0/24,127.0.0.2"),
    "rita@example.test": (PW, SCHEMES, "relay=m365 allow_nets=127.0.0.0/8 "
                          "userdb_quota_rule=*:storage=1G"),
}


def need_posternd():
    if not os.access(posternd_bin(), os.X_OK):
        pytest.fail(f"{posternd_bin()} is not built")


def smtp_auth(port, user, password, mech="PLAIN", source="127.0.0.1"):
    """(code, text) of AUTH mech on a fresh connection from source."""
    s = smtplib.SMTP("127.0.0.1", port, source_address=(source, 0),
                     timeout=20)
    try:
        s.ehlo("client.example.test")
        s.user, s.password = user, password
        how = {"PLAIN": s.auth_plain, "LOGIN": s.auth_login,
               "CRAM-MD5": s.auth_cram_md5}[mech]
        try:
            code, text = s.auth(mech, how)
        except smtplib.SMTPAuthenticationError as e:
            code, text = e.smtp_code, e.smtp_error
        return code, text.decode()
    finally:
        try:
            s.quit()
        except smtplib.SMTPException:
            s.close()


def failures(p, user):
    return p.events("auth_failed", user=user)


def last_failure(p, user, count):
    """The count-th auth_failed line of user (waiting for it)."""
    ev = p.wait_event("auth_failed", count=count, user=user)
    assert len(ev) >= count, p.log()[-3000:]
    return ev[count - 1]


def refused_like_wrong_password(p, user, mech="PLAIN", source="127.0.0.1",
                                reason=None):
    """AUTH as user with the right password gets exactly the reply of a
    wrong password (of a user who may log in); the log says reason."""
    port = p.ports["plain"]
    want = smtp_auth(port, "tim@example.test", WRONG, mech, source)
    assert want[0] == 535 and want[1].startswith("5.7.8 "), want
    n = len(failures(p, user))
    got = smtp_auth(port, user, PW, mech, source)
    assert got == want, (user, mech, got, want)
    ev = last_failure(p, user, n + 1)
    assert ev["mech"] == mech and ev["error"] == "EAUTH", ev
    if reason is not None:
        assert ev["reason"] == reason, ev
    return ev


def accepted(p, user, mech="PLAIN", source="127.0.0.1"):
    code, text = smtp_auth(p.ports["plain"], user, PW, mech, source)
    assert code == 235, (user, mech, source, code, text)


# --- passwd-file -------------------------------------------------------------

@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    need_posternd()
    p = Posternd(tmp_path_factory.mktemp("flags"), users=dict(USERS)).start()
    try:
        yield p
    finally:
        rc = p.stop()
        assert rc == 0, p.log()[-3000:]


def test_issue_line_refused(srv):
    """carol@example.test:{PLAIN}Secret123::::::nologin=y reason=disabled
    allow_nets=192.0.2.0/24 got 235 from 127.0.0.1 before."""
    for mech in SMTPLIB_MECHS:
        refused_like_wrong_password(
            srv, "carol@example.test", mech,
            reason="allow_nets: 127.0.0.1 not in the allowed networks")


@pytest.mark.parametrize("mech", SMTPLIB_MECHS)
def test_nologin_smtplib(srv, mech):
    ev = refused_like_wrong_password(
        srv, "nora@example.test", mech,
        reason="nologin: login disabled for this user (reason=disabled)")
    assert "disabled" in ev["reason"]


def test_nologin_reason_only_in_log(srv):
    """Dovecot shows reason= to the client; posternd only logs it."""
    r = srv.raw("plain")
    try:
        assert r.reply()[0] == 220
        assert r.ehlo()[0] == 250
        code, lines = r.login("nora@example.test", PW)
        assert code == 535
        assert "disabled" not in " ".join(lines).lower(), lines
        # The session goes on: a later login of another user works.
        assert r.login("tim@example.test", PW)[0] == 235
    finally:
        r.close()


def test_nologin_bare_key(srv):
    """A bare "nologin" (no value) sets the flag, as in Dovecot."""
    refused_like_wrong_password(srv, "nell@example.test", "PLAIN",
                                reason="nologin: login disabled for this "
                                "user")


def test_noauthenticate(srv):
    for mech in SMTPLIB_MECHS:
        refused_like_wrong_password(
            srv, "nina@example.test", mech,
            reason="noauthenticate: the user store does not authenticate "
            "this user")


@pytest.mark.parametrize("mech", ALL_MECHS)
def test_every_mechanism_refused(srv, tmp_path, mech):
    """The challenge mechanisms check the password inside the session:
    the refusal must come before, for each of them (postern send, over
    STARTTLS)."""
    pwfile = tmp_path / "pw"
    pwfile.write_text(PW + "\n")
    for user, want in (("nora@example.test", EX_NOPERM),
                       ("nina@example.test", EX_NOPERM),
                       ("carol@example.test", EX_NOPERM),
                       ("alice@example.test", EX_OK)):
        n = len(srv.events("auth_ok", user=user, mech=mech))
        p = run_postern(["send", "--server",
                         f"smtp://127.0.0.1:{srv.ports['starttls']}",
                         "--timeout", "20", "--cafile", srv.cert, "--user",
                         user, "--password-file", pwfile, "--mech", mech,
                         "--from", user, "--to", unique_rcpt("flags")],
                        input=FIXED_MSG)
        assert p.returncode == want, (user, describe(p))
        if want == EX_NOPERM:
            assert "535 5.7.8" in p.stderr.decode(), describe(p)
            assert len(srv.events("auth_ok", user=user, mech=mech)) == n
        else:
            assert srv.wait_event("auth_ok", count=n + 1, user=user,
                                  mech=mech)


def test_allow_nets_by_source_address(srv):
    for mech in SMTPLIB_MECHS:
        accepted(srv, "alice@example.test", mech, source="127.0.0.1")
        refused_like_wrong_password(
            srv, "alice@example.test", mech, source="127.0.0.2",
            reason="allow_nets: 127.0.0.2 not in the allowed networks")
        accepted(srv, "ivan@example.test", mech, source="127.0.0.2")
        refused_like_wrong_password(
            srv, "ivan@example.test", mech, source="127.0.0.1",
            reason="allow_nets: 127.0.0.1 not in the allowed networks")


def test_relay_field_and_unknown_fields_change_nothing(srv):
    accepted(srv, "rita@example.test", "PLAIN")
    accepted(srv, "rita@example.test", "CRAM-MD5", source="127.0.0.2")


def test_wrong_password_of_flagged_user_is_a_wrong_password(srv):
    """A wrong password of a user allowed from here stays a wrong
    password in the log; a refused user's says the flag."""
    code, _ = smtp_auth(srv.ports["plain"], "alice@example.test", WRONG)
    assert code == 535
    ev = last_failure(srv, "alice@example.test",
                      len(failures(srv, "alice@example.test")))
    assert "allow_nets" not in ev["reason"], ev


def test_reload_clears_and_sets_flags(tmp_path):
    need_posternd()
    users = {"tim@example.test": (PW, SCHEMES, ""),
             "nora@example.test": (PW, SCHEMES, "nologin=y reason=gone")}
    p = Posternd(tmp_path, users=users).start()
    try:
        refused_like_wrong_password(p, "nora@example.test", "PLAIN",
                                    reason="nologin: login disabled for "
                                    "this user (reason=gone)")
        # Drop the extra fields of nora's line: she may log in again.
        lines = open(p.userfile).read().split("\n")
        lines = [":".join(l.split(":")[:2]) if l.startswith("nora@") else l
                 for l in lines]
        with open(p.userfile, "w") as f:
            f.write("\n".join(lines))
        p.hup()
        assert p.wait_event("reloaded", count=1)
        accepted(p, "nora@example.test", "PLAIN")
        # And tim may log in only from 192.0.2.1 from now on.
        lines = open(p.userfile).read().split("\n")
        lines = [l + "::::::allow_nets=192.0.2.1" if l.startswith("tim@")
                 else l for l in lines]
        with open(p.userfile, "w") as f:
            f.write("\n".join(lines))
        p.hup()
        assert p.wait_event("reloaded", count=2)
        code, _ = smtp_auth(p.ports["plain"], "tim@example.test", PW)
        assert code == 535
    finally:
        assert p.stop() == 0, p.log()[-3000:]


# --- pgsql -------------------------------------------------------------------

QUERY = ("SELECT password, allow_from, relay, nologin, reason, "
         "noauthenticate, allow_nets FROM accounts WHERE name = $1")

ACCOUNTS = """
CREATE TABLE accounts (
    name           text PRIMARY KEY,
    password       text NOT NULL,
    allow_from     text,
    relay          text,
    nologin        text,
    reason         text,
    noauthenticate text,
    allow_nets     text,
    disabled       boolean NOT NULL DEFAULT false
);
"""


class PgPosternd(Posternd):
    """A Posternd whose users are in PostgreSQL (no user file)."""

    def __init__(self, tmp, pg, query, **kw):
        self.pg = pg
        self.query = query
        super().__init__(tmp, users={}, **kw)

    def write_config(self):
        super().write_config()
        text = open(self.conf).read()
        old = f"userdb = passwd-file:{self.userfile}\n"
        assert old in text
        text = text.replace(old, f"userdb = pgsql:{self.pg.conninfo()}\n"
                            f"userdb_query = {self.query}\n")
        with open(self.conf, "w") as f:
            f.write(text)


@pytest.fixture(scope="module")
def pg():
    need_posternd()
    pg = PgCluster()
    try:
        pg.initdb().start().create_schema()
        pg.psql(ACCOUNTS)
        yield pg
    finally:
        pg.destroy()


def set_account(pg, name, disabled=False, **cols):
    """Insert or replace an account with the password PW and the given
    columns (None: NULL)."""
    password = verifiers(postern_bin(), name, PW, SCHEMES.split(","), REALM)
    names = ["relay", "nologin", "reason", "noauthenticate", "allow_nets"]
    values = ", ".join(sql_str(cols.get(c)) for c in names)
    pg.psql(f"DELETE FROM accounts WHERE name = {sql_str(name)};"
            f"INSERT INTO accounts (name, password, {', '.join(names)}, "
            f"disabled) VALUES ({sql_str(name)}, {sql_str(password)}, "
            f"{values}, {'true' if disabled else 'false'});")


@pytest.fixture(scope="module")
def pgsrv(pg, tmp_path_factory):
    set_account(pg, "tim@example.test")
    p = PgPosternd(tmp_path_factory.mktemp("pgflags"), pg, QUERY,
                   extra_global="userdb_timeout = 10\n").start()
    try:
        yield p
    finally:
        assert p.stop() == 0, p.log()[-3000:]


@pytest.mark.parametrize("cols, reason", [
    ({"nologin": "y", "reason": "disabled"},
     "nologin: login disabled for this user (reason=disabled)"),
    # Dovecot: any value but NULL sets a flag, even '' or 'f'.
    ({"nologin": ""}, "nologin: login disabled for this user"),
    ({"nologin": "f"}, "nologin: login disabled for this user"),
    ({"noauthenticate": "1"},
     "noauthenticate: the user store does not authenticate this user"),
    ({"allow_nets": "192.0.2.0/24"},
     "allow_nets: 127.0.0.1 not in the allowed networks"),
    # Present but empty: no network lets the user in.
    ({"allow_nets": ""}, "allow_nets: 127.0.0.1 not in the allowed "
     "networks"),
], ids=["nologin-reason", "nologin-empty", "nologin-f", "noauthenticate",
        "allow_nets-other", "allow_nets-empty"])
def test_pgsql_flags_refuse(pg, pgsrv, cols, reason):
    user = "pat@example.test"
    set_account(pg, user, **cols)
    for mech in SMTPLIB_MECHS:
        refused_like_wrong_password(pgsrv, user, mech, reason=reason)


def test_pgsql_null_flags_and_relay_log_in(pg, pgsrv):
    user = "quinn@example.test"
    set_account(pg, user, relay="m365", reason="only a reason")
    for mech in SMTPLIB_MECHS:
        accepted(pgsrv, user, mech)


def test_pgsql_allow_nets_by_source_address(pg, pgsrv):
    user = "sam@example.test"
    set_account(pg, user, allow_nets="127.0.0.2, 198.51.100.0/24")
    for mech in SMTPLIB_MECHS:
        accepted(pgsrv, user, mech, source="127.0.0.2")
        refused_like_wrong_password(
            pgsrv, user, mech, source="127.0.0.1",
            reason="allow_nets: 127.0.0.1 not in the allowed networks")


def test_pgsql_row_change_takes_effect_at_once(pg, pgsrv):
    user = "una@example.test"
    set_account(pg, user)
    accepted(pgsrv, user)
    pg.psql(f"UPDATE accounts SET nologin = 'y' WHERE name = {sql_str(user)};")
    refused_like_wrong_password(pgsrv, user, reason="nologin: login "
                                "disabled for this user")
    pg.psql(f"UPDATE accounts SET nologin = NULL WHERE name = "
            f"{sql_str(user)};")
    accepted(pgsrv, user)


def test_pgsql_boolean_column(pg, tmp_path):
    """A boolean column becomes a flag with CASE ... THEN 'y' END (NULL
    otherwise), as posternd.conf(5) says: 'f' would set it."""
    query = ("SELECT password, allow_from, CASE WHEN disabled THEN 'y' END "
             "AS nologin FROM accounts WHERE name = $1")
    set_account(pg, "vic@example.test", disabled=True)
    set_account(pg, "wes@example.test", disabled=False)
    p = PgPosternd(tmp_path, pg, query).start()
    try:
        refused_like_wrong_password(p, "vic@example.test", "PLAIN",
                                    reason="nologin: login disabled for "
                                    "this user")
        accepted(p, "wes@example.test", "PLAIN")
    finally:
        assert p.stop() == 0, p.log()[-3000:]


def test_pgsql_every_mechanism_refused(pg, pgsrv, tmp_path):
    user = "xena@example.test"
    set_account(pg, user, nologin="y")
    pwfile = tmp_path / "pw"
    pwfile.write_text(PW + "\n")
    for mech in ALL_MECHS:
        p = run_postern(["send", "--server",
                         f"smtp://127.0.0.1:{pgsrv.ports['starttls']}",
                         "--timeout", "20", "--cafile", pgsrv.cert,
                         "--user", user, "--password-file", pwfile,
                         "--mech", mech, "--from", user, "--to",
                         unique_rcpt("pgflags")], input=FIXED_MSG)
        assert p.returncode == EX_NOPERM, (mech, describe(p))
        assert "535 5.7.8" in p.stderr.decode(), describe(p)
    assert wait_until(lambda: len(pgsrv.events("auth_failed", user=user))
                      >= len(ALL_MECHS))
    assert not pgsrv.events("auth_ok", user=user)
