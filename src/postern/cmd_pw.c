/*
 * postern pw - make a password verifier ({SCHEME}value), or check one
 * (-t), in the forms `doveadm pw` makes and checks.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include <postern/cred.h>
#include <postern/error.h>

#include "cmd_cred.h"
#include "prompt.h"

const char cmd_cred_legacy_note[] =
    "Legacy devices: SCRAM-SHA-256 (the default) stores no password\n"
    "equivalent, but printers and scanners that only speak CRAM-MD5 or\n"
    "DIGEST-MD5 need a verifier of their own scheme too, e.g.\n"
    "-s SCRAM-SHA-256,CRAM-MD5 or -s SCRAM-SHA-256,DIGEST-MD5 -r REALM.\n"
    "Know what that stores: {CRAM-MD5} is the HMAC-MD5 key state of the\n"
    "password and {DIGEST-MD5} is MD5(user:realm:password), both unsalted;\n"
    "whoever reads them can log in with that mechanism without knowing the\n"
    "password, and can test guesses at MD5 speed.  Keep the file private\n"
    "(mode 0600 or 0640) and add these only for the users who need them.\n";

/* --- reading the password ------------------------------------------- */

/*
 * One line from standard input, or from the terminal without echo (the
 * prompt on stderr): prompt NULL means no terminal.
 * Returns: 0, EX_DATAERR (too long), EX_NOINPUT (end of input before any
 * byte), EX_IOERR, EX_OSERR.
 */
static int
pw_read(const char *prompt, struct pst_buf *b)
{
    int rc;

    if (prompt == NULL)
        rc = prompt_read_line(STDIN_FILENO, b);
    else
        rc = prompt_password(STDIN_FILENO, STDERR_FILENO, prompt, b);
    switch (rc) {
    case 0:
        return 0;
    case PST_ENOENT:
        fprintf(stderr, "postern: no password on standard input\n");
        return EX_NOINPUT;
    case PST_ELIMIT:
        fprintf(stderr, "postern: password longer than %d bytes\n",
                CMD_CRED_PW_MAX);
        return EX_DATAERR;
    case PST_ENOMEM:
        fprintf(stderr, "postern: out of memory\n");
        return EX_OSERR;
    case PST_ENOTSUP:
        fprintf(stderr, "postern: cannot read the terminal: %s\n",
                strerror(errno));
        return EX_IOERR;
    default:
        fprintf(stderr, "postern: cannot read the password: %s\n",
                strerror(errno));
        return EX_IOERR;
    }
}

int
cmd_cred_read_password(int confirm, int allow_empty, struct pst_buf *pw)
{
    int rc;

    pst_buf_reset(pw);
    if (!isatty(STDIN_FILENO)) {
        rc = pw_read(NULL, pw);
    } else {
        struct pst_buf again;

        rc = pw_read("Password: ", pw);
        if (rc == 0 && confirm) {
            pst_buf_init(&again, CMD_CRED_PW_MAX, 1);
            rc = pw_read("Retype password: ", &again);
            if (rc == 0 && (again.len != pw->len ||
                            CRYPTO_memcmp(again.data, pw->data, pw->len) !=
                                0)) {
                fprintf(stderr, "postern: the passwords do not match\n");
                rc = EX_DATAERR;
            }
            pst_buf_clear(&again);
        }
    }
    if (rc == 0 && pw->len == 0 && !allow_empty) {
        fprintf(stderr, "postern: empty password refused\n");
        rc = EX_DATAERR;
    }
    return rc;
}

/* --- making verifiers ----------------------------------------------- */

int
cmd_cred_rounds(const char *arg, unsigned *rounds)
{
    char *end;
    unsigned long v;

    errno = 0;
    v = strtoul(arg, &end, 10);
    if (arg[0] < '0' || arg[0] > '9' || *end != '\0' || errno != 0 ||
        v == 0 || v > UINT_MAX) {
        fprintf(stderr, "postern: --rounds wants a positive number, not "
                "'%s'\n", arg);
        return EX_USAGE;
    }
    *rounds = (unsigned)v;
    return 0;
}

