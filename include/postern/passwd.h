/*
 * postern - the user file, in the format of Dovecot's passwd-file.
 *
 * One user per line:
 *
 *     name:{SCHEME}value[ {SCHEME}value...][:uid:gid:gecos:home:shell:extra]
 *
 * (Dovecot's user:password:uid:gid:(gecos):home:(shell):extra_fields, so
 * existing Dovecot files and `doveadm pw` output work as they are).  Lines
 * that are empty, blank, or start with '#' or ':' are skipped, as Dovecot
 * skips them.  uid and gid, when present, are decimal numbers; gecos, home
 * and shell are kept but not used.  Everything after the seventh ':' is
 * the extra fields: space-separated key=value (or a bare key).  A line may
 * end in CRLF.  The library parses bytes; reading the file is the
 * caller's business (lib/ does no I/O).
 */
#ifndef POSTERN_PASSWD_H
#define POSTERN_PASSWD_H

#include <stddef.h>
#include <stdint.h>

#include <postern/cred.h>
#include <postern/error.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Longest user name accepted, in bytes. */
#define PST_PASSWD_NAME_MAX 255

/* One user, borrowed from its table (valid until pst_passwd_free()). */
struct pst_passwd_entry {
    const char *name;            /* NUL-terminated, exactly as in the file */
    size_t name_len;
    const struct pst_cred *cred; /* NULL: empty password field (the user
                                    exists but cannot log in) */
    const char *extra;           /* extra fields, NUL-terminated; "" if none */
    size_t extra_len;
    unsigned line;               /* 1-based line number */
    /* Where the line lies in the parsed text, for editors: */
    size_t line_off;             /* first byte of the line */
    size_t line_len;             /* bytes up to and including its "\n" */
    size_t pass_off;             /* the password field */
    size_t pass_len;
};

#define PST_PASSWD_MSG_MAX 256

/* Why a text did not parse. */
struct pst_passwd_error {
    unsigned line;       /* 1-based line, 0 when not about one line */
    unsigned first_line; /* duplicate user: the line of the first one */
    char message[PST_PASSWD_MSG_MAX]; /* without file name or line number,
                                         e.g. "user 'bob': ..."; never
                                         holds a secret */
};

struct pst_passwd; /* a parsed user file: opaque */

/*
 * Parse a whole user file text[0..len) ([in] borrowed) into a table with
 * constant-time lookup by exact name.  Every password field is checked
 * with pst_cred_parse().  *out ([out] owned) is freed with
 * pst_passwd_free(); err ([out], may be NULL) says what failed and where.
 * Returns: 0, PST_ESYNTAX (a malformed line: err->line), PST_EEXIST (a
 * user on two lines: err->first_line and err->line), PST_ELIMIT (more
 * lines than a table holds), PST_ENOMEM.
 */
PST_EXTERN int pst_passwd_parse(const uint8_t *text, size_t len,
                                struct pst_passwd **out,
                                struct pst_passwd_error *err);

/* Free p and wipe its credentials; NULL is a no-op. */
PST_EXTERN void pst_passwd_free(struct pst_passwd *p);

/* Number of users in p. */
PST_EXTERN size_t pst_passwd_count(const struct pst_passwd *p);

/*
 * The i-th user in file order ([out] borrowed from p).
 * Returns: the entry, or NULL when i >= pst_passwd_count(p).
 */
PST_EXTERN const struct pst_passwd_entry *
pst_passwd_entry_at(const struct pst_passwd *p, size_t i);

/*
 * Look up the user named name[0..len) ([in] borrowed), compared byte for
 * byte: no case folding, no normalisation (a SCRAM caller passes the
 * SASLprep'd name).  Names are not secret; the lookup is a hash table.
 * Returns: the entry ([out] borrowed from p), or NULL if there is none.
 */
PST_EXTERN const struct pst_passwd_entry *
pst_passwd_lookup(const struct pst_passwd *p, const char *name, size_t len);

/*
 * The value of extra field key ([in], e.g. "allow_from") of e: *value
 * ([out] borrowed from e, not NUL-terminated) and *len; a bare key has
 * an empty value.  The first occurrence wins.
 * Returns: 1 (found), 0 (not there).
 */
PST_EXTERN int pst_passwd_extra(const struct pst_passwd_entry *e,
                                const char *key, const char **value,
                                size_t *len);

/*
 * Whether name[0..len) ([in]) may be a user name in the file: 1 to
 * PST_PASSWD_NAME_MAX bytes of valid UTF-8, no ':', space or control
 * character, not starting with '#'.  *why ([out] static) says why not.
 * Returns: 0, PST_ESYNTAX.
 */
PST_EXTERN int pst_passwd_check_name(const char *name, size_t len,
                                     const char **why);

#ifdef __cplusplus
}
#endif
#endif
