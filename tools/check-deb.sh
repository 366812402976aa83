#!/bin/sh
# The Debian package as a new Debian 12 machine gets it (issue 16): build
# it with dpkg-buildpackage (the build dependencies from debian/control),
# lintian it, install the .debs with apt, then check the installed system:
# posternd -t on /etc/postern/posternd.conf, the postern user and its
# directories, the unit installed but disabled, the man pages, and one
# message through the installed posternd running as postern.  Meant for
# a fresh root, as root:
#   ../shared/tools/fresh-debian -C . -- tools/check-deb.sh
# It changes the system it runs on (packages, a user): not for a
# developer's machine.
set -eu
cd "$(dirname "$0")/.."
src=$(pwd)
out=$(dirname "$src")
[ "$(id -u)" -eq 0 ] || { echo "check-deb: run as root" >&2; exit 77; }
export DEBIAN_FRONTEND=noninteractive
step() { echo "check-deb: $*" >&2; }

step "build dependencies"
tools/deps.sh deb
tmp=$(mktemp -d /tmp/check-deb.XXXXXX)
(cd "$tmp" && mk-build-deps -i -r \
    -t 'apt-get -y -qq --no-install-recommends' "$src/debian/control" \
    >"$tmp/mk-build-deps.log" 2>&1) ||
    { cat "$tmp/mk-build-deps.log" >&2; exit 1; }

step "dpkg-buildpackage -us -uc -b"
dpkg-buildpackage -us -uc -b >"$tmp/build.log" 2>&1 ||
    { tail -80 "$tmp/build.log" >&2; exit 1; }
arch=$(dpkg --print-architecture)
version=$(dpkg-parsechangelog -S Version)
changes="$out/postern_${version}_$arch.changes"

step "lintian"
# Errors and warnings fail; what is left (info) is explained in
# docs/operations.md "lintian".
lintian --fail-on error,warning --info "$changes"

step "apt-get install the packages"
apt-get install -y -qq "$out/postern_${version}_$arch.deb" \
    "$out/libpostern0_${version}_$arch.deb" \
    "$out/libpostern-dev_${version}_$arch.deb" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; exit 1; }

step "the installed system"
posternd -t -c /etc/postern/posternd.conf
posternd -V
id postern
id -nG postern | grep -qw ssl-cert
for d in /var/spool/postern /var/spool/postern/tmp /var/mail/postern; do
    [ "$(stat -c %U:%G:%a "$d")" = postern:postern:750 ] ||
        { stat "$d" >&2; exit 1; }
done
[ "$(stat -c %U:%G:%a /etc/postern/users)" = root:postern:640 ]
[ -f /lib/systemd/system/posternd.service ]
grep -qx 'Type=notify' /lib/systemd/system/posternd.service
# Installed disabled (dh_installsystemd --no-enable): no wants link,
# neither systemd's nor the one deb-systemd-helper keeps to remember it.
wants=multi-user.target.wants/posternd.service
for l in "/etc/systemd/system/$wants" \
    "/var/lib/systemd/deb-systemd-helper-enabled/$wants"; do
    if [ -e "$l" ] || [ -L "$l" ]; then
        echo "check-deb: posternd.service is enabled ($l)" >&2
        exit 1
    fi
done
# /usr/sbin/sendmail is the MTA's, not ours.
[ ! -e /usr/sbin/sendmail ] ||
    [ "$(readlink -f /usr/sbin/sendmail)" != /usr/bin/postern ]
dpkg -L libpostern-dev | grep -q /usr/include/postern/sasl.h
pkg-config --exists libpostern 2>/dev/null || [ ! -x /usr/bin/pkg-config ] ||
    { echo "check-deb: pkg-config does not find libpostern" >&2; exit 1; }

step "man pages"
man -P cat posternd 2>/dev/null | grep -q 'ESMTP submission server'
man -P cat 5 posternd.conf 2>/dev/null | grep -q 'proxy_protocol'
man -P cat postern 2>/dev/null | grep -q 'SMTP AUTH client'

step "one message through the installed posternd, as postern"
port=$((20000 + $$ % 20000))
conf=$tmp/posternd.conf
chmod 755 "$tmp"   # posternd, as postern, reads the file there
sed -e "s/^address   = 0.0.0.0:587$/address   = 127.0.0.1:$port/" \
    -e "s/^address   = 0.0.0.0:465$/address   = 127.0.0.1:$((port + 1))/" \
    -e "s/^log       = syslog$/log       = stderr/" \
    /etc/postern/posternd.conf >"$conf"
chmod 644 "$conf"
printf 'deb-secret-1\n' | postern user add -f /etc/postern/users \
    demo@example.test
chown root:postern /etc/postern/users
chmod 640 /etc/postern/users
setpriv --reuid=postern --regid=postern --init-groups --no-new-privs \
    posternd -c "$conf" >"$tmp/posternd.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
i=0
until grep -q 'event=started' "$tmp/posternd.log"; do
    i=$((i + 1))
    if [ $i -gt 100 ] || ! kill -0 $pid 2>/dev/null; then
        cat "$tmp/posternd.log" >&2
        exit 1
    fi
    sleep 0.1
done
printf 'Subject: from the package\r\n\r\nhello\r\n' |
    POSTERN_PASSWORD=deb-secret-1 postern send \
        --server "smtp://127.0.0.1:$port" --insecure \
        --user demo@example.test --from demo@example.test \
        --to demo@example.test
kill -TERM $pid
wait $pid
box=/var/mail/postern/example.test/demo/new
[ "$(ls "$box" | wc -l)" -eq 1 ]
grep -q 'hello' "$box"/*
[ "$(stat -c %U "$box"/*)" = postern ]
echo "check-deb: OK: postern $version built, lintian clean, installed," \
    "served mail"
