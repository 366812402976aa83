/*
 * postern - the credential subcommands (`postern pw`, `postern user`) and
 * what they share: reading a password, making verifiers, exit codes.
 * Every function returning int returns a sysexits.h code (0 on success).
 */
#ifndef POSTERN_CMD_CRED_H
#define POSTERN_CMD_CRED_H

#include <stddef.h>
#include <stdint.h>

#include <postern/buf.h>

/* Longest password read, in bytes. */
#define CMD_CRED_PW_MAX 4096

/* Schemes made when -s is not given. */
#define CMD_CRED_DEFAULT_SCHEMES "SCRAM-SHA-256"

int cmd_pw_main(int argc, char **argv);
int cmd_user_main(int argc, char **argv);

/*
 * Read a password into pw (a secret buffer).  From a terminal: prompt on
 * stderr, no echo, twice when confirm is set (they must match).  Otherwise
 * one line of standard input (its "\n" or "\r\n" removed).
 * Returns: 0, EX_DATAERR (mismatch, too long, empty when !allow_empty),
 * EX_NOINPUT (nothing on standard input), EX_IOERR.
 */
int cmd_cred_read_password(int confirm, int allow_empty, struct pst_buf *pw);

/*
 * Append the verifiers of schemes (comma-separated, [in]) for pw,
 * separated by single spaces, to out.  Messages go to stderr.
 */
int cmd_cred_make(const char *schemes, const char *user, const char *realm,
                  const uint8_t *pw, size_t len, unsigned rounds,
                  struct pst_buf *out);

/* Parse --rounds N.  Returns: 0 or EX_USAGE (with a message). */
int cmd_cred_rounds(const char *arg, unsigned *rounds);

/* The text of the help note on legacy mechanisms, shared by both --help. */
extern const char cmd_cred_legacy_note[];

#endif
