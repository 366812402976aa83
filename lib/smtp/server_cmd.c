/*
 * The server session's commands (RFC 5321 §4.1.1, RFC 3207 §4): a table
 * of {verb, check, proceed, flags} (OpenSMTPD commands[], Postfix
 * smtpd_cmd_table), the flags checked in one place, server_command().
 * AUTH's row points into server_auth.c.
 */
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>

#include <postern/smtp.h>

#include "server_int.h"

/* Command flags (Postfix smtpd_cmd_table, OpenSMTPD commands[]). */
#define CMD_PRE_TLS    0x01u /* allowed before TLS with require_tls (RFC
                                3207 §4: EHLO, STARTTLS, NOOP, QUIT) */
#define CMD_PRE_AUTH   0x02u /* allowed before AUTH with auth = required
                                (RFC 4954 §6) */
#define CMD_NEEDS_ARG  0x04u /* 501 5.5.4 without an argument */
#define CMD_NO_ARG     0x08u /* 501 5.5.4 with one */
#define CMD_GROUP_LAST 0x10u /* ends a pipelining group (RFC 2920 §3.1,
                                RFC 4954 §4): the output is flushed */

struct server_cmd {
    const char *verb;
    const char *usage; /* after "501 5.5.4 Syntax: " */
    /* May it happen now?  1 yes; 0 no, and the reply is queued. */
    int (*check)(struct pst_smtp_server *s, const uint8_t *arg,
                 size_t len);
    /* Do it. */
    void (*proceed)(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len);
    unsigned flags;
};

/* --- Commands ------------------------------------------------------------ */

static int
server_check_helo(struct pst_smtp_server *s, const uint8_t *arg,
                  size_t len)
{
    /* RFC 5321 §4.1.1.1: a domain or an address literal.  Devices send
     * names with "_"; those pass. */
    if (!pst__smtp_domain_valid(arg, len, 1)) {
        pst__server_error(s, "501 5.5.4 Error: invalid domain name");
        return 0;
    }
    return 1;
}

static void
server_greet(struct pst_smtp_server *s, const uint8_t *arg, size_t len,
             int esmtp)
{
    char kw[SERVER_MAX_KEYWORDS][PST__SMTP_MAX_REPLY - 4];
    size_t n = 0;

    /* RFC 5321 §4.1.4: EHLO or HELO in a transaction resets it. */
    pst__server_reset_transaction(s);
    pst_buf_reset(&s->helo);
    if (pst_buf_append(&s->helo, arg, len) < 0 ||
        pst_buf_append(&s->helo, "", 0) < 0) {
        s->broken = PST_ENOMEM;
        return;
    }
    s->greeted = 1;
    s->esmtp = esmtp;
    pst__server_enter_state(s, PST_SMTP_STATE_IDLE);
    /* RFC 2034 §3: no enhanced code on the replies to HELO and EHLO. */
    if (!esmtp) {
        pst__server_reply(s, "250 %s", s->cfg.hostname);
        return;
    }
    snprintf(kw[n++], sizeof(kw[0]), "PIPELINING");
    /* RFC 1870 §4: "SIZE" with the limit, or alone for none. */
    if (s->cfg.max_message_size > 0)
        snprintf(kw[n++], sizeof(kw[0]), "SIZE %llu",
                 (unsigned long long)s->cfg.max_message_size);
    else
        snprintf(kw[n++], sizeof(kw[0]), "SIZE");
    snprintf(kw[n++], sizeof(kw[0]), "8BITMIME");
    /* RFC 3207 §4.2: not offered again once TLS is up. */
    if (s->cfg.tls == PST_SMTP_TLS_STARTTLS && !s->tls && s->layer == NULL)
        snprintf(kw[n++], sizeof(kw[0]), "STARTTLS");
    if (pst__server_auth_keyword(s, "AUTH ", kw[n], sizeof(kw[0])) > 0) {
        n++;
        /* The pre-standard "AUTH=" form old Outlook versions look for. */
        if (s->cfg.legacy_auth_line &&
            pst__server_auth_keyword(s, "AUTH=", kw[n], sizeof(kw[0])) > 0)
            n++;
    }
    snprintf(kw[n++], sizeof(kw[0]), "ENHANCEDSTATUSCODES");
    pst__server_reply(s, "250-%s", s->cfg.hostname);
    for (size_t i = 0; i < n; i++)
        pst__server_reply(s, "250%c%s", i + 1 == n ? ' ' : '-', kw[i]);
}

