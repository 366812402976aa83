#!/bin/sh
# Install the Debian packages postern needs to build and test, if missing.
# Idempotent.  As root it runs apt-get; otherwise it prints the exact
# command and fails.
#   tools/deps.sh build   # build only
#   tools/deps.sh test    # build + everything the test suites use
#   tools/deps.sh deb     # build + what building the Debian package
#                         # takes (tools/check-deb.sh)
set -eu

BUILD_PKGS="build-essential pkg-config meson ninja-build libssl-dev libuv1-dev \
libcrypt-dev libpq-dev libidn-dev openssl libcurl4-openssl-dev \
libjson-c-dev libmicrohttpd-dev libsystemd-dev"
TEST_PKGS="clang libclang-rt-14-dev libcmocka-dev libgsasl-dev gsasl python3 python3-pytest \
python3-aiosmtpd swaks curl msmtp dovecot-core postgresql valgrind \
libauthen-sasl-perl libdigest-hmac-perl libnet-ssleay-perl libio-socket-ssl-perl openssl strace \
e2fsprogs postfix libsasl2-dev libsasl2-modules libsasl2-modules-db \
prometheus fail2ban haproxy systemd iproute2 procps"

DEB_PKGS="dpkg-dev debhelper devscripts equivs fakeroot lintian man-db"

case "${1:-test}" in
build) want="$BUILD_PKGS" ;;
test | run) want="$BUILD_PKGS $TEST_PKGS" ;;
deb) want="$BUILD_PKGS $DEB_PKGS" ;;
*) echo "usage: $0 build|test|run|deb" >&2; exit 64 ;;
esac

missing=""
for p in $want; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    case "$status" in
    *" installed") ;;
    *) missing="$missing $p" ;;
    esac
done

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
    echo "postern: missing packages; run as root:" >&2
    echo "  apt-get update && apt-get install -y$missing" >&2
    exit 1
fi
echo "postern: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
# dovecot-core, postgresql and postfix must not start services we do not
# use.
if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# Postfix is a test smarthost run from its own configuration directory
# (tests/e2e/smarthost_util.py): the package must not configure (or
# start) a system mail server.
case " $missing " in
*" postfix "*)
    echo "postfix postfix/main_mailer_type select No configuration" |
        debconf-set-selections
    ;;
esac
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null
