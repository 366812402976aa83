/*
 * posternd - ESMTP submission server with SMTP AUTH.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include <curl/curl.h>

#include <postern/version.h>

#include "server.h"

static void
usage(FILE *f)
{
    fprintf(f,
            "usage: posternd -c FILE [-t]\n"
            "\n"
            "ESMTP submission server with SMTP AUTH (RFC 4954).  Runs in the\n"
            "foreground and logs to stderr; SIGHUP reloads the configuration\n"
            "and the user file, SIGTERM stops after the sessions end.\n"
            "\n"
            "  -c FILE        configuration file (posternd.conf(5))\n"
            "  -t             check the configuration and exit\n"
            "  -h, --help     this help\n"
            "  -V, --version  print the version\n");
}

int
main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    const char *conf = NULL;
    int c, check = 0;

    /* Once, before any thread: libcurl (the relay's token endpoint). */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    while ((c = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            conf = optarg;
            break;
        case 't':
            check = 1;
            break;
        case 'h':
            usage(stdout);
            return EX_OK;
        case 'V':
            printf("posternd %s (libpostern %s)\n", PST_VERSION_STRING,
                   pst_version());
            return EX_OK;
        default:
            usage(stderr);
            return EX_USAGE;
        }
    }
    if (conf == NULL || optind != argc) {
        usage(stderr);
        return EX_USAGE;
    }
    /* The libuv thread pool runs every fsync of delivery and every
     * password hash: its default of 4 threads caps durable throughput
     * (bench/RESULTS.md).  An administrator's own setting wins. */
    setenv("UV_THREADPOOL_SIZE", "32", 0);
    return check ? server_check(conf) : server_run(conf);
}
