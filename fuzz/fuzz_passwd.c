/*
 * Fuzz target: the user file parser (include/postern/passwd.h, Dovecot's
 * passwd-file format), with lookups and extra fields.
 *
 * The whole input is one user file.  Password fields are parsed (every
 * scheme's form) but not verified: fuzz_cred.c does that.
 *
 * Invariants (abort() on a violation):
 * - each entry's name, password field and line lie where its offsets
 *   say, inside the text, and its strings are NUL-terminated at their
 *   lengths;
 * - looking up an entry's name finds that entry (names are unique);
 * - an error message is NUL-terminated, and a failed parse gives no
 *   table.
 */
#include <stdlib.h>
#include <string.h>

#include <postern/cred.h>
#include <postern/passwd.h>

#include "fuzz.h"

static void
check_entry(const struct pst_passwd *p, const struct pst_passwd_entry *e,
            const uint8_t *data, size_t size)
{
    static const char *const keys[] = {"allow_from", "uid", "nopassword",
                                       "", "x=y"};
    const char *v;
    size_t len;

    if (e->name == NULL || e->extra == NULL ||
        strlen(e->name) != e->name_len || strlen(e->extra) != e->extra_len)
        abort();
    if (e->line_off > size || e->line_len > size - e->line_off ||
        e->pass_off < e->line_off ||
        e->pass_len > e->line_off + e->line_len - e->pass_off ||
        e->name_len > e->line_len ||
        memcmp(data + e->line_off, e->name, e->name_len) != 0)
        abort();
    if ((e->cred == NULL) != (e->pass_len == 0))
        abort();
    if (pst_passwd_lookup(p, e->name, e->name_len) != e)
        abort();
    for (size_t k = 0; k < sizeof(keys) / sizeof(keys[0]); k++) {
        v = NULL;
        len = 0;
        if (pst_passwd_extra(e, keys[k], &v, &len) == 1 &&
            (v == NULL || v < e->extra || len > e->extra_len ||
             (size_t)(v - e->extra) > e->extra_len - len))
            abort();
    }
    if (e->cred != NULL) {
        volatile int n = 0;

        for (int s = PST_SCHEME_PLAIN; s <= PST_SCHEME_CRYPT; s++)
            n += pst_cred_has(e->cred, (enum pst_cred_scheme)s);
        (void)n;
    }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[] = {"tim", "user", "", "chris",
                                        "nobody"};
    struct pst_passwd *p = (struct pst_passwd *)1;
    struct pst_passwd_error err;
    const char *why = NULL;
    size_t n;
    int rc;

    memset(&err, 0x55, sizeof(err));
    rc = pst_passwd_parse(data, size, &p, &err);
    if (rc != 0) {
        if (p != NULL ||
            memchr(err.message, '\0', sizeof(err.message)) == NULL)
            abort();
    } else {
        n = pst_passwd_count(p);
        for (size_t i = 0; i < n; i++) {
            const struct pst_passwd_entry *e = pst_passwd_entry_at(p, i);

            if (e == NULL)
                abort();
            check_entry(p, e, data, size);
        }
        if (pst_passwd_entry_at(p, n) != NULL)
            abort();
        for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
            (void)pst_passwd_lookup(p, names[i], strlen(names[i]));
    }
    pst_passwd_free(p);

    /* The input as one user name. */
    if (pst_passwd_check_name((const char *)data, size, &why) != 0 &&
        why == NULL)
        abort();
    return 0;
}
