/*
 * The client session's reading of the EHLO reply (RFC 5321 §4.1.1.1):
 * the extensions it announces and the AUTH mechanisms (RFC 4954 §3), also
 * from the pre-standard "AUTH=" line.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <postern/smtp_client.h>

#include "client_int.h"

int
pst__client_has_mech(const struct pst_smtp_client *c, const char *name)
{
    const char *p = (const char *)c->mechs.data;
    size_t n = strlen(name);

    if (p == NULL)
        return 0;
    while (*p != '\0') {
        const char *sp = strchr(p, ' ');
        size_t len = sp != NULL ? (size_t)(sp - p) : strlen(p);

        if (len == n && strncasecmp(p, name, n) == 0)
            return 1;
        p += len;
        while (*p == ' ')
            p++;
    }
    return 0;
}

/* Add an AUTH mechanism name to the offered list once. */
static int
client_add_mech(struct pst_smtp_client *c, const char *p, size_t len)
{
    char name[64];
    int rc;

    if (len == 0 || len >= sizeof(name))
        return 0;
    for (size_t i = 0; i < len; i++) {
        char ch = p[i];

        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        name[i] = ch;
    }
    name[len] = '\0';
    if (pst__client_has_mech(c, name))
        return 0;
    if (c->mechs.len > 0 && (rc = pst_buf_append_byte(&c->mechs, ' ')) < 0)
        return rc;
    return pst_buf_append(&c->mechs, name, len);
}

/* Parse the space-separated mechanisms after "AUTH" or "AUTH=". */
static int
client_parse_mechs(struct pst_smtp_client *c, const char *p)
{
    while (*p != '\0') {
        size_t len;
        int rc;

        while (*p == ' ')
            p++;
        len = strcspn(p, " ");
        if ((rc = client_add_mech(c, p, len)) < 0)
            return rc;
        p += len;
    }
    return 0;
}

/* Parse EHLO keyword lines (all but the first) of the current reply. */
int
pst__client_parse_ehlo(struct pst_smtp_client *c)
{
    const char *p = (const char *)c->reply.data;
    int rc;

    c->ext = 0;
    c->size_limit = 0;
    pst_buf_reset(&c->mechs);
    pst_buf_reset(&c->ehlo);
    if ((rc = pst_buf_append(&c->ehlo, c->reply.data, c->reply.len)) < 0)
        return rc;
    p = strchr(p, '\n'); /* the first line names the server */
    while (p != NULL) {
        char kw[64];
        const char *line = p + 1, *arg, *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);
        size_t klen;

        p = end;
        if (len < 4)
            continue;
        line += 4; /* "250-" / "250 " */
        len -= 4;
        klen = strcspn(line, " =\n");
        if (klen > len)
            klen = len;
        if (klen == 0 || klen >= sizeof(kw))
            continue;
        for (size_t i = 0; i < klen; i++)
            kw[i] = (line[i] >= 'a' && line[i] <= 'z')
                        ? (char)(line[i] - 'a' + 'A') : line[i];
        kw[klen] = '\0';
        arg = line + klen;
        if (strcmp(kw, "PIPELINING") == 0) {
            c->ext |= PST_SMTP_CLIENT_EXT_PIPELINING;
        } else if (strcmp(kw, "STARTTLS") == 0) {
            c->ext |= PST_SMTP_CLIENT_EXT_STARTTLS;
        } else if (strcmp(kw, "8BITMIME") == 0) {
            c->ext |= PST_SMTP_CLIENT_EXT_8BITMIME;
        } else if (strcmp(kw, "ENHANCEDSTATUSCODES") == 0) {
            c->ext |= PST_SMTP_CLIENT_EXT_ENHANCED;
        } else if (strcmp(kw, "SMTPUTF8") == 0) {
            c->ext |= PST_SMTP_CLIENT_EXT_SMTPUTF8;
        } else if (strcmp(kw, "SIZE") == 0) {
            c->ext |= PST_SMTP_CLIENT_EXT_SIZE;
            if (*arg == ' ') {
                char num[24];
                size_t n = strcspn(arg + 1, "\n");

                if (n > 0 && n < sizeof(num)) {
                    memcpy(num, arg + 1, n);
                    num[n] = '\0';
                    c->size_limit = strtoull(num, NULL, 10);
                }
            }
        } else if (strcmp(kw, "AUTH") == 0) {
            /* "AUTH PLAIN LOGIN" and the legacy "AUTH=PLAIN LOGIN" that
             * old clients look for. */
            char list[PST_SMTP_CLIENT_MAX_REPLY_LINE];
            size_t n = strcspn(arg, "\n");

            if (n >= sizeof(list))
                n = sizeof(list) - 1;
            memcpy(list, arg, n);
            list[n] = '\0';
            if (list[0] == ' ' || list[0] == '=') {
                c->ext |= PST_SMTP_CLIENT_EXT_AUTH;
                if ((rc = client_parse_mechs(c, list + 1)) < 0)
                    return rc;
            }
        }
    }
    return pst_buf_append(&c->mechs, "", 0);
}

