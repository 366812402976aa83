"""posternd's SASL beyond passwords (issue 17): EXTERNAL with TLS client
certificates, SCRAM-*-PLUS with channel binding, and the DIGEST-MD5
security layer, against clients that are not postern's: Python's ssl
with SCRAM and DIGEST-MD5 written here from the RFCs, GNU SASL's gsasl,
curl and msmtp.

Certificates come from the openssl command line (cert_util.py).  One
posternd serves the module; every test uses a recipient of its own.
"""
import base64
import hashlib
import hmac
import os
import re
import shutil
import socket
import ssl
import struct
import subprocess
import time

import pytest

from cert_util import CA, fingerprint
from posternd_util import (ALL_SCHEMES, Posternd, SMTPRaw, b64, posternd_bin,
                           strip_received, unique_rcpt)

USER = "tim@example.test"
PASSWORD = "tanstaaftanstaaf"
DEVICE = "scanner@example.test"
TIMEOUT = 30


def need(tool):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not installed: tools/deps.sh test")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = CA(d / "ca", "Device CA")
    other = CA(d / "other", "Another CA")
    c = {"ca": ca, "other_ca": other}
    c["good"] = ca.issue("good", "scanner", DEVICE)
    c["expired"] = ca.issue("expired", "scanner", DEVICE,
                            start="20200101000000Z", end="20210101000000Z")
    c["revoked"] = ca.issue("revoked", "scanner", DEVICE)
    ca.revoke(c["revoked"][0])
    c["stranger"] = other.issue("stranger", "scanner", DEVICE)
    c["unmapped"] = ca.issue("unmapped", "nobody", "nobody@example.test")
    # printer@ is pinned (cert=) to its own certificate; pinned@ to
    # another one than the one that names it.
    c["printer"] = ca.issue("printer", "printer@example.test",
                            "printer@example.test")
    c["pinned"] = ca.issue("pinned", "pinned", "pinned@example.test")
    c["fax"] = ca.issue("fax", "fax machine")
    return c


@pytest.fixture(scope="module")
def srv(tmp_path_factory, pki):
    if not os.access(posternd_bin(), os.X_OK):
        pytest.fail(f"{posternd_bin()} is not built")
    ca = pki["ca"]
    client_ca = (f"tls_client_ca = {ca.crt}\n"
                 f"tls_client_crl = {ca.crl}\n")
    users = {
        USER: (PASSWORD, ALL_SCHEMES, ""),
        DEVICE: ("device-password-unused", "SHA512-CRYPT", ""),
        "printer@example.test": (
            "unused", "SHA512-CRYPT",
            "cert=SHA256:" + fingerprint(pki["printer"][0])),
        "pinned@example.test": (
            "unused", "SHA512-CRYPT",
            "cert=SHA256:" + fingerprint(pki["good"][0])),
        "fax@example.test": (
            "unused", "SHA512-CRYPT",
            "cert=sha256:" + fingerprint(pki["fax"][0]).replace(":", "")
            .lower()),
    }
    listeners = {
        # A compatibility profile (its own TLS context, TLS 1.0 allowed)
        # applies to 127.0.0.1 on this one: the client CA goes with it.
        "certs_profile": "tls = implicit\nmechanisms = EXTERNAL\n"
                         + client_ca,
        "certs": "tls = implicit\n"
                 "mechanisms = EXTERNAL SCRAM-SHA-256-PLUS SCRAM-SHA-256 "
                 "PLAIN\n" + client_ca,
        "certs_cn": "tls = implicit\nmechanisms = EXTERNAL PLAIN\n"
                    "cert_user = subject-cn\n" + client_ca,
        "certs_fp": "tls = implicit\nmechanisms = EXTERNAL\n"
                    "cert_user = fingerprint\n" + client_ca,
        "certs_required": "tls = implicit\nmechanisms = EXTERNAL\n"
                          "tls_client_cert = required\n" + client_ca,
        "starttls_certs": "tls = starttls\nmechanisms = EXTERNAL PLAIN\n"
                          + client_ca,
        "plus": "tls = starttls\n"
                "mechanisms = SCRAM-SHA-256-PLUS SCRAM-SHA-1-PLUS "
                "SCRAM-SHA-256 SCRAM-SHA-1 PLAIN\n",
        "layer": "tls = none\nauth_before_tls = challenge\n"
                 "mechanisms = DIGEST-MD5 CRAM-MD5\nsecurity_layer = yes\n",
        "layer_starttls": "tls = starttls\nauth_before_tls = challenge\n"
                          "mechanisms = DIGEST-MD5\nsecurity_layer = yes\n",
    }
    profile = ("[profile old_devices]\nnetworks = 127.0.0.1/32\n"
               "listeners = certs_profile\ntls_min_version = TLSv1\n")
    p = Posternd(tmp_path_factory.mktemp("sasl_tls"), users=users,
                 listeners=listeners, extra_sections=profile).start()
    yield p
    rc = p.stop()
    assert rc == 0, f"posternd exit {rc}:\n{p.log()[-3000:]}"


