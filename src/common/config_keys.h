/*
 * posternd - the configuration's key tables (config_keys.c) and the
 * parser's side of them (config.c).  Internal to those two files.
 *
 * A key is a row: name, value type, field offset, bounds, default and a
 * line of documentation.  A section type ("[listener NAME]", "[relay
 * NAME]", "[profile NAME]", and the global keys) is a table of keys,
 * the struct its values go into, and a check of what needs the whole
 * file.  A new key of a known type is a
 * row and a field; a new value type is a case in config.c's set_value()
 * and free_value(); a new section type is a table, a struct, a check and
 * an entry of config_section_types[].
 */
#ifndef POSTERND_CONFIG_KEYS_H
#define POSTERND_CONFIG_KEYS_H

#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct config_enum {
    const char *name;
    int value;
};

/* How a value is read, and the C type of its field. */
enum config_type {
    KT_STRING = 0,  /* char *: any non-empty text */
    KT_HOSTNAME,    /* char *: a domain name */
    KT_USERDB,      /* struct config_userdb: passwd-file:PATH |
                       pgsql:CONNINFO */
    KT_MAILBOX,     /* char *: maildir:TEMPLATE (the template kept) */
    KT_ENUM,        /* int (or an enum): one of names[] */
    KT_NUMBER,      /* unsigned: decimal, min..max */
    KT_SIZE,        /* uint64_t: decimal, min..max */
    KT_SECONDS,     /* unsigned: decimal with an optional s, m or h,
                       min..max s */
    KT_MILLIS,      /* unsigned: decimal with an optional ms, s, m or h
                       (bare: seconds), min..max ms */
    KT_WORKERS,     /* unsigned: auto (0) | min..max */
    KT_TLS_VERSION, /* enum tls_version: TLSv1 ... TLSv1.3 */
    KT_CIDRS,       /* struct config_cidrs: a list of networks */
    KT_ADDRESS,     /* struct config_address: HOST:PORT | [IPV6]:PORT */
    KT_MECHS,       /* struct config_mechs: SASL mechanism names */
    KT_DOMAINS,     /* struct config_words: domain names, lowercased */
    KT_HOSTPORT,    /* struct config_hostport: HOST:PORT | [IPV6]:PORT */
    KT_NAMES,       /* struct config_words: section names, as written */
};

#define KF_REQUIRED 0x01u /* the file must set it */

struct config_key {
    const char *name;
    enum config_type type;
    size_t offset;                 /* of the field in the section */
    const struct config_enum *names; /* KT_ENUM */
    uint64_t min, max;             /* KT_NUMBER .. KT_WORKERS */
    const char *def;               /* default, as written in a file; NULL:
                                      none (zero, NULL, empty) */
    unsigned flags;                /* KF_* */
    const char *doc;               /* one line; the man page says more */
};

/* The parser's state, for the checks. */
struct config_section;
struct config_parser;

/* One kind of "[TYPE NAME]" section (or the global keys: name NULL). */
struct config_section_type {
    const char *name;
    const struct config_key *keys;
    size_t nkeys;
    size_t size;                  /* of one section's struct */
    size_t name_offset;           /* its char *name */
    size_t line_offset;           /* its unsigned line */
    size_t list_offset;           /* its array in struct config ... */
    size_t count_offset;          /* ... and the array's size_t count */
    size_t max;                   /* sections of this type at most */
    /* Defaults the table cannot say (may be NULL). */
    void (*init)(void *sec);
    /* Checks that need the whole file (may be NULL). */
    int (*check)(struct config_parser *p, const struct config_section *s);
};

/* A section read so far (the global keys are one too). */
struct config_section {
    const struct config_section_type *type;
    size_t index;                 /* in its array in struct config */
    unsigned *seen;               /* line where each key was set; 0: not */
};

struct config_parser {
    const char *file;
    unsigned line;                /* current line, from 1 */
    char *err;
    size_t err_size;
    struct config *c;
    struct config_section *secs;  /* [0]: the global keys */
    size_t nsecs;
};

/* The tables (config_keys.c). */
#define CONFIG_SECTION_TYPES 3    /* entries of config_section_types[] */
extern const struct config_section_type config_global_type;
extern const struct config_section_type
    config_section_types[CONFIG_SECTION_TYPES];

/* The parser's helpers (config.c), for the checks. */

/* Record "file:line: message" (or "file: message" for line 0) in the
 * parser's error buffer.  Returns: PST_ESYNTAX. */
int config_perr(struct config_parser *p, unsigned line, const char *fmt,
                ...) __attribute__((format(printf, 3, 4)));

/* The line key name was set on in s, 0 if it was not. */
unsigned config_key_line(const struct config_section *s, const char *name);

/* The section record of the index-th section of type t, or NULL. */
const struct config_section *config_section_of(
    const struct config_parser *p, const struct config_section_type *t,
    size_t index);

/* The name of section s ("a" of "[listener a]"). */
const char *config_section_name(const struct config_parser *p,
                                const struct config_section *s);

/* The name of value in an enum table, for messages ("?" if none). */
const char *config_enum_value(const struct config_enum *names, int value);

#endif
