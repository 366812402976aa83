/*
 * postern - SMTP AUTH client and admin tool.
 */
#include <libgen.h>
#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

#include <postern/version.h>

#include "cmd_cred.h"
#include "cmds.h"

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: postern COMMAND [OPTIONS]\n"
            "\n"
            "Commands:\n"
            "  send    submit a message, authenticating with SMTP AUTH\n"
            "  probe   show what a server offers (TLS, mechanisms)\n"
            "  pw      make a password verifier ({SCHEME}value)\n"
            "  user    edit a passwd-file (add, passwd, del, list)\n"
            "  bench   load generator\n"
            "  queue   what posternd's relay queue holds (list, show, flush,\n"
            "          delete)\n"
            "  oauth   OAuth 2.0 for a relay: login, status\n"
            "\n"
            "  -h, --help      this help\n"
            "  -V, --version   print the version\n");
}

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
} commands[] = {
    {"send", cmd_send_main},
    {"probe", cmd_probe_main},
    {"pw", cmd_pw_main},
    {"user", cmd_user_main},
    {"bench", cmd_bench_main},
    {"queue", cmd_queue_main},
    {"oauth", cmd_oauth_main},
};

int
main(int argc, char **argv)
{
    char *self = argc > 0 ? basename(argv[0]) : NULL;

    /* Invoked as sendmail (a link): sendmail's command line. */
    if (self != NULL && strcmp(self, "sendmail") == 0)
        return sendmail_main(argc, argv);
    /* Once, before any thread: libcurl (the OAuth token endpoint). */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (argc < 2) {
        usage(stderr);
        return 64; /* EX_USAGE */
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "-V") == 0 || strcmp(argv[1], "--version") == 0) {
        printf("postern %s (libpostern %s)\n", PST_VERSION_STRING,
               pst_version());
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "postern: unknown command '%s' (try --help)\n", argv[1]);
    return 64;
}