def tls_context(srv, cert=None, max12=False):
    ctx = ssl.create_default_context(cafile=srv.cert)
    if cert is not None:
        ctx.load_cert_chain(cert[0], cert[1])
    if max12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def connect(srv, listener, cert=None, max12=False):
    """A greeted, EHLO'd connection under TLS on listener."""
    ctx = tls_context(srv, cert, max12)
    port = srv.ports[listener]
    if "implicit" in srv.listener_spec[listener]:
        r = SMTPRaw.implicit(port, ctx)
        assert r.reply()[0] == 220
    else:
        r = SMTPRaw(port)
        assert r.reply()[0] == 220
        r.ehlo()
        assert r.cmd("STARTTLS")[0] == 220
        assert r.starttls(ctx) == b""
    code, kw = r.ehlo()
    assert code == 250
    return r, kw


def submit(r, sender, tag):
    """MAIL, RCPT, DATA and a message on a logged-in connection; returns
    (recipient, message bytes)."""
    rcpt = unique_rcpt(tag)
    body = (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {tag}\r\n\r\n"
            f"sent by {tag}\r\n").encode()
    assert r.cmd(f"MAIL FROM:<{sender}>")[0] == 250
    assert r.cmd(f"RCPT TO:<{rcpt}>")[0] == 250
    assert r.cmd("DATA")[0] == 354
    r.send(body + b".\r\n")
    assert r.reply()[0] == 250
    return rcpt, body


# --- EXTERNAL ---------------------------------------------------------------

@pytest.mark.parametrize("listener, cert, authzid, code, user", [
    ("certs", "good", "", 235, DEVICE),
    ("certs", "good", DEVICE, 235, DEVICE),
    ("certs", "good", USER, 535, None),           # no proxying
    ("certs", None, "", 535, None),               # no certificate
    ("certs", "expired", "", 535, None),
    ("certs", "stranger", "", 535, None),         # another CA
    ("certs", "revoked", "", 535, None),          # on the CRL
    ("certs", "unmapped", "", 535, None),         # no such user
    ("certs", "printer", "", 235, "printer@example.test"),  # pinned, right
    ("certs", "pinned", "", 535, None),           # pinned to another one
    ("certs_cn", "printer", "", 235, "printer@example.test"),
    ("certs_cn", "good", "", 535, None),          # CN "scanner": no user
    ("certs_fp", "fax", "", 235, "fax@example.test"),
    # pinned@'s cert= is the "good" certificate's fingerprint.
    ("certs_fp", "good", "", 235, "pinned@example.test"),
    ("certs_fp", "unmapped", "", 535, None),      # no cert= names it
    ("certs_required", "good", "", 235, DEVICE),
    ("certs_profile", "good", "", 235, DEVICE),
    ("certs_profile", "revoked", "", 535, None),
    ("starttls_certs", "good", "", 235, DEVICE),
])
def test_external(srv, pki, listener, cert, authzid, code, user):
    n_ok = len(srv.events("auth_ok"))
    r, kw = connect(srv, listener, pki[cert] if cert else None)
    assert "EXTERNAL" in kw["AUTH"].split()
    got = r.cmd("AUTH EXTERNAL " + (b64(authzid) if authzid else "="))
    if code == 235:
        assert got == (235, ["235 2.7.0 Authentication successful"])
        ev = srv.wait_event("auth_ok", count=n_ok + 1)
        assert ev[-1]["mech"] == "EXTERNAL" and ev[-1]["user"] == user, ev
        rcpt, body = submit(r, user, f"external-{listener}-{cert}")
        msgs = srv.messages(rcpt)
        assert len(msgs) == 1 and strip_received(msgs[0]) == body
    else:
        assert got == (535, ["535 5.7.8 Authentication credentials invalid"])
        # The other mechanisms still work: only EXTERNAL failed.
        if "PLAIN" in kw["AUTH"].split():
            assert r.login()[0] == 235
    assert r.cmd("QUIT")[0] == 221
    r.close()
    if listener == "certs_profile":
        assert srv.events("profile", listener=listener,
                          profile="old_devices")
    if cert is not None:
        ev = srv.events("tls_client_cert",
                        fingerprint=fingerprint(pki[cert][0])
                        .replace(":", "").lower())
        assert ev, srv.log()[-2000:]


