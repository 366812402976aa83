"""make install (PREFIX, DESTDIR): the programs, the library, the man
pages, the systemd unit and the example configuration, where the
prefix says; the unit passes systemd-analyze verify and the example
passes posternd -t (with this test's files in place of the system's).
"""
import json
import os
import re
import shutil
import subprocess

import pytest

from posternd_util import ROOT, build_dir, posternd_bin, postern_bin


def build_option(name):
    p = subprocess.run(["meson", "introspect", "--buildoptions",
                        build_dir()], capture_output=True, text=True,
                       check=True)
    for o in json.loads(p.stdout):
        if o["name"] == name:
            return o["value"]
    raise KeyError(name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    dest = str(tmp_path_factory.mktemp("destdir"))
    prefix = build_option("prefix")
    p = subprocess.run(["make", "-C", ROOT, "install", f"BUILD={build_dir()}",
                        f"PREFIX={prefix}", f"DESTDIR={dest}"],
                       capture_output=True, text=True, timeout=900)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    sysconfdir = build_option("sysconfdir")
    if not sysconfdir.startswith("/"):
        sysconfdir = os.path.join(prefix, sysconfdir)
    return dest, prefix, sysconfdir


def at(dest, path):
    return dest + path


def test_files_in_place(installed):
    dest, prefix, sysconfdir = installed
    for path in (f"{prefix}/sbin/posternd", f"{prefix}/bin/postern"):
        assert os.access(at(dest, path), os.X_OK), path
    for path in (f"{prefix}/lib/systemd/system/posternd.service",
                 f"{sysconfdir}/postern/posternd.conf.example",
                 f"{prefix}/share/man/man8/posternd.8",
                 f"{prefix}/share/man/man5/posternd.conf.5",
                 f"{prefix}/share/man/man1/postern.1"):
        assert os.path.isfile(at(dest, path)), path
    # Never a live configuration: an existing one is the administrator's.
    assert not os.path.exists(at(dest, f"{sysconfdir}/postern/posternd.conf"))


def test_unit(installed):
    dest, prefix, sysconfdir = installed
    unit = open(at(dest, f"{prefix}/lib/systemd/system/posternd.service")
                ).read()
    conf = f"{sysconfdir}/postern/posternd.conf"
    lines = set(unit.splitlines())
    for want in ("Type=notify",
                 f"ExecStart={prefix}/sbin/posternd -c {conf}",
                 f"ExecStartPre={prefix}/sbin/posternd -c {conf} -t",
                 "ExecReload=/bin/kill -HUP $MAINPID",
                 "User=postern",
                 "AmbientCapabilities=CAP_NET_BIND_SERVICE",
                 "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
                 "NoNewPrivileges=yes",
                 "ProtectSystem=strict",
                 "ReadWritePaths=-/var/spool/postern -/var/mail/postern",
                 "StateDirectory=postern",
                 "PrivateTmp=yes",
                 "ProtectHome=yes",
                 "WantedBy=multi-user.target"):
        assert want in lines, want
    assert "@" not in re.sub(r"SystemCallFilter=.*|#.*", "", unit)
    # tools/deps.sh installs it (Debian's systemd package).
    sa = shutil.which("systemd-analyze")
    assert sa is not None, "systemd-analyze missing: run tools/deps.sh test"
    # verify checks that the commands exist: point them at DESTDIR's.
    copy = os.path.join(dest, "posternd.service")
    with open(copy, "w") as f:
        f.write(unit.replace(f"{prefix}/sbin/posternd",
                             at(dest, f"{prefix}/sbin/posternd")))
    p = subprocess.run([sa, "verify", "--man=no", copy], capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    p = subprocess.run([sa, "security", "--offline=yes", copy],
                       capture_output=True, text=True)
    m = re.search(r"Overall exposure level for posternd.service: "
                  r"([\d.]+) (\w+)", p.stdout)
    assert m, p.stdout + p.stderr
    assert float(m.group(1)) <= 2.0, p.stdout


def test_example_configuration(installed, tmp_path):
    """Every key of the example is valid: posternd -t takes it with this
    test's certificate, user file and directories in place of the
    system's."""
    dest, prefix, sysconfdir = installed
    text = open(at(dest, f"{sysconfdir}/postern/posternd.conf.example")
                ).read()
    assert f"userdb    = passwd-file:{sysconfdir}/postern/users" in text
    assert "\nuser      = postern\n" in text
    subprocess.run([os.path.join(ROOT, "tools", "gen-cert.sh"), "-t", "ec",
                    "mail.example.test", str(tmp_path)], check=True,
                   capture_output=True)
    users = tmp_path / "users"
    users.write_text("")
    for d in ("spool", "mail"):
        (tmp_path / d).mkdir()
    text = (text.replace(f"{sysconfdir}/postern/users", str(users))
            .replace("/etc/ssl/certs/ssl-cert-snakeoil.pem",
                     str(tmp_path / "cert.pem"))
            .replace("/etc/ssl/private/ssl-cert-snakeoil.key",
                     str(tmp_path / "key.pem"))
            .replace("/var/spool/postern", str(tmp_path / "spool"))
            .replace("/var/mail/postern", str(tmp_path / "mail"))
            # No postern user here: tools/check-deb.sh checks it with one.
            .replace("\nuser      = postern\n", "\n"))
    conf = tmp_path / "posternd.conf"
    conf.write_text(text)
    p = subprocess.run([posternd_bin(), "-c", str(conf), "-t"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "configuration OK (2 listeners, 0 users)" in p.stdout
    # The commented keys are valid too.
    conf.write_text(re.sub(r"^#((?:metrics|address|tls|proxy_protocol|"
                           r"proxy_from) *=.*|\[listener lb\])$",
                           r"\1", text, flags=re.M)
                    .replace("10.0.0.5:2587", "127.0.0.1:2587"))
    p = subprocess.run([posternd_bin(), "-c", str(conf), "-t"],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "configuration OK (3 listeners" in p.stdout
    assert os.path.exists(postern_bin())