/* Why pst_cred_make() refused, and the exit code it makes. */
static int
pw_make_error(const char *scheme, int rc)
{
    switch (rc) {
    case PST_ENOTSUP:
        fprintf(stderr, "postern: unknown scheme '%s' (known: PLAIN, "
                "CRAM-MD5, DIGEST-MD5, SCRAM-SHA-1, SCRAM-SHA-256, "
                "SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, MD5-CRYPT, CRYPT)\n",
                scheme);
        return EX_USAGE;
    case PST_EINVAL:
        fprintf(stderr, "postern: %s: %s\n", scheme,
                strncasecmp(scheme, "DIGEST-MD5", 10) == 0
                    ? "needs the user name (-u USER[@REALM])"
                    : "--rounds out of range for this scheme (SCRAM: 4096 "
                      "to 10000000; SHA*-CRYPT: 1000 to 999999999; "
                      "BLF-CRYPT: 4 to 31), or a NUL in the password");
        return EX_USAGE;
    case PST_EWEAK:
        fprintf(stderr, "postern: %s: %s\n", scheme,
                strncasecmp(scheme, "DES-CRYPT", 9) == 0
                    ? "not made: DES uses only the first 8 characters of "
                      "a password (choose SHA512-CRYPT or BLF-CRYPT)"
                    : "at least 4096 iterations (RFC 7677 section 4)");
        return EX_USAGE;
    case PST_EPREP:
        fprintf(stderr, "postern: %s: the password is not valid under "
                "SASLprep (RFC 4013), so no SCRAM client could send it\n",
                scheme);
        return EX_DATAERR;
    case PST_ETEMP:
        fprintf(stderr, "postern: no random bytes for the salt\n");
        return EX_TEMPFAIL;
    case PST_ENOMEM:
        fprintf(stderr, "postern: out of memory\n");
        return EX_OSERR;
    default:
        fprintf(stderr, "postern: %s: %s\n", scheme, pst_strerror(rc));
        return EX_SOFTWARE;
    }
}

int
cmd_cred_make(const char *schemes, const char *user, const char *realm,
              const uint8_t *pw, size_t len, unsigned rounds,
              struct pst_buf *out)
{
    const char *p = schemes;
    size_t n = 0;

    for (;;) {
        const char *comma = strchr(p, ',');
        size_t sl = comma != NULL ? (size_t)(comma - p) : strlen(p);
        char scheme[64];
        int rc;

        if (sl == 0 || sl >= sizeof(scheme)) {
            fprintf(stderr, "postern: bad scheme list '%s'\n", schemes);
            return EX_USAGE;
        }
        if (++n > PST_CRED_MAX_VERIFIERS) {
            fprintf(stderr, "postern: at most %d schemes\n",
                    PST_CRED_MAX_VERIFIERS);
            return EX_USAGE;
        }
        memcpy(scheme, p, sl);
        scheme[sl] = '\0';
        /* Dovecot takes the realm from user@realm; without either, the
         * verifier is for the empty realm, which few servers use. */
        if (strncasecmp(scheme, "DIGEST-MD5", 10) == 0 && realm == NULL &&
            user != NULL && strchr(user, '@') == NULL)
            fprintf(stderr, "postern: note: DIGEST-MD5 verifier made for "
                    "an empty realm (give -r REALM, or USER@REALM)\n");
        if (n > 1 && pst_buf_append_byte(out, ' ') < 0)
            return EX_OSERR;
        rc = pst_cred_make(scheme, user, realm, pw, len, rounds, NULL, NULL,
                           out);
        if (rc < 0)
            return pw_make_error(scheme, rc);
        if (comma == NULL)
            break;
        p = comma + 1;
    }
    return 0;
}

/* --- the command ------------------------------------------------------ */

static void
pw_usage(FILE *f)
{
    fprintf(f,
            "usage: postern pw [-s SCHEME[,SCHEME...]] [-u USER] [-r REALM] "
            "[--rounds N]\n"
            "       postern pw -t HASH [-u USER] [-r REALM]\n"
            "\n"
            "Make a password verifier for a passwd-file, or check one.  The\n"
            "password is read from the terminal without echo (twice), or as\n"
            "one line of standard input when that is not a terminal.\n"
            "\n"
            "  -s, --scheme S   schemes to make, comma-separated (default "
            CMD_CRED_DEFAULT_SCHEMES ");\n"
            "                   PLAIN CRAM-MD5 DIGEST-MD5 SCRAM-SHA-1 "
            "SCRAM-SHA-256\n"
            "                   SHA512-CRYPT SHA256-CRYPT BLF-CRYPT "
            "MD5-CRYPT CRYPT,\n"
            "                   optionally with .b64 or .hex\n"
            "  -u, --user U     user name (DIGEST-MD5: user@realm)\n"
            "  -r, --realm R    DIGEST-MD5 realm (default: after the last "
            "'@' of -u)\n"
            "      --rounds N   SCRAM iterations (default 4096, at least "
            "4096),\n"
            "                   SHA*-CRYPT rounds, BLF-CRYPT cost "
            "(default %d)\n"
            "  -t, --test HASH  check the password against HASH: exit 0 if "
            "it\n"
            "                   matches, 77 if not\n"
            "  -h, --help       this help\n"
            "\n"
            "%s",
            PST_CRED_BLF_DEFAULT_COST, cmd_cred_legacy_note);
}