@pytest.mark.parametrize("cert", [None, "expired", "stranger", "revoked"])
def test_external_required_refuses_handshake(srv, pki, cert):
    """tls_client_cert = required: no valid certificate, no TLS."""
    ctx = tls_context(srv, pki[cert] if cert else None)
    with pytest.raises((ssl.SSLError, ConnectionResetError, EOFError,
                        BrokenPipeError)):
        r = SMTPRaw.implicit(srv.ports["certs_required"], ctx)
        # TLS 1.3: the client learns of the refusal at its first read.
        r.reply()
        r.cmd("EHLO client.example.test")


def test_crl_reload(srv, pki):
    """SIGHUP reads tls_client_crl again: a certificate revoked since
    stops logging in (the CA keeps its files; the context is not
    rebuilt)."""
    ca = pki["ca"]
    later = ca.issue("later", "scanner", DEVICE)
    r, _ = connect(srv, "certs", later)
    assert r.cmd("AUTH EXTERNAL =")[0] == 235
    r.close()
    n = len(srv.events("reloaded"))
    ca.revoke(later[0])
    srv.hup()
    assert srv.wait_event("reloaded", count=n + 1), srv.log()[-2000:]
    r, _ = connect(srv, "certs", later)
    assert r.cmd("AUTH EXTERNAL =") == \
        (535, ["535 5.7.8 Authentication credentials invalid"])
    r.close()
    # The others are as they were.
    r, _ = connect(srv, "certs", pki["good"])
    assert r.cmd("AUTH EXTERNAL =")[0] == 235
    r.close()


def test_external_not_before_tls(srv, pki):
    """A STARTTLS listener offers EXTERNAL only under TLS."""
    r = SMTPRaw(srv.ports["starttls_certs"])
    assert r.reply()[0] == 220
    code, kw = r.ehlo()
    assert "AUTH" not in kw
    assert r.cmd("AUTH EXTERNAL =")[0] == 504
    r.close()


def test_curl_external(srv, pki, tmp_path):
    """curl --cert with --login-options AUTH=EXTERNAL: curl sends the user
    name as the authorization identity."""
    need("curl")
    rcpt = unique_rcpt("curl-external")
    body = (f"From: <{DEVICE}>\r\nTo: <{rcpt}>\r\nSubject: curl\r\n\r\n"
            f"scan attached\r\n").encode()
    data = tmp_path / "msg"
    data.write_bytes(body)
    crt, key = pki["good"]
    p = subprocess.run(
        ["curl", "-sS", "-v", "--max-time", str(TIMEOUT),
         "--url", f"smtps://127.0.0.1:{srv.ports['certs']}/client.example.test",
         "--cacert", srv.cert, "--cert", crt, "--key", key,
         "--login-options", "AUTH=EXTERNAL", "--user", f"{DEVICE}:",
         "--mail-from", DEVICE, "--mail-rcpt", rcpt,
         "--upload-file", str(data)],
        capture_output=True, text=True, timeout=TIMEOUT + 10)
    out = p.stderr
    assert p.returncode == 0, f"curl exit {p.returncode}\n{out}"
    assert re.search(r"^> AUTH EXTERNAL", out, re.M), out
    assert "< 235 2.7.0 Authentication successful" in out, out
    msgs = srv.messages(rcpt)
    assert len(msgs) == 1 and strip_received(msgs[0]) == body


def test_curl_external_no_certificate(srv, tmp_path):
    need("curl")
    data = tmp_path / "msg"
    data.write_bytes(b"Subject: x\r\n\r\nx\r\n")
    p = subprocess.run(
        ["curl", "-sS", "-v", "--max-time", str(TIMEOUT),
         "--url", f"smtps://127.0.0.1:{srv.ports['certs']}/client.example.test",
         "--cacert", srv.cert, "--login-options", "AUTH=EXTERNAL",
         "--user", f"{DEVICE}:", "--mail-from", DEVICE,
         "--mail-rcpt", unique_rcpt("curl-external-none"),
         "--upload-file", str(data)],
        capture_output=True, text=True, timeout=TIMEOUT + 10)
    assert p.returncode == 67, p.stderr
    assert "< 535 5.7.8 Authentication credentials invalid" in p.stderr


