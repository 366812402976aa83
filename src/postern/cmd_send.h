/*
 * postern - postern send and postern invoked as sendmail, inside
 * (cmd_send.c: the configuration file, the two command lines and the
 * message; cmd_send_submit.c: the submission both end in).
 */
#ifndef POSTERN_CMD_SEND_H
#define POSTERN_CMD_SEND_H

#include <stddef.h>

#include "mime.h"

#define SEND_MAX_RCPT 1000

/* Settings from the command line and the client configuration file. */
struct send_opts {
    const char *prog;        /* "postern send" or "sendmail", for messages */
    const char *server;
    const char *user;
    const char *password_file;
    char *password;          /* from the config file only (secret) */
    const char *oauth2_token_file; /* --oauth2-token-file: a token file
                                      as posternd's relay writes it */
    int oauth2_bearer;       /* --oauth2-bearer: $POSTERN_OAUTH2_TOKEN */
    const char *mech;
    const char *starttls;
    const char *cafile;
    const char *cert;        /* client certificate: EXTERNAL */
    const char *key;
    int security_layer;      /* DIGEST-MD5 auth-int/auth-conf */
    int insecure;
    int allow_plaintext;
    const char *from;
    const char *from_name;
    const char *to[SEND_MAX_RCPT];
    size_t nto;
    const char *cc[SEND_MAX_RCPT];
    size_t ncc;
    const char *bcc[SEND_MAX_RCPT];
    size_t nbcc;
    const char *subject;
    const char *body;
    const char *attach[SEND_MAX_RCPT];
    size_t nattach;
    const char *helo;
    unsigned timeout;
    int verbose;
    unsigned mail_flags;     /* PST_SMTP_CLIENT_MAIL_SMTPUTF8 */
    const char *utf8_addr;   /* the first address that needs it */
};

/*
 * Submit msg ([in]) to the nrcpt envelope recipients rcpt ([in]): the
 * common end of both modes.  msg7 ([in]): NULL, or msg with its 8-bit
 * text quoted-printable, sent instead when the server does not offer
 * 8BITMIME.  The password (a copy of o->password, or one read or
 * prompted for) and the OAuth 2.0 token are read here, and wiped after.
 * Returns: a sysexits.h code, a message printed unless EX_OK.
 */
int send_submit(struct send_opts *o, const struct mbuf *msg,
                const struct mbuf *msg7, const char *const *rcpt,
                size_t nrcpt);

#endif