static void
server_proceed_ehlo(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    server_greet(s, arg, len, 1);
}

static void
server_proceed_helo(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    server_greet(s, arg, len, 0);
}

static int
server_check_mail(struct pst_smtp_server *s, const uint8_t *arg,
                  size_t len)
{
    (void)arg;
    (void)len;
    /* RFC 5321 §4.1.4: MAIL needs EHLO or HELO first, and is not
     * nested. */
    if (!s->greeted) {
        pst__server_error(s, "503 5.5.1 Error: send HELO/EHLO first");
        return 0;
    }
    if (s->state == PST_SMTP_STATE_MAIL) {
        pst__server_error(s, "503 5.5.1 Error: nested MAIL command");
        return 0;
    }
    return 1;
}

/*
 * The argument of MAIL or RCPT after "FROM:"/"TO:": the path, then
 * parameters.  Returns 1 with *params, *plen set, 0 if a reply went out.
 */
static int
server_parse_path_arg(struct pst_smtp_server *s, const uint8_t *arg,
                      size_t len, const char *word, unsigned flags,
                      struct pst_buf *addr, const char *bad,
                      const uint8_t **params, size_t *plen)
{
    size_t wlen = strlen(word), i, used;
    int rc;

    if (len < wlen || !pst__smtp_word_eq(arg, wlen, word)) {
        pst__server_error(s, "501 5.5.4 Syntax: %s<address>", word);
        return 0;
    }
    /* Clients put a space after the colon; RFC 5321 §4.1.1.2 does not,
     * most servers accept it. */
    for (i = wlen; i < len && arg[i] == ' '; i++)
        ;
    pst_buf_reset(addr);
    rc = pst__smtp_parse_path(arg + i, len - i, flags, &used, addr);
    if (rc == PST_ENOMEM) {
        s->broken = rc;
        return 0;
    }
    if (rc < 0) {
        /* RFC 3463: X.1.7 bad sender, X.1.3 bad destination syntax. */
        pst__server_error(s, "%s", bad);
        return 0;
    }
    i += used;
    if (i < len && arg[i] != ' ') {
        pst__server_error(s, "%s", bad);
        return 0;
    }
    *params = arg + i;
    *plen = len - i;
    return 1;
}

/* The reply to a parameter error, or NULL. */
static const char *
server_param_error(int rc)
{
    if (rc == PST_ENOTSUP)
        /* RFC 5321 §4.1.1.11: parameters not recognized -> 555. */
        return "555 5.5.4 Unsupported parameter";
    return "501 5.5.4 Bad parameter syntax";
}

/* The authenticated user owns the address by name (ASCII case aside). */
static int
server_owns(const struct pst_smtp_server *s, const struct pst_buf *addr)
{
    const char *user = server_str(&s->user);

    return strchr(user, '@') != NULL && addr->len > 0 &&
           pst__smtp_word_eq(addr->data, addr->len, user);
}

static void
server_proceed_mail(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    struct pst__smtp_mail_params mp;
    struct pst_smtp_event *ev;
    const uint8_t *params;
    size_t plen;
    int rc, ask;

    if (!server_parse_path_arg(s, arg, len, "FROM:", PST__PATH_NULL_OK,
                               &s->mail_from,
                               "501 5.1.7 Bad sender address syntax",
                               &params, &plen))
        return;
    /* Parameters are an ESMTP matter: none after HELO. */
    if (plen > 0 && !s->esmtp) {
        pst__server_error(s, "555 5.5.4 Unsupported parameter");
        return;
    }
    if ((rc = pst__smtp_parse_params(params, plen, 1, &mp)) < 0) {
        pst__server_error(s, "%s", server_param_error(rc));
        return;
    }
    /* RFC 1870 §6.2: a declared size over the limit -> 552 5.3.4. */
    if (mp.has_size && s->cfg.max_message_size > 0 &&
        mp.size > s->cfg.max_message_size) {
        pst__server_error(s, "552 5.3.4 Message size exceeds fixed maximum "
                             "message size");
        return;
    }
    s->nrcpt = 0;
    s->rcpt_seen = 0;
    s->mail_size = mp.has_size ? mp.size : 0;
    s->body_8bit = mp.body_8bit;
    /* sender_check = strict: an authenticated user sends as its own
     * name when that is an address; anything else is the driver's call
     * (allow_from).  The null reverse-path (RFC 5321 §4.5.5: delivery
     * and read notifications) belongs to nobody and is not checked, as
     * Postfix's reject_sender_login_mismatch does not.  Otherwise the
     * event only tells. */
    ask = s->cfg.sender_check == PST_SMTP_SENDER_STRICT && s->authed &&
          s->mail_from.len > 0 && !server_owns(s, &s->mail_from);
    if (!ask)
        pst__server_reply(s, "250 2.1.0 Ok");
    ev = pst__server_event(s, PST_SMTP_EV_MAIL, ask);
    ev->address = server_str(&s->mail_from);
    ev->size = s->mail_size;
    ev->body_8bit = s->body_8bit;
    pst__server_enter_state(s, ask ? PST_SMTP_STATE_WAIT_SENDER
                                   : PST_SMTP_STATE_MAIL);
}

