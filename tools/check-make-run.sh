#!/bin/sh
# The README's first command, as a new user runs it: `make run` on this
# machine (installing what is missing, building, writing the demo), then
# one message submitted to the demo server with `postern send` over
# STARTTLS, and the Maildir checked.  .ci/run runs it in a brand-new
# Debian 12 root (../shared/tools/fresh-debian).
#   tools/check-make-run.sh        exit 0 when the message arrived
set -eu
cd "$(dirname "$0")/.."
log=$(mktemp /tmp/make-run.XXXXXX)
# A process group of its own: make, and the posternd it runs in the
# foreground, stop together.
setsid make run >"$log" 2>&1 &
pid=$!
stop() {
    kill -TERM "-$pid" 2>/dev/null || true  # dash: no "--"
    wait "$pid" 2>/dev/null || true
}
trap stop EXIT
i=0
until grep -q 'event=started' "$log"; do
    i=$((i + 1))
    if [ $i -gt 900 ] || ! kill -0 "$pid" 2>/dev/null; then
        echo "check-make-run: posternd did not start; make run said:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 1
done
user=demo@example.test
box=run/mail/example.test/demo/new
before=$(ls "$box" 2>/dev/null | wc -l)
printf 'Subject: make run works\r\n\r\nhello from check-make-run\r\n' |
    POSTERN_PASSWORD=$(cat run/demo-password) build/src/postern/postern send \
        --server smtp://127.0.0.1:2587 --cafile run/cert.pem --user "$user" \
        --from "$user" --to "$user"
after=$(ls "$box" | wc -l)
if [ "$after" -ne $((before + 1)) ]; then
    echo "check-make-run: $box has $after messages, want $((before + 1))" >&2
    exit 1
fi
grep -l 'hello from check-make-run' "$box"/* >/dev/null
echo "check-make-run: make run served mail ($box: $after)"