@pytest.mark.parametrize("transport", ["implicit", "starttls"])
def test_msmtp_external(srv, pki, transport):
    """msmtp with tls_cert_file and auth external."""
    need("msmtp")
    rcpt = unique_rcpt(f"msmtp-external-{transport}")
    body = (f"From: <{DEVICE}>\r\nTo: <{rcpt}>\r\nSubject: msmtp\r\n"
            f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <msmtp.{rcpt}>\r\n\r\nscan\r\n").encode()
    crt, key = pki["good"]
    listener = "certs" if transport == "implicit" else "starttls_certs"
    p = subprocess.run(
        ["msmtp", "-C", "/dev/null", "--host=127.0.0.1",
         f"--port={srv.ports[listener]}", "--domain=client.example.test",
         "--auth=external", f"--user={DEVICE}", f"--from={DEVICE}",
         "--tls=on", f"--tls-trust-file={srv.cert}",
         f"--tls-starttls={'off' if transport == 'implicit' else 'on'}",
         f"--tls-cert-file={crt}", f"--tls-key-file={key}",
         f"--timeout={TIMEOUT}", "--", rcpt],
        input=body, capture_output=True, timeout=TIMEOUT + 10)
    out = (p.stdout + p.stderr).decode(errors="replace")
    assert p.returncode == 0, f"msmtp exit {p.returncode}\n{out}"
    msgs = srv.messages(rcpt)
    assert len(msgs) == 1 and strip_received(msgs[0]) == body
    ev = srv.events("auth_ok", user=DEVICE, mech="EXTERNAL")
    assert ev, srv.log()[-2000:]


# --- SCRAM-*-PLUS -----------------------------------------------------------

def scram_client(r, mech, user, password, gs2, cb_data=b""):
    """A SCRAM exchange (RFC 5802 §5, RFC 7677) over SMTPRaw r with the
    given GS2 header; c= is base64(gs2 header + cb_data).  Returns the
    final reply (code, lines)."""
    h = hashlib.sha256 if "SHA-256" in mech else hashlib.sha1
    cnonce = base64.b64encode(os.urandom(18)).decode()
    bare = f"n={user},r={cnonce}"
    code, lines = r.cmd(f"AUTH {mech} " + b64(gs2 + bare))
    if code != 334:
        return code, lines
    first = base64.b64decode(lines[0][4:]).decode()
    attrs = dict(kv.split("=", 1) for kv in first.split(","))
    assert attrs["r"].startswith(cnonce)
    salted = hashlib.pbkdf2_hmac(h().name, password.encode(),
                                 base64.b64decode(attrs["s"]),
                                 int(attrs["i"]))
    client_key = hmac.new(salted, b"Client Key", h).digest()
    stored = h(client_key).digest()
    final_bare = ("c=" + base64.b64encode(gs2.encode() + cb_data).decode()
                  + ",r=" + attrs["r"])
    auth_msg = f"{bare},{first},{final_bare}".encode()
    sig = hmac.new(stored, auth_msg, h).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, sig))
    code, lines = r.cmd(b64(final_bare + ",p=" +
                            base64.b64encode(proof).decode()))
    if code != 334:
        return code, lines
    server_key = hmac.new(salted, b"Server Key", h).digest()
    want = "v=" + base64.b64encode(
        hmac.new(server_key, auth_msg, h).digest()).decode()
    assert base64.b64decode(lines[0][4:]).decode() == want
    return r.cmd("")


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
def test_plus_python_tls_unique(srv, mech):
    """TLS 1.2: tls-unique (Python's ssl gives it); this connection's data
    logs in, another connection's gets 535."""
    r, kw = connect(srv, "plus", max12=True)
    assert mech in kw["AUTH"].split(), kw
    other, _ = connect(srv, "plus", max12=True)
    stolen = other.sock.get_channel_binding("tls-unique")
    other.close()
    got = scram_client(r, mech, USER, PASSWORD, "p=tls-unique,,", stolen)
    assert got == (535, ["535 5.7.8 Authentication credentials invalid"])
    mine = r.sock.get_channel_binding("tls-unique")
    assert len(mine) == 12 and mine != stolen
    got = scram_client(r, mech, USER, PASSWORD, "p=tls-unique,,", mine)
    assert got == (235, ["235 2.7.0 Authentication successful"])
    ev = srv.wait_event("auth_ok", mech=mech)
    assert ev, srv.log()[-2000:]
    r.close()


