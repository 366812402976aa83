#!/bin/sh
# Make a self-signed certificate and key for posternd's tls_cert/tls_key,
# for `make run` and the end-to-end tests.  Not for production: use a
# certificate from a CA there.
#
#   tools/gen-cert.sh [-f] [-t rsa|ec] [-d DAYS] HOST [DIR]
#
# Writes DIR/cert.pem and DIR/key.pem (DIR defaults to ".", created if
# missing; the key is mode 0600).  The certificate names HOST as its CN
# and in subjectAltName (DNS:HOST, or IP:HOST for an address), plus
# IP:127.0.0.1 and IP:::1 so tests that connect to the loopback address
# can verify it; clients trust it with --cafile DIR/cert.pem.
#   -t rsa   RSA 2048 (default: the oldest TLS clients know only RSA)
#   -t ec    ECDSA P-256
#   -d DAYS  validity (default 3650)
#   -f       replace existing files (default: keep them and succeed)
# Exit status (sysexits.h): 0 done, 64 usage, 70 openssl failed,
# 73 cannot create the files.
set -eu

usage() {
    echo "usage: $0 [-f] [-t rsa|ec] [-d DAYS] HOST [DIR]" >&2
    exit 64
}

force=0
type=rsa
days=3650
while getopts ft:d: opt; do
    case "$opt" in
    f) force=1 ;;
    t) type=$OPTARG ;;
    d) days=$OPTARG ;;
    *) usage ;;
    esac
done
shift $((OPTIND - 1))
if [ $# -lt 1 ] || [ $# -gt 2 ]; then
    usage
fi
host=$1
dir=${2:-.}

case "$type" in
rsa) newkey="rsa:2048"; keyopt="" ;;
ec) newkey="ec"; keyopt="ec_paramgen_curve:P-256" ;;
*) usage ;;
esac
case "$days" in
'' | *[!0-9]*) usage ;;
esac
# Only characters that cannot break out of the -subj and config syntax.
case "$host" in
'' | *[!A-Za-z0-9.:_-]*)
    echo "$0: invalid host name: $host" >&2
    exit 64
    ;;
esac

# RFC 5280 §4.2.1.6: an address goes in iPAddress, a name in dNSName.
case "$host" in
*:*) san="IP:$host" ;;
*[!0-9.]*) san="DNS:$host" ;;
*) san="IP:$host" ;;
esac
for ip in 127.0.0.1 ::1; do
    [ "$host" = "$ip" ] || san="$san,IP:$ip"
done

cert="$dir/cert.pem"
key="$dir/key.pem"
if [ "$force" -eq 0 ] && [ -e "$cert" ] && [ -e "$key" ]; then
    echo "$0: keeping existing $cert and $key (-f replaces them)" >&2
    exit 0
fi
mkdir -p "$dir" 2>/dev/null || { echo "$0: cannot create $dir" >&2; exit 73; }

tmp=$(mktemp -d "$dir/.gen-cert.XXXXXX" 2>/dev/null) || {
    echo "$0: cannot write in $dir" >&2
    exit 73
}
trap 'rm -rf "$tmp"' EXIT INT TERM

# Our own request config, so the system openssl.cnf's defaults (CA:TRUE
# for req -x509) do not apply: a plain server certificate.
cat >"$tmp/req.cnf" <<EOF
[req]
distinguished_name = dn
x509_extensions = ext
prompt = no
[dn]
CN = $host
[ext]
subjectAltName = $san
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
EOF

umask 077
if ! openssl req -x509 -config "$tmp/req.cnf" -newkey "$newkey" \
    ${keyopt:+-pkeyopt "$keyopt"} -nodes -sha256 -days "$days" \
    -keyout "$tmp/key.pem" -out "$tmp/cert.pem" 2>"$tmp/err"; then
    echo "$0: openssl req failed:" >&2
    cat "$tmp/err" >&2
    exit 70
fi
chmod 644 "$tmp/cert.pem"
chmod 600 "$tmp/key.pem"
# Each file appears whole (rename), never half-written.
if ! mv -f "$tmp/key.pem" "$key" || ! mv -f "$tmp/cert.pem" "$cert"; then
    echo "$0: cannot write $cert and $key" >&2
    exit 73
fi
echo "$0: wrote $cert and $key for $host" >&2
