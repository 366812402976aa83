/*
 * Fuzz target: posternd's configuration parser (src/posternd/config.h):
 * config_parse() of the whole input, then what the daemon asks of a
 * parsed configuration; also config_cidr_parse(), config_mailbox_check()
 * and config_mailbox_expand() of the input as an address.
 *
 * Invariants (abort() on a violation):
 * - a failed parse gives no configuration and a NUL-terminated message;
 * - a parsed configuration has a host name and its listeners have names
 *   and addresses;
 * - a mailbox path expanded from any address stays under its template:
 *   absolute, no "." or ".." component, no control byte the template
 *   does not have, and no more "/" than the template puts there (the
 *   address cannot add a level).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <postern/buf.h>
#include <postern/sasl.h>

#include "fuzz.h"
#include "config.h"

static size_t
count_slashes(const uint8_t *p, size_t len)
{
    size_t n = 0;

    for (size_t i = 0; i < len; i++)
        n += p[i] == '/';
    return n;
}

static void
check_path(const char *tmpl, const struct pst_buf *b)
{
    size_t i, start;

    if (b->len == 0 || b->data[0] != '/')
        abort();
    if (count_slashes(b->data, b->len) !=
        count_slashes((const uint8_t *)tmpl, strlen(tmpl)))
        abort();
    /* Control bytes only from the template (config_mailbox_check() lets
     * them through; the address may not add any). */
    for (i = 0; i < b->len; i++)
        if ((b->data[i] < 0x20 || b->data[i] == 0x7f) &&
            memchr(tmpl, b->data[i], strlen(tmpl)) == NULL)
            abort();
    for (start = 1, i = 1; i <= b->len; i++) {
        if (i == b->len || b->data[i] == '/') {
            size_t n = i - start;

            if ((n == 1 && b->data[start] == '.') ||
                (n == 2 && b->data[start] == '.' &&
                 b->data[start + 1] == '.'))
                abort();
            start = i + 1;
        }
    }
}

static void
fuzz_mailbox(const char *tmpl, const uint8_t *addr, size_t len)
{
    struct pst_buf b;

    pst_buf_init(&b, 4096, 0);
    if (config_mailbox_expand(tmpl, (const char *)addr, len, &b) == 0)
        check_path(tmpl, &b);
    pst_buf_clear(&b);
}

static void
use_config(const struct config *c)
{
    static const char addr[] = "user@Example.Test";
    struct sockaddr_in in4 = {.sin_family = AF_INET};
    struct sockaddr_in6 in6 = {.sin6_family = AF_INET6};
    volatile size_t touch = 0;

    if (c->hostname == NULL || c->file == NULL)
        abort();
    for (size_t i = 0; i < c->n_listeners; i++) {
        const struct config_listener *l = &c->listeners[i];

        if (l->name == NULL || l->address.text == NULL ||
            l->mechs.n > CONFIG_MAX_MECHS)
            abort();
        touch += strlen(l->name) + strlen(l->address.text);
        for (size_t m = 0; pst_sasl_mech_at(m) != NULL; m++)
            touch += (size_t)config_listener_has_mech(l,
                                                      pst_sasl_mech_at(m));
    }
    if (c->mailbox != NULL)
        fuzz_mailbox(c->mailbox, (const uint8_t *)addr, sizeof(addr) - 1);
    (void)inet_pton(AF_INET, "127.0.0.1", &in4.sin_addr);
    touch += (size_t)config_cidrs_match(&c->auth_throttle_exempt,
                                        (const struct sockaddr *)&in4);
    (void)inet_pton(AF_INET6, "::ffff:192.0.2.1", &in6.sin6_addr);
    touch += (size_t)config_cidrs_match(&c->auth_throttle_exempt,
                                        (const struct sockaddr *)&in6);
    /* A client's profile on each listener: one of the file's, whose
     * networks hold the address, and that applies on the listener. */
    for (size_t i = 0; i < c->n_listeners; i++) {
        const struct config_listener *l = &c->listeners[i];
        const struct sockaddr *sa[] = {(const struct sockaddr *)&in4,
                                       (const struct sockaddr *)&in6};

        for (size_t k = 0; k < 2; k++) {
            const struct config_profile *p =
                config_profile_match(c, l, sa[k]);

            if (p != NULL &&
                (p < c->profiles || p >= c->profiles + c->n_profiles ||
                 p->name == NULL || !config_cidrs_match(&p->networks, sa[k]) ||
                 !config_profile_on_listener(p, l)))
                abort();
            touch += (size_t)config_profile_abt(p, l);
        }
    }
    (void)touch;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const templates[] = {
        "/var/mail/%d/%n", "/srv/mail/%u/Maildir", "/m/%%/%n.%d",
    };
    struct config *c = (struct config *)1;
    struct config_cidr cidr;
    char err[CONFIG_ERR_MAX];
    const char *why = NULL;
    uint8_t *text;
    int rc;

    memset(err, 0x55, sizeof(err));
    rc = config_parse("fuzz.conf", (const char *)data, size, &c, err,
                      sizeof(err));
    if (rc != 0) {
        if (c != NULL || memchr(err, '\0', sizeof(err)) == NULL)
            abort();
    } else {
        use_config(c);
    }
    config_free(c);

    /* The input as one network, one template, one address. */
    (void)config_cidr_parse((const char *)data, size, &cidr);
    text = fuzz_dup(data, size, 1);
    if (text != NULL) {
        if (memchr(text, '\0', size) == NULL)
            (void)config_mailbox_check((const char *)text, &why);
        free(text);
    }
    for (size_t i = 0; i < sizeof(templates) / sizeof(templates[0]); i++)
        fuzz_mailbox(templates[i], data, size);
    return 0;
}