def test_plus_downgrade_y(srv):
    """RFC 5802 §6: a client that could bind ("y") but saw no -PLUS is
    refused where -PLUS was offered (a man in the middle stripped it);
    "n" (cannot bind) is fine."""
    r, kw = connect(srv, "plus")
    assert "SCRAM-SHA-256-PLUS" in kw["AUTH"].split()
    got = scram_client(r, "SCRAM-SHA-256", USER, PASSWORD, "y,,")
    assert got == (535, ["535 5.7.8 Authentication credentials invalid"])
    got = scram_client(r, "SCRAM-SHA-256", USER, PASSWORD, "n,,")
    assert got[0] == 235
    r.close()


def test_plus_not_before_tls(srv):
    r = SMTPRaw(srv.ports["plus"])
    assert r.reply()[0] == 220
    code, kw = r.ehlo()
    assert "AUTH" not in kw
    assert r.cmd("STARTTLS")[0] == 220
    r.starttls(tls_context(srv))
    code, kw = r.ehlo()
    assert kw["AUTH"].split()[:2] == ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"]
    r.close()


@pytest.mark.parametrize("mech", ["SCRAM-SHA-256-PLUS", "SCRAM-SHA-1-PLUS"])
@pytest.mark.parametrize("tls12", [False, True])
@pytest.mark.parametrize("password, ok", [(PASSWORD, True), ("wrong", False)])
def test_plus_gsasl(srv, mech, tls12, password, ok):
    """The gsasl command line with channel binding: tls-exporter under TLS
    1.3, tls-unique under TLS 1.2 (GnuTLS gives gsasl both)."""
    need("gsasl")
    n_ok = len(srv.events("auth_ok", mech=mech))
    argv = ["gsasl", "--smtp", "--connect",
            f"127.0.0.1:{srv.ports['plus']}", "-m", mech,
            "-a", USER, "-p", password, "--starttls",
            f"--x509-ca-file={srv.cert}"]
    if tls12:
        argv += ["--priority", "NORMAL:-VERS-TLS1.3"]
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                       text=True, timeout=TIMEOUT)
    out = p.stdout + p.stderr
    assert f"AUTH {mech}" in out, out
    if ok:
        assert p.returncode == 0, f"gsasl exit {p.returncode}\n{out}"
        assert "235 2.7.0 Authentication successful" in out, out
        ev = srv.wait_event("auth_ok", mech=mech, count=n_ok + 1)
        assert ev, srv.log()[-2000:]
        # The version decides the binding type: check it was the one
        # asked for.
        tls = srv.events("tls", sid=ev[-1]["sid"])
        assert tls[-1]["version"] == ("TLSv1.2" if tls12 else "TLSv1.3")
    else:
        assert p.returncode != 0, out
        assert "535 5.7.8 Authentication credentials invalid" in out, out


# --- The DIGEST-MD5 security layer ------------------------------------------

def md5(b):
    return hashlib.md5(b).digest()


class DigestLayer:
    """DIGEST-MD5 auth-int (RFC 2831 §2.3) from the RFC: the client's
    keys and sequence numbers, protected buffers both ways."""

    def __init__(self, ha1):
        self.kic = md5(ha1 + b"Digest session key to client-to-server "
                             b"signing key magic constant")
        self.kis = md5(ha1 + b"Digest session key to server-to-client "
                             b"signing key magic constant")
        self.seq_out = 0
        self.seq_in = 0
        self.raw = b""

    def wrap(self, msg):
        seq = struct.pack(">I", self.seq_out)
        mac = hmac.new(self.kic, seq + msg, hashlib.md5).digest()[:10]
        self.seq_out += 1
        body = msg + mac + b"\x00\x01" + seq
        return struct.pack(">I", len(body)) + body

    def unwrap_from(self, sock):
        """One protected buffer from sock, checked; its message."""
        while len(self.raw) < 4 or \
                len(self.raw) < 4 + struct.unpack(">I", self.raw[:4])[0]:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("closed")
            self.raw += chunk
        n = struct.unpack(">I", self.raw[:4])[0]
        body, self.raw = self.raw[4:4 + n], self.raw[4 + n:]
        msg, mac, typ, seq = body[:-16], body[-16:-6], body[-6:-4], body[-4:]
        assert typ == b"\x00\x01" and struct.unpack(">I", seq)[0] == \
            self.seq_in, "server buffer out of sequence"
        assert hmac.compare_digest(
            mac, hmac.new(self.kis, seq + msg, hashlib.md5).digest()[:10])
        self.seq_in += 1
        return msg