static int
server_check_rcpt(struct pst_smtp_server *s, const uint8_t *arg,
                  size_t len)
{
    (void)arg;
    (void)len;
    if (s->state != PST_SMTP_STATE_MAIL) {
        pst__server_error(s, "503 5.5.1 Error: need MAIL command");
        return 0;
    }
    return 1;
}

static void
server_proceed_rcpt(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    struct pst__smtp_mail_params mp;
    struct pst_smtp_event *ev;
    const uint8_t *params;
    size_t plen;
    int rc;

    if (!server_parse_path_arg(s, arg, len, "TO:", PST__PATH_POSTMASTER_OK,
                               &s->rcpt,
                               "501 5.1.3 Bad recipient address syntax",
                               &params, &plen))
        return;
    if ((rc = pst__smtp_parse_params(params, plen, 0, &mp)) < 0) {
        pst__server_error(s, "%s", server_param_error(rc));
        return;
    }
    /* RFC 5321 §4.5.3.1.10: past the limit, 452 (4.5.3, RFC 3463). */
    if (s->nrcpt >= s->max_rcpt) {
        pst__server_reply(s, "452 4.5.3 Error: too many recipients");
        return;
    }
    s->rcpt_seen = 1;
    ev = pst__server_event(s, PST_SMTP_EV_RCPT, 1);
    ev->address = server_str(&s->rcpt);
    pst__server_enter_state(s, PST_SMTP_STATE_WAIT_RCPT);
}

static int
server_check_data(struct pst_smtp_server *s, const uint8_t *arg,
                  size_t len)
{
    (void)arg;
    (void)len;
    /* RFC 5321 §3.3: DATA without MAIL or an accepted RCPT is 503, or
     * 554 "no valid recipients" when every RCPT was refused. */
    if (s->state != PST_SMTP_STATE_MAIL) {
        pst__server_error(s, "503 5.5.1 Error: need MAIL command");
        return 0;
    }
    if (s->nrcpt == 0) {
        if (s->rcpt_seen)
            pst__server_error(s, "554 5.5.1 Error: no valid recipients");
        else
            pst__server_error(s, "503 5.5.1 Error: need RCPT command");
        return 0;
    }
    return 1;
}

static void
server_proceed_data(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    (void)arg;
    (void)len;
    s->data_size = 0;
    s->data_error = 0;
    s->data_prev_bare_lf = 0;
    s->fold_len = 0;
    pst__server_reply(s, "354 End data with <CR><LF>.<CR><LF>");
    pst__server_event(s, PST_SMTP_EV_DATA_BEGIN, 0);
    pst__server_enter_state(s, PST_SMTP_STATE_DATA);
}

static void
server_proceed_rset(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    (void)arg;
    (void)len;
    /* RFC 5321 §4.1.1.5: abort the transaction, keep the EHLO. */
    pst__server_reset_transaction(s);
    pst__server_enter_state(s, s->greeted ? PST_SMTP_STATE_IDLE
                                          : PST_SMTP_STATE_GREETING);
    pst__server_reply(s, "250 2.0.0 Ok");
}

static void
server_proceed_noop(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    (void)arg;
    (void)len;
    pst__server_reply(s, "250 2.0.0 Ok");
}

static void
server_proceed_quit(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    (void)arg;
    (void)len;
    pst__server_reply(s, "221 2.0.0 Bye");
    pst__server_close_now(s)->reason = "quit";
}

