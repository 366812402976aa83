"""Client certificates for the EXTERNAL tests, made with the openssl
command line (a CA with "openssl ca", so a certificate can be backdated
and revoked): nothing of postern's takes part in making them."""
import os
import subprocess
from pathlib import Path


def openssl(*args, cwd=None):
    p = subprocess.run(["openssl", *map(str, args)], capture_output=True,
                       text=True, timeout=60, cwd=cwd)
    assert p.returncode == 0, f"openssl {' '.join(map(str, args))}: {p.stderr}"
    return p.stdout


CA_CONF = """\
[ca]
default_ca = ca_default
[ca_default]
dir = {dir}
database = {dir}/index.txt
new_certs_dir = {dir}/newcerts
serial = {dir}/serial
crlnumber = {dir}/crlnumber
default_md = sha256
policy = policy_any
unique_subject = no
email_in_dn = no
copy_extensions = none
default_crl_days = 30
[policy_any]
commonName = supplied
emailAddress = optional
[client_ext]
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
"""


class CA:
    """A certificate authority in directory d: ca.crt, ca.key, and what
    "openssl ca" keeps (index, serial, the CRL number)."""

    def __init__(self, d, name):
        self.dir = Path(d)
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "newcerts").mkdir(exist_ok=True)
        (self.dir / "index.txt").write_text("")
        (self.dir / "serial").write_text("1000\n")
        (self.dir / "crlnumber").write_text("1000\n")
        self.conf = self.dir / "ca.cnf"
        self.conf.write_text(CA_CONF.format(dir=self.dir))
        self.crt = self.dir / "ca.crt"
        self.key = self.dir / "ca.key"
        openssl("req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", self.key,
                "-out", self.crt, "-subj", f"/O=postern tests/CN={name}",
                "-days", "3650",
                "-addext", "basicConstraints=critical,CA:TRUE",
                "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        self.crl = self.dir / "ca.crl"
        self.gencrl()

    def issue(self, name, cn, email=None, start=None, end=None):
        """A client certificate for CN cn (and an rfc822Name email), valid
        from start to end ("YYYYMMDDHHMMSSZ"; default: now for a year).
        Returns (cert path, key path)."""
        key = self.dir / f"{name}.key"
        csr = self.dir / f"{name}.csr"
        crt = self.dir / f"{name}.crt"
        ext = self.dir / f"{name}.ext"
        text = CA_CONF.format(dir=self.dir)
        if email is not None:
            text += f"subjectAltName = email:{email}\n"
        ext.write_text(text)
        openssl("req", "-new", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:P-256", "-nodes", "-keyout", key,
                "-out", csr, "-subj", f"/CN={cn}")
        args = ["ca", "-batch", "-config", ext, "-extensions", "client_ext",
                "-in", csr, "-out", crt, "-notext", "-cert", self.crt,
                "-keyfile", self.key]
        if start is not None:
            args += ["-startdate", start]
        if end is not None:
            args += ["-enddate", end]
        else:
            args += ["-days", "365"]
        openssl(*args)
        return str(crt), str(key)

    def revoke(self, crt):
        openssl("ca", "-batch", "-config", self.conf, "-revoke", crt,
                "-cert", self.crt, "-keyfile", self.key)
        self.gencrl()

    def gencrl(self):
        openssl("ca", "-batch", "-config", self.conf, "-gencrl", "-out",
                self.crl, "-cert", self.crt, "-keyfile", self.key)


def fingerprint(crt):
    """The SHA-256 fingerprint as openssl prints it ("AB:CD:...")."""
    out = openssl("x509", "-in", crt, "-noout", "-fingerprint", "-sha256")
    return out.strip().split("=", 1)[1]