def digest_login(r, user, password, qop, host="127.0.0.1"):
    """AUTH DIGEST-MD5 (RFC 2831 §2.1) asking for qop; returns (reply,
    HA1 or None, the qop-options offered)."""
    code, lines = r.cmd("AUTH DIGEST-MD5")
    assert code == 334, lines
    chal = base64.b64decode(lines[0][4:]).decode()
    attrs = dict((k, v.strip('"')) for k, v in
                 re.findall(r'([\w-]+)=("[^"]*"|[^,]*)', chal))
    offered = attrs.get("qop", "auth").split(",")
    realm, nonce = attrs["realm"], attrs["nonce"]
    cnonce = base64.b64encode(os.urandom(12)).decode()
    uri = f"smtp/{host}"
    ha1 = md5(md5(f"{user}:{realm}:{password}".encode()) +
              f":{nonce}:{cnonce}".encode())
    a2 = f"AUTHENTICATE:{uri}" + (":" + "0" * 32 if qop != "auth" else "")
    resp = hashlib.md5(
        f"{ha1.hex()}:{nonce}:00000001:{cnonce}:{qop}:"
        f"{hashlib.md5(a2.encode()).hexdigest()}".encode()).hexdigest()
    text = (f'charset=utf-8,username="{user}",realm="{realm}",'
            f'nonce="{nonce}",nc=00000001,cnonce="{cnonce}",'
            f'digest-uri="{uri}",maxbuf=65536,response={resp},qop={qop}')
    code, lines = r.cmd(b64(text))
    if code != 334:
        return (code, lines), None, offered
    rsp = base64.b64decode(lines[0][4:]).decode()
    a2s = f":{uri}" + (":" + "0" * 32 if qop != "auth" else "")
    want = hashlib.md5(
        f"{ha1.hex()}:{nonce}:00000001:{cnonce}:{qop}:"
        f"{hashlib.md5(a2s.encode()).hexdigest()}".encode()).hexdigest()
    assert rsp == f"rspauth={want}", rsp
    return r.cmd(""), ha1, offered


def layered(r, layer, text, replies=1):
    """Send text through the layer and read protected buffers until
    replies whole replies have come (the server may seal a pipelined
    group's replies in one buffer or several)."""
    if text:
        r.sock.sendall(layer.wrap(text.encode()))
    got = ""
    while len(re.findall(r"^\d{3} .*\r\n", got, re.M)) < replies:
        got += layer.unwrap_from(r.sock).decode()
    return got


def test_layer_whole_message(srv):
    """auth-int from a client written from RFC 2831: after the 235 every
    byte is protected, EHLO starts over, and a message arrives intact."""
    n_quit = len(srv.events("disconnect", reason="quit"))
    r = SMTPRaw(srv.ports["layer"])
    assert r.reply()[0] == 220
    r.ehlo()
    reply, ha1, offered = digest_login(r, USER, PASSWORD, "auth-int")
    assert offered == ["auth", "auth-int", "auth-conf"]
    assert reply == (235, ["235 2.7.0 Authentication successful"])
    assert r.buf == b""
    layer = DigestLayer(ha1)
    ehlo = layered(r, layer, "EHLO client.example.test\r\n")
    assert ehlo.startswith("250-mail.example.test\r\n"), ehlo
    assert "STARTTLS" not in ehlo
    rcpt = unique_rcpt("layer")
    body = (f"From: <{USER}>\r\nTo: <{rcpt}>\r\nSubject: layered\r\n\r\n"
            + "a line through the layer\r\n" * 4000
            + "..a dot-stuffed line\r\nend\r\n")
    got = layered(r, layer, f"MAIL FROM:<{USER}>\r\nRCPT TO:<{rcpt}>\r\n"
                            f"DATA\r\n", replies=3)
    assert got == ("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
                   "354 End data with <CR><LF>.<CR><LF>\r\n"), got
    # Bigger than one buffer: several, each its own MAC.
    data = body.encode()
    for i in range(0, len(data), 30000):
        r.sock.sendall(layer.wrap(data[i:i + 30000]))
    got = layered(r, layer, ".\r\n")
    assert got.startswith("250 2.0.0 Ok: queued as "), got
    assert layered(r, layer, "QUIT\r\n") == "221 2.0.0 Bye\r\n"
    # The log says why, though the 221 went out protected.
    assert srv.wait_event("disconnect", reason="quit", count=n_quit + 1)
    msgs = srv.messages(rcpt)
    assert len(msgs) == 1
    assert strip_received(msgs[0]) == body.replace(
        "\r\n..a dot", "\r\n.a dot").encode()
    assert b"with ESMTPA" in msgs[0]