/* -t HASH: exit 0 on a match, EX_NOPERM (77) on a mismatch. */
static int
pw_test(const char *hash, const char *user, const char *realm)
{
    struct pst_cred *c = NULL;
    const char *why = NULL;
    char *who = NULL;
    struct pst_buf pw;
    int rc;

    rc = pst_cred_parse_reason(hash, strlen(hash), &c, &why);
    if (rc < 0) {
        fprintf(stderr, "postern: not a valid verifier: %s\n",
                why != NULL ? why : pst_strerror(rc));
        return EX_DATAERR;
    }
    if (pst_cred_has(c, PST_SCHEME_DIGEST_MD5) && user == NULL) {
        fprintf(stderr, "postern: a DIGEST-MD5 verifier needs -u "
                "USER[@REALM]\n");
        pst_cred_free(c);
        return EX_USAGE;
    }
    if (user != NULL && realm != NULL) {
        size_t n = strlen(user) + strlen(realm) + 2;

        who = malloc(n);
        if (who == NULL) {
            pst_cred_free(c);
            return EX_OSERR;
        }
        snprintf(who, n, "%s@%s", user, realm);
    }
    pst_buf_init(&pw, CMD_CRED_PW_MAX, 1);
    rc = cmd_cred_read_password(0, 1, &pw);
    if (rc == 0) {
        int v = pst_cred_verify(c, who != NULL ? who : user,
                                pw.data != NULL ? pw.data
                                                : (const uint8_t *)"",
                                pw.len);

        if (v == 0) {
            printf("%s (verified)\n", hash);
        } else if (v == PST_EAUTH) {
            fprintf(stderr, "postern: password mismatch\n");
            rc = EX_NOPERM;
        } else {
            fprintf(stderr, "postern: %s\n", pst_strerror(v));
            rc = EX_SOFTWARE;
        }
    }
    pst_buf_clear(&pw);
    pst_cred_free(c);
    free(who);
    return rc;
}

enum pw_option {
    PW_OPT_ROUNDS = 256, /* long-only options start past any char */
};

int
cmd_pw_main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"scheme", required_argument, NULL, 's'},
        {"user", required_argument, NULL, 'u'},
        {"realm", required_argument, NULL, 'r'},
        {"rounds", required_argument, NULL, PW_OPT_ROUNDS},
        {"test", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *schemes = CMD_CRED_DEFAULT_SCHEMES, *user = NULL;
    const char *realm = NULL, *test = NULL;
    unsigned rounds = 0;
    struct pst_buf pw, out;
    int opt, rc;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "+s:u:r:t:h", longopts, NULL)) !=
           -1) {
        switch (opt) {
        case 's':
            schemes = optarg;
            break;
        case 'u':
            user = optarg;
            break;
        case 'r':
            realm = optarg;
            break;
        case 't':
            test = optarg;
            break;
        case PW_OPT_ROUNDS:
            if ((rc = cmd_cred_rounds(optarg, &rounds)) != 0)
                return rc;
            break;
        case 'h':
            pw_usage(stdout);
            return 0;
        default:
            pw_usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "postern pw: unexpected argument '%s'\n",
                argv[optind]);
        pw_usage(stderr);
        return EX_USAGE;
    }
    if (test != NULL)
        return pw_test(test, user, realm);

    pst_buf_init(&pw, CMD_CRED_PW_MAX, 1);
    pst_buf_init(&out, 1 << 16, 1);
    rc = cmd_cred_read_password(1, 0, &pw);
    if (rc == 0)
        rc = cmd_cred_make(schemes, user, realm, pw.data, pw.len, rounds,
                           &out);
    if (rc == 0) {
        if (printf("%s\n", (const char *)out.data) < 0 ||
            fflush(stdout) != 0) {
            fprintf(stderr, "postern: cannot write: %s\n", strerror(errno));
            rc = EX_IOERR;
        }
    }
    pst_buf_clear(&pw);
    pst_buf_clear(&out);
    return rc;
}