static void
server_proceed_vrfy(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    (void)arg;
    (void)len;
    /* RFC 5321 §3.5.3: 252 when the server will not verify. */
    pst__server_reply(s, "252 2.5.0 Cannot VRFY user, but will accept message "
                         "and attempt delivery");
}

static void
server_proceed_help(struct pst_smtp_server *s, const uint8_t *arg,
                    size_t len)
{
    (void)arg;
    (void)len;
    pst__server_reply(s, "214 2.0.0 Commands: EHLO HELO MAIL RCPT DATA RSET "
                         "NOOP QUIT VRFY HELP STARTTLS AUTH");
}

static void
server_proceed_unimplemented(struct pst_smtp_server *s, const uint8_t *arg,
                             size_t len)
{
    (void)arg;
    (void)len;
    pst__server_error(s, "502 5.5.1 Error: command not implemented");
}

static int
server_check_starttls(struct pst_smtp_server *s, const uint8_t *arg,
                      size_t len)
{
    (void)arg;
    (void)len;
    if (s->tls) {
        pst__server_error(s, "503 5.5.1 Error: TLS already active");
        return 0;
    }
    if (s->cfg.tls != PST_SMTP_TLS_STARTTLS) {
        pst__server_error(s, "502 5.5.1 Error: command not implemented");
        return 0;
    }
    /* A SASL security layer protects the connection already; TLS inside
     * it is not something RFC 3207 or RFC 4954 describe. */
    if (s->layer != NULL) {
        pst__server_error(s, "503 5.5.1 Error: a security layer is "
                             "active");
        return 0;
    }
    if (s->state == PST_SMTP_STATE_MAIL) {
        pst__server_error(s, "503 5.5.1 Error: MAIL transaction in progress");
        return 0;
    }
    return 1;
}

static void
server_proceed_starttls(struct pst_smtp_server *s, const uint8_t *arg,
                        size_t len)
{
    (void)arg;
    (void)len;
    /* RFC 3207 §4 */
    pst__server_reply(s, "220 2.0.0 Ready to start TLS");
    /* RFC 3207 §4.2 / CVE-2011-0411: whatever the client sent after the
     * STARTTLS line came in plaintext and must not be acted on after the
     * handshake.  feed() drops input until tls_started(). */
    pst__server_drop_input(s);
    pst__server_event(s, PST_SMTP_EV_STARTTLS, 1);
    pst__server_enter_state(s, PST_SMTP_STATE_WAIT_TLS);
}

static const struct server_cmd server_cmds[] = {
    {.verb = "EHLO", .usage = "EHLO domain", .check = server_check_helo,
     .proceed = server_proceed_ehlo,
     .flags = CMD_PRE_TLS | CMD_PRE_AUTH | CMD_NEEDS_ARG | CMD_GROUP_LAST},
    {.verb = "HELO", .usage = "HELO domain", .check = server_check_helo,
     .proceed = server_proceed_helo,
     .flags = CMD_PRE_AUTH | CMD_NEEDS_ARG | CMD_GROUP_LAST},
    {.verb = "MAIL", .usage = "MAIL FROM:<address>",
     .check = server_check_mail, .proceed = server_proceed_mail,
     .flags = CMD_NEEDS_ARG},
    {.verb = "RCPT", .usage = "RCPT TO:<address>",
     .check = server_check_rcpt, .proceed = server_proceed_rcpt,
     .flags = CMD_NEEDS_ARG},
    {.verb = "DATA", .usage = "DATA", .check = server_check_data,
     .proceed = server_proceed_data,
     .flags = CMD_NO_ARG | CMD_GROUP_LAST},
    {.verb = "RSET", .usage = "RSET", .proceed = server_proceed_rset,
     .flags = CMD_PRE_AUTH | CMD_NO_ARG},
    {.verb = "NOOP", .proceed = server_proceed_noop,
     .flags = CMD_PRE_TLS | CMD_PRE_AUTH | CMD_GROUP_LAST},
    {.verb = "QUIT", .usage = "QUIT", .proceed = server_proceed_quit,
     .flags = CMD_PRE_TLS | CMD_PRE_AUTH | CMD_NO_ARG | CMD_GROUP_LAST},
    {.verb = "VRFY", .usage = "VRFY address",
     .proceed = server_proceed_vrfy,
     .flags = CMD_NEEDS_ARG | CMD_GROUP_LAST},
    {.verb = "HELP", .proceed = server_proceed_help,
     .flags = CMD_GROUP_LAST},
    {.verb = "STARTTLS", .usage = "STARTTLS",
     .check = server_check_starttls, .proceed = server_proceed_starttls,
     .flags = CMD_PRE_TLS | CMD_PRE_AUTH | CMD_NO_ARG | CMD_GROUP_LAST},
    {.verb = "AUTH", .usage = "AUTH mechanism [initial-response]",
     .check = pst__server_check_auth, .proceed = pst__server_proceed_auth,
     .flags = CMD_PRE_AUTH | CMD_NEEDS_ARG | CMD_GROUP_LAST},
    {.verb = "EXPN", .proceed = server_proceed_unimplemented,
     .flags = CMD_GROUP_LAST},
};