def test_layer_replies_survive_input_after_quit(srv):
    """Under the layer too, the goodbye is a lingering close: 3000 NOOPs,
    QUIT and more protected input that posternd never acts on; every
    reply comes back protected, then the 221, then an orderly close (a
    close with unread input would reset the connection and destroy the
    replies not yet read)."""
    n = 3000
    r = SMTPRaw(srv.ports["layer"], timeout=TIMEOUT)
    assert r.reply()[0] == 220
    r.ehlo()
    reply, ha1, _ = digest_login(r, USER, PASSWORD, "auth-int")
    assert reply[0] == 235
    layer = DigestLayer(ha1)
    r.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    r.sock.sendall(layer.wrap(b"EHLO x\r\n" + b"NOOP\r\n" * n +
                              b"QUIT\r\n") +
                   b"".join(layer.wrap(b"NOOP\r\n" * 10000)
                            for _ in range(4)))
    time.sleep(1.0)                 # posternd answers and closes meanwhile
    got = ""
    try:
        while True:
            got += layer.unwrap_from(r.sock).decode()
    except EOFError:
        pass                        # an orderly close, not a reset
    assert layer.raw == b""
    r.close()
    replies = re.findall(r"^\d{3} .*\r\n", got, re.M)
    assert len(replies) == n + 2, (len(replies), replies[-1:])
    assert replies[1:-1] == ["250 2.0.0 Ok\r\n"] * n
    assert replies[-1] == "221 2.0.0 Bye\r\n"


def test_layer_corrupt_closes(srv):
    """A buffer whose MAC does not match: no reply, the connection ends,
    and the log says why."""
    r = SMTPRaw(srv.ports["layer"])
    assert r.reply()[0] == 220
    r.ehlo()
    reply, ha1, _ = digest_login(r, USER, PASSWORD, "auth-int")
    assert reply[0] == 235
    layer = DigestLayer(ha1)
    buf = bytearray(layer.wrap(b"EHLO client.example.test\r\n"))
    buf[6] ^= 0x01
    r.sock.sendall(bytes(buf))
    assert r.closed()
    assert r.buf == b""
    assert srv.wait_event("disconnect",
                          reason="security layer: a buffer failed its "
                                 "integrity check (MAC or sequence number)")


def test_layer_auth_only_works(srv):
    """The layer is an offer: qop auth logs in without one."""
    r = SMTPRaw(srv.ports["layer"])
    assert r.reply()[0] == 220
    r.ehlo()
    reply, _, _ = digest_login(r, USER, PASSWORD, "auth")
    assert reply[0] == 235
    rcpt, body = submit(r, USER, "layer-auth")
    assert strip_received(srv.messages(rcpt)[0]) == body
    r.close()


def test_layer_never_under_tls(srv):
    """The same listener offers auth-int before STARTTLS, only auth
    after it."""
    r = SMTPRaw(srv.ports["layer_starttls"])
    assert r.reply()[0] == 220
    r.ehlo()
    code, lines = r.cmd("AUTH DIGEST-MD5")
    assert code == 334
    assert 'qop="auth,auth-int,auth-conf"' in \
        base64.b64decode(lines[0][4:]).decode()
    assert r.cmd("*")[0] == 501
    assert r.cmd("STARTTLS")[0] == 220
    r.starttls(tls_context(srv))
    r.ehlo()
    code, lines = r.cmd("AUTH DIGEST-MD5")
    assert code == 334
    assert 'qop="auth"' in base64.b64decode(lines[0][4:]).decode()
    r.close()


# --- postern send and probe -------------------------------------------------

def postern(*args, input=b"", password=None):
    from postern_client_util import clean_env, run_postern
    extra = {"POSTERN_PASSWORD": password} if password is not None else {}
    return run_postern(list(args), input=input,
                       env=clean_env("/nonexistent", **extra))


