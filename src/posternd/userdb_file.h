/*
 * posternd - the passwd-file user store ("userdb = passwd-file:PATH").
 *
 * The file is read whole and parsed by libpostern (pst_passwd_parse()).
 * A reload that finds the new file broken keeps serving the version
 * already loaded and says why, naming file and line.  Each loaded version
 * is reference-counted: a session holds the version its credentials came
 * from (pst_sasl_server_set_cred() borrows them) while a reload swaps in
 * the next.
 */
#ifndef POSTERND_USERDB_FILE_H
#define POSTERND_USERDB_FILE_H

#include <stddef.h>

#include <postern/passwd.h>

/* Largest user file read, in bytes (about 2 million users). */
#define USERDB_FILE_MAX_SIZE ((size_t)256 << 20)

struct userdb_file;       /* the store: a path and the version in service */
struct userdb_file_table; /* one loaded version */

/*
 * Load path ([in], copied) into a new store *out ([out] owned, freed with
 * userdb_file_free()).  On failure err ([out], errlen bytes, may be NULL)
 * gets "PATH:LINE: message" or "PATH: message".
 * Returns: 0, PST_EIO (cannot open or read), PST_ELIMIT (file too large),
 * PST_ESYNTAX, PST_EEXIST (duplicate user), PST_ENOMEM.
 */
int userdb_file_open(const char *path, struct userdb_file **out, char *err,
                     size_t errlen);

/*
 * Read the file again.  On success the new version serves every later
 * userdb_file_acquire(); on failure the previous one goes on serving and
 * err says why and that the previous version is kept.
 * Returns: as userdb_file_open().
 */
int userdb_file_reload(struct userdb_file *u, char *err, size_t errlen);

/*
 * The version in service, with a reference ([out] owned: give it back
 * with userdb_file_release()).  Safe from any thread.
 */
struct userdb_file_table *userdb_file_acquire(struct userdb_file *u);

/* Drop a reference; the last one frees the version.  NULL is a no-op. */
void userdb_file_release(struct userdb_file_table *t);

/*
 * Look up name[0..len) ([in]) exactly (pst_passwd_lookup()).
 * Returns: the entry ([out] borrowed from t, valid while t is held), or
 * NULL for an unknown user.
 */
const struct pst_passwd_entry *userdb_file_lookup(
    const struct userdb_file_table *t, const char *name, size_t len);

/* The parsed table of t ([out] borrowed from t). */
const struct pst_passwd *userdb_file_passwd(const struct userdb_file_table *t);

/* The file's path ([out] borrowed from u). */
const char *userdb_file_path(const struct userdb_file *u);

/* Free u and drop its reference to the version in service; versions
 * still acquired live until released.  NULL is a no-op. */
void userdb_file_free(struct userdb_file *u);

#endif
