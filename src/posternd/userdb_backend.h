/*
 * posternd - what a user store backend fills (OpenSMTPD's struct
 * table_backend) and the calls it makes on a lookup request.  Internal
 * to userdb.c and the backends, userdb_file.c and userdb_pgsql.c; the
 * server sees userdb.h only.
 *
 * A lookup: userdb.c makes the request and calls the backend's lookup;
 * the backend, then or later from the loop, fills the request's record
 * (userdb_req_set_cred(), userdb_req_set_field()) and answers
 * (userdb_req_answer(), never from inside its lookup function;
 * userdb_req_answer_later() defers to the next loop turn).
 */
#ifndef POSTERND_USERDB_BACKEND_H
#define POSTERND_USERDB_BACKEND_H

#include <stddef.h>

#include <uv.h>

#include <postern/cred.h>

#include "config.h"
#include "userdb.h"

/* Extra fields of the record (userdb_fields[] in userdb.c). */
#define USERDB_FIELDS 7

/* How a field reads (userdb_field_flags()). */
#define USERDB_FIELD_PRESENCE 0x01u /* an empty value counts: the field
                                       is set by being there (Dovecot's
                                       flags, allow_nets) */

struct userdb_backend {
    const char *name;         /* as in "userdb = NAME:ARG" */
    unsigned per_loop;        /* 1: each event loop opens its own store */
    /*
     * Open the store cfg names into *store.  Returns: 0, or -1 with a
     * message naming the file (and line) in err.
     */
    int (*open)(const struct config *cfg, void **store, char *err,
                size_t err_size);
    /* Free a store whose lookups have all ended. */
    void (*free)(void *store);
    /*
     * Look name ([in], copied if kept) up on loop for req.  Returns: 0
     * (an answer will come), PST_ENOMEM, PST_EINVAL; on error no answer
     * comes.
     */
    int (*lookup)(void *store, uv_loop_t *loop, const char *name,
                  struct userdb_req *req);
    /* Give up req's lookup in flight (req->pending set): no answer. */
    void (*cancel)(struct userdb_req *req);
    /* posternd -t: as userdb_check(). */
    int (*check)(void *store, char *msg, size_t n);
    /* As userdb_count(); NULL: the store cannot tell. */
    int (*count)(const void *store, size_t *n);
    /* As userdb_find_cert() (fp: the parsed fingerprint); NULL: the
     * store cannot tell. */
    int (*find_cert)(void *store, const uint8_t fp[USERDB_CERT_LEN],
                     char *name, size_t n);
};

extern const struct userdb_backend userdb_file_backend;
extern const struct userdb_backend userdb_pgsql_backend;

struct userdb_req {
    struct userdb *u;             /* a reference */
    userdb_lookup_cb *cb;
    void *ctx;
    void *pending;                /* the backend's lookup in flight */
    /* An answer on the next loop turn (userdb_req_answer_later()): */
    uv_timer_t defer;
    int defer_open;
    int rc;
    int answered;                 /* userdb_req_answer() ran */
    /* Looked up: */
    struct userdb_user user;      /* lent to the callback */
    struct pst_cred *cred;        /* owned, or NULL (borrowed) */
    char *owned[USERDB_FIELDS];   /* copies of user's fields, or NULL */
};

/* The index of extra field name[0..len) in the record, or -1 for a field
 * posternd does not know (kept by the store and ignored). */
int userdb_field_find(const char *name, size_t len);

/* The name of extra field i ("allow_from"), NULL past the last. */
const char *userdb_field_name(size_t i);

/* The USERDB_FIELD_* flags of extra field i. */
unsigned userdb_field_flags(size_t i);

/*
 * The user's verifiers: cred borrowed (for as long as the request holds
 * its store) or, with owned != NULL, owned by the request from now on
 * (cred == owned).
 */
void userdb_req_set_cred(struct userdb_req *req, const struct pst_cred *cred,
                         struct pst_cred *owned);

/*
 * Extra field i = value[0..len): borrowed as cred is, or copied when
 * copy is set.  The first value set wins.
 * Returns: 0, PST_ENOMEM.
 */
int userdb_req_set_field(struct userdb_req *req, size_t i, const char *value,
                         size_t len, int copy);

/*
 * The end of the lookup: rc as userdb_lookup_cb.  The callback runs now
 * (the backend must be outside its lookup function and touch nothing of
 * req afterwards).
 */
void userdb_req_answer(struct userdb_req *req, int rc);

/* The same on the next turn of loop.  Returns: 0, PST_ENOMEM. */
int userdb_req_answer_later(struct userdb_req *req, uv_loop_t *loop, int rc);

#endif