def message_for(sender, rcpt, tag):
    return (f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: {tag}\r\n"
            f"Date: Sat, 28 Nov 2026 10:00:00 +0000\r\n"
            f"Message-ID: <{tag}.{rcpt}>\r\n\r\nfrom postern {tag}\r\n"
            ).encode()


def test_postern_send_prefers_plus(srv):
    """Under TLS postern send picks SCRAM-SHA-256-PLUS, bound to the
    connection: tls-exporter under TLS 1.3 (postern has no knob for TLS
    1.2; -PLUS under 1.2 is tested with Python's ssl and gsasl above)."""
    rcpt = unique_rcpt("send-plus")
    body = message_for(USER, rcpt, "send-plus")
    p = postern("send", "--server", f"smtp://127.0.0.1:{srv.ports['plus']}",
                "--cafile", srv.cert, "--user", USER, "--from", USER,
                "--to", rcpt, "-v", input=body, password=PASSWORD)
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert "authenticated with SCRAM-SHA-256-PLUS, bound to tls-exporter" \
        in err, err
    assert re.search(r"^C: AUTH SCRAM-SHA-256-PLUS ", err, re.M), err
    ev = srv.events("auth_ok", mech="SCRAM-SHA-256-PLUS", user=USER)
    assert ev
    assert strip_received(srv.messages(rcpt)[0]) == body


def test_postern_send_external(srv, pki):
    """--cert and --key without --user: EXTERNAL, the certificate's
    user."""
    rcpt = unique_rcpt("send-external")
    body = message_for(DEVICE, rcpt, "send-external")
    crt, key = pki["good"]
    p = postern("send", "--server", f"smtps://127.0.0.1:{srv.ports['certs']}",
                "--cafile", srv.cert, "--cert", crt, "--key", key,
                "--from", DEVICE, "--to", rcpt, "-v", input=body)
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert re.search(r"^C: AUTH EXTERNAL ", err, re.M), err
    assert "authenticated with EXTERNAL" in err, err
    assert strip_received(srv.messages(rcpt)[0]) == body


def test_postern_send_external_refused(srv, pki):
    """An expired certificate: 535, exit 77 (sysexits EX_NOPERM)."""
    crt, key = pki["expired"]
    p = postern("send", "--server", f"smtps://127.0.0.1:{srv.ports['certs']}",
                "--cafile", srv.cert, "--cert", crt, "--key", key,
                "--from", DEVICE, "--to", unique_rcpt("send-expired"),
                input=b"Subject: x\r\n\r\nx\r\n")
    assert p.returncode == 77, p.stderr.decode()
    assert "535 5.7.8" in p.stderr.decode()


def test_postern_send_security_layer(srv):
    """--security-layer without TLS: DIGEST-MD5 with auth-conf (3DES, the
    cipher OpenSSL's default provider keeps), a whole message through
    it."""
    rcpt = unique_rcpt("send-layer")
    body = message_for(USER, rcpt, "send-layer") + \
        b"".join(b"line %d of a longer message\r\n" % i for i in range(5000))
    p = postern("send", "--server", f"smtp://127.0.0.1:{srv.ports['layer']}",
                "--starttls=never", "--user", USER, "--security-layer",
                "--from", USER, "--to", rcpt, "-v", input=body,
                password=PASSWORD)
    err = p.stderr.decode()
    assert p.returncode == 0, err
    assert "authenticated with DIGEST-MD5, security layer auth-conf" in err, \
        err
    # The transcript shows the session in clear, EHLO again after 235.
    assert re.search(r"^S: 235 .*\n(?:.*\n)*?C: EHLO ", err, re.M), err
    assert strip_received(srv.messages(rcpt)[0]) == body


def test_postern_probe_cert(srv, pki):
    crt, key = pki["good"]
    p = postern("probe", f"smtps://127.0.0.1:{srv.ports['certs']}",
                "--cafile", srv.cert, "--cert", crt, "--key", key)
    out = p.stdout.decode()
    assert p.returncode == 0, describe_p(p)
    assert "  channel binding: tls-exporter\n" in out, out
    assert re.search(r"^  EXTERNAL\s+ok$", out, re.M), out


def describe_p(p):
    return (f"exit {p.returncode}\n{p.stdout.decode(errors='replace')}\n"
            f"{p.stderr.decode(errors='replace')}")
