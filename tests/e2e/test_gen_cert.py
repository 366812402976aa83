"""tools/gen-cert.sh: the self-signed certificate make run and the e2e tests
use.  Checked with the openssl command line, not with the script's own
logic.  Self-contained: needs no fixture from conftest.py."""
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "gen-cert.sh"



def gen(*args, check=True, cwd=None):
    p = subprocess.run(["sh", str(SCRIPT), *map(str, args)], cwd=cwd,
                       capture_output=True, text=True, timeout=120)
    if check:
        assert p.returncode == 0, f"got exit {p.returncode}: {p.stderr}"
    return p


def openssl(*args, check=True):
    p = subprocess.run(["openssl", *map(str, args)], capture_output=True,
                       text=True, timeout=60)
    if check:
        assert p.returncode == 0, f"openssl {args}: {p.stderr}"
    return p


def san(cert):
    out = openssl("x509", "-in", cert, "-noout", "-ext",
                  "subjectAltName").stdout
    return sorted(x.strip() for x in out.splitlines()[1].split(","))


@pytest.mark.parametrize("host, want_san", [
    ("mail.example.test",
     ["DNS:mail.example.test", "IP Address:0:0:0:0:0:0:0:1",
      "IP Address:127.0.0.1"]),
    ("192.0.2.7",
     ["IP Address:0:0:0:0:0:0:0:1", "IP Address:127.0.0.1",
      "IP Address:192.0.2.7"]),
    ("127.0.0.1", ["IP Address:0:0:0:0:0:0:0:1", "IP Address:127.0.0.1"]),
])
def test_subject_and_names(tmp_path, host, want_san):
    gen(host, tmp_path)
    cert = tmp_path / "cert.pem"
    subject = openssl("x509", "-in", cert, "-noout", "-subject").stdout
    assert subject.strip() == f"subject=CN = {host}"
    issuer = openssl("x509", "-in", cert, "-noout", "-issuer").stdout
    assert issuer.strip() == f"issuer=CN = {host}"
    assert san(cert) == want_san


def test_key_matches_and_is_private(tmp_path):
    gen("mail.example.test", tmp_path / "new")   # creates the directory
    cert, key = tmp_path / "new" / "cert.pem", tmp_path / "new" / "key.pem"
    from_cert = openssl("x509", "-in", cert, "-noout", "-pubkey").stdout
    from_key = openssl("pkey", "-in", key, "-pubout").stdout
    assert from_cert == from_key
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600
    text = openssl("x509", "-in", cert, "-noout", "-text").stdout
    assert "Public-Key: (2048 bit)" in text      # RSA by default
    assert "CA:TRUE" not in text
    # No temporary files are left behind.
    assert sorted(os.listdir(tmp_path / "new")) == ["cert.pem", "key.pem"]


def test_ec_key(tmp_path):
    gen("-t", "ec", "mail.example.test", tmp_path)
    text = openssl("x509", "-in", tmp_path / "cert.pem", "-noout",
                   "-text").stdout
    assert "ASN1 OID: prime256v1" in text


@pytest.mark.parametrize("check, value, ok", [
    ("-verify_hostname", "mail.example.test", True),
    ("-verify_ip", "127.0.0.1", True),
    ("-verify_ip", "::1", True),
    ("-verify_hostname", "wrong.example.test", False),
    ("-verify_ip", "127.0.0.2", False),
])
def test_verifies_as_its_own_ca(tmp_path, check, value, ok):
    gen("mail.example.test", tmp_path)
    cert = tmp_path / "cert.pem"
    p = openssl("verify", "-CAfile", cert, check, value, cert, check=False)
    assert (p.returncode == 0) == ok, p.stdout + p.stderr


def test_days(tmp_path):
    gen("-d", "1", "mail.example.test", tmp_path / "short")
    gen("mail.example.test", tmp_path / "long")
    # -checkend N exits 1 if the certificate expires within N seconds.
    two_days, nine_years = 2 * 86400, 9 * 365 * 86400
    short = tmp_path / "short" / "cert.pem"
    long_ = tmp_path / "long" / "cert.pem"
    assert openssl("x509", "-in", short, "-noout", "-checkend", two_days,
                   check=False).returncode == 1
    assert openssl("x509", "-in", long_, "-noout", "-checkend", nine_years,
                   check=False).returncode == 0


def test_keeps_existing_unless_forced(tmp_path):
    gen("mail.example.test", tmp_path)
    first = (tmp_path / "cert.pem").read_bytes()
    p = gen("other.example.test", tmp_path)
    assert "keeping" in p.stderr
    assert (tmp_path / "cert.pem").read_bytes() == first
    gen("-f", "other.example.test", tmp_path)
    assert (tmp_path / "cert.pem").read_bytes() != first
    subject = openssl("x509", "-in", tmp_path / "cert.pem", "-noout",
                      "-subject").stdout
    assert subject.strip() == "subject=CN = other.example.test"


@pytest.mark.parametrize("args", [
    [],
    ["a", "b", "c"],
    ["-t", "dsa", "mail.example.test"],
    ["-d", "ten", "mail.example.test"],
    ["a/b"],
    ["mail.example.test,DNS:evil.test"],
    [""],
])
def test_usage_errors(tmp_path, args):
    # Run in tmp_path: a usage error must write nothing, not even in ".".
    p = gen(*args, check=False, cwd=tmp_path)
    assert p.returncode == 64, p.stderr
    assert os.listdir(tmp_path) == []
