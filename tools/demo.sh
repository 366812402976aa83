#!/bin/sh
# make run: write a ready demo configuration under run/ and start posternd
# on it in the foreground.
#   tools/demo.sh BUILD_DIR
#
# Privileges (DESIGN.md "Privileges"): run as root, the demo makes a
# system user "postern" if there is none, hands it run/mail and
# run/spool, lets its group read the user file (so that SIGHUP re-reads
# it), keeps the TLS key root's alone (read once, at start-up), and sets
# user = postern: posternd binds and reads the key as root, then runs as
# postern.  Run as another user, posternd runs as that user and the
# configuration says so in a comment instead.  So does a root run where
# postern cannot reach run/ (a checkout under a directory only root may
# enter, such as /root).
set -eu

build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
run="$root/run"
postern="$build/src/postern/postern"
posternd="$build/src/posternd/posternd"
user=demo@example.test

mkdir -p "$run/mail" "$run/spool"
"$root/tools/gen-cert.sh" mail.example.test "$run" >/dev/null

if [ ! -s "$run/users" ] || [ ! -s "$run/demo-password" ]; then
    umask 077
    pw=$(openssl rand -base64 12 | tr -d '/+=' | cut -c1-16)
    printf '%s\n' "$pw" >"$run/demo-password"
    : >"$run/users"
    # Verifiers for every mechanism, as a legacy device needs them; the
    # DIGEST-MD5 one for the realm posternd offers (its hostname).
    printf '%s\n' "$pw" | "$postern" user add -f "$run/users" "$user" \
        -r mail.example.test \
        -s SCRAM-SHA-256,SCRAM-SHA-1,CRAM-MD5,DIGEST-MD5,SHA512-CRYPT
fi
pw=$(cat "$run/demo-password")

# Who posternd runs as (see the top of this file).
runas="# user = postern   # make run was not run as root: posternd runs as $(id -un)"
if [ "$(id -u)" -eq 0 ]; then
    if ! getent passwd postern >/dev/null; then
        useradd --system --user-group --no-create-home \
            --home-dir /nonexistent --shell /usr/sbin/nologin postern \
            2>/dev/null || true
    fi
    if getent passwd postern >/dev/null &&
        runuser -u postern -- test -x "$run" 2>/dev/null; then
        chown -R postern: "$run/mail" "$run/spool"
        chown root:postern "$run/users"
        chmod 0640 "$run/users"
        chmod 0600 "$run/key.pem"
        runas="user      = postern   # after binding and reading the key as root"
    elif getent passwd postern >/dev/null; then
        runas="# user = postern   # not set: postern cannot enter $run"
        echo "demo: the user postern cannot enter $run: posternd runs as root" >&2
    else
        runas="# user = postern   # not set: no user postern (useradd failed)"
        echo "demo: no user postern: posternd runs as root" >&2
    fi
fi

cat >"$run/posternd.conf" <<CONF
# posternd demo configuration, written by make run.
hostname  = mail.example.test
userdb    = passwd-file:$run/users
mailbox   = maildir:$run/mail/%d/%n
spool     = $run/spool
tls_cert  = $run/cert.pem
tls_key   = $run/key.pem
$runas
max_message_size = 26214400
sender_check = strict

[listener submission]
address   = 127.0.0.1:2587
tls       = starttls
auth      = required
auth_before_tls = none

[listener submissions]
address   = 127.0.0.1:2465
tls       = implicit
auth      = required

[listener legacy]
address   = 127.0.0.1:2525
tls       = starttls
auth      = required
auth_before_tls = challenge
mechanisms = SCRAM-SHA-256 SCRAM-SHA-1 CRAM-MD5 DIGEST-MD5 PLAIN LOGIN
CONF
# Readable by the user posternd runs as, for SIGHUP (no secret in it).
chmod 0644 "$run/posternd.conf"

cat <<TXT

posternd demo: user $user, password $pw
  STARTTLS   127.0.0.1:2587      implicit TLS  127.0.0.1:2465
  legacy     127.0.0.1:2525 (challenge mechanisms before TLS)
  Maildir    $run/mail/example.test/demo/new/

Send a test message:
  swaks --server 127.0.0.1:2587 --tls --tls-ca-path $run/cert.pem \\
        --auth PLAIN --auth-user $user --auth-password '$pw' \\
        --from $user --to $user
  POSTERN_PASSWORD='$pw' $postern send --server smtp://127.0.0.1:2587 \\
        --cafile $run/cert.pem --user $user \\
        --from $user --to $user --subject hello --body /etc/hostname
  $postern probe smtp://127.0.0.1:2525 --cafile $run/cert.pem

posternd is running in the foreground (Ctrl-C stops it):
TXT
exec "$posternd" -c "$run/posternd.conf"