/* HTTP methods: a command line starting with one ends the session. */
static int
server_forbidden(const uint8_t *line, size_t vlen)
{
    static const char *const http[] = {
        "GET", "POST", "HEAD", "PUT", "CONNECT", "OPTIONS", "DELETE",
    };

    for (size_t i = 0; i < PST__ARRAY_LEN(http); i++)
        if (pst__smtp_word_eq(line, vlen, http[i]))
            return 1;
    return 0;
}

/* A line in GREETING, IDLE or MAIL: a command. */
int
pst__server_command(struct pst_smtp_server *s)
{
    const struct server_cmd *cmd = NULL;
    const uint8_t *line, *arg;
    size_t len, vlen, alen;
    unsigned flags;

    if (!pst__server_read_line(s, LINE_MODE_CMD, &line, &len, &flags))
        return 0;
    if (flags & LINE_TOO_LONG) {
        /* RFC 5321 §4.5.3.1.4 (512 octets) / RFC 4954 §4 (12288). */
        pst__server_trace(s, PST_SMTP_TRACE_CLIENT, "[line too long]", 15);
        pst__server_error(s, "500 5.5.6 Error: line too long");
        return 1;
    }
    pst__server_trace_line(s, line, len, 0);
    pst__smtp_split(line, len, &vlen, &arg, &alen);
    if (flags & (LINE_BARE_LF | LINE_BARE_CR)) {
        /* RFC 5321 §2.3.8: lines end with CRLF only. */
        pst__server_error(s, "500 5.5.2 Error: bare <CR> or <LF> received");
    } else if (vlen == 0) {
        pst__server_error(s, "500 5.5.2 Error: bad syntax");
    } else if (server_forbidden(line, vlen)) {
        /* An HTTP request on the SMTP port: a browser or a cross-protocol
         * attack (ALPACA; Postfix's smtpd_forbidden_commands).  Answer
         * nothing the other protocol could use, and close at once. */
        pst__server_reply(s, "421 4.7.0 %s Error: not an SMTP command, closing",
                          s->cfg.hostname);
        pst__server_close_now(s);
    } else {
        for (size_t i = 0; i < PST__ARRAY_LEN(server_cmds); i++)
            if (pst__smtp_word_eq(line, vlen, server_cmds[i].verb))
                cmd = &server_cmds[i];
        if (cmd == NULL) {
            pst__server_error(s, "500 5.5.1 Error: command not recognized");
        } else if (!(cmd->flags & CMD_PRE_TLS) && s->cfg.require_tls &&
                   !s->tls) {
            /* RFC 3207 §4 */
            pst__server_error(s, "530 5.7.0 Must issue a STARTTLS command "
                                 "first");
        } else if (!(cmd->flags & CMD_PRE_AUTH) &&
                   s->cfg.auth == PST_SMTP_AUTH_REQUIRED && !s->authed) {
            /* RFC 4954 §6 */
            pst__server_error(s, "530 5.7.0 Authentication required");
        } else if (((cmd->flags & CMD_NEEDS_ARG) && alen == 0) ||
                   ((cmd->flags & CMD_NO_ARG) && alen > 0)) {
            pst__server_error(s, "501 5.5.4 Syntax: %s", cmd->usage);
        } else if (cmd->check == NULL || cmd->check(s, arg, alen)) {
            cmd->proceed(s, arg, alen);
            if (cmd->flags & CMD_GROUP_LAST)
                s->flush = 1;
        }
    }
    /* An AUTH line may carry an initial response: wipe it. */
    if (pst__smtp_word_eq(line, vlen, "AUTH"))
        OPENSSL_cleanse((uint8_t *)line, len);
    return 1;
}

