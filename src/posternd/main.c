/*
 * posternd - ESMTP submission server with SMTP AUTH.
 * (The server itself comes with the server issue; for now it only answers
 * --help and --version.)
 */
#include <stdio.h>
#include <string.h>

#include <postern/version.h>

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: posternd -c FILE [-t]\n"
            "\n"
            "ESMTP submission server with SMTP AUTH (RFC 4954).\n"
            "\n"
            "  -c FILE      configuration file\n"
            "  -t           check the configuration and exit\n"
            "  -h, --help   this help\n"
            "  -V, --version\n");
}

int
main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "-V") == 0 || strcmp(argv[i], "--version") == 0) {
            printf("posternd %s (libpostern %s)\n", PST_VERSION_STRING,
                   pst_version());
            return 0;
        }
    }
    usage(stderr);
    return 64; /* EX_USAGE */
}
