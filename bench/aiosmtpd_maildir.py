#!/usr/bin/python3
"""aiosmtpd as a submission server for bench/run.py.

AUTH PLAIN and LOGIN against one user and password (allowed without TLS,
like posternd's `auth_before_tls = all` and Postfix's
`smtpd_tls_auth_only = no`), STARTTLS with the given certificate, and
delivery of each message into a Maildir (written to tmp/, renamed into
new/).  Nothing is fsync'd: a reply 250 here does not mean the message
is on disk, which is why aiosmtpd is not a durable reference.

    aiosmtpd_maildir.py --port P --maildir DIR --user U --password-file F
                        [--cert C --key K]
"""
import argparse
import asyncio
import logging
import os
import socket
import ssl
import sys
import time

from aiosmtpd.smtp import SMTP, AuthResult


class MaildirHandler:
    def __init__(self, maildir):
        self.maildir = maildir
        self.host = socket.gethostname()
        self.seq = 0
        for sub in ("tmp", "new", "cur"):
            os.makedirs(os.path.join(maildir, sub), exist_ok=True)

    async def handle_RCPT(self, server, session, envelope, address,
                          rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server, session, envelope):
        self.seq += 1
        name = "%.6f.P%dQ%d.%s" % (time.time(), os.getpid(), self.seq,
                                   self.host)
        tmp = os.path.join(self.maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.maildir, "new", name))
        return "250 2.0.0 Ok: queued"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--maildir", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    a = ap.parse_args()
    with open(a.password_file, "rb") as f:
        password = f.readline().rstrip(b"\r\n")
    user = a.user.encode()

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login == user and auth_data.password == password)
        return AuthResult(success=ok)

    ctx = None
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
    # aiosmtpd logs a warning on every AUTH (INTEROP.md) and every
    # session at INFO: keep its log quiet so it measures the protocol.
    logging.basicConfig(level=logging.ERROR)
    handler = MaildirHandler(a.maildir)
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    def factory():
        return SMTP(handler, hostname="aiosmtpd.example.test",
                    tls_context=ctx, auth_required=True,
                    auth_require_tls=False, authenticator=authenticator,
                    loop=loop)

    server = loop.run_until_complete(
        loop.create_server(factory, host=a.host, port=a.port,
                           backlog=4096))
    print("listening on %s:%d" % (a.host, a.port), flush=True)
    try:
        loop.run_forever()
    except KeyboardInterrupt:
        pass
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
