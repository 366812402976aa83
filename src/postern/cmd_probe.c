/*
 * postern probe: what a server offers before and after TLS, and, given
 * credentials, which of its mechanisms accept them.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include <openssl/crypto.h>

#include "client.h"
#include "cmds.h"
#include "json.h"
#include "probe_device.h"

struct probe_auth {
    char mech[32];
    int tried;
    int ok;
    char text[CLIENT_TEXT_MAX + 128];
};

static void
probe_usage(FILE *f)
{
    fprintf(f,
"usage: postern probe smtp://HOST[:PORT] | smtps://HOST[:PORT]\n"
"                     [--user USER [--password-file FILE]]\n"
"                     [--cert FILE --key FILE]\n"
"                     [--cafile FILE] [--insecure] [--allow-plaintext-auth]\n"
"                     [--json] [-v]\n"
"       postern probe --as-device smtp://HOST[:PORT] | smtps://HOST[:PORT]\n"
"                     [--user USER [--password-file FILE]]\n"
"                     [--from ADDRESS] [--to ADDRESS] [-v]\n"
"\n"
"Show the banner, the EHLO keywords and AUTH mechanisms before and after\n"
"STARTTLS, the TLS version, cipher, certificate and channel binding.\n"
"With --user, also try each offered mechanism and report which accept\n"
"the password; with --cert and --key, EXTERNAL with that certificate.\n"
"\n"
"--as-device runs the session of a legacy device (TLS 1.0, AUTH LOGIN\n"
"before TLS, HELO then AUTH, bare LF line ends, a 1500-octet line),\n"
"one step at a time, and says which step would fail and which key of a\n"
"posternd [profile NAME] would fix it.  The message steps need --to (a\n"
"test message is delivered for each step that passes).\n");
}

/* Keywords of an EHLO reply (lines after the first), one per line. */
static void
print_keywords(FILE *f, const char *ehlo, const char *indent)
{
    const char *p = strchr(ehlo, '\n');

    while (p != NULL) {
        const char *line = p + 1, *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);

        if (len > 4)
            fprintf(f, "%s%.*s\n", indent, (int)(len - 4), line + 4);
        p = end;
    }
}

static void
json_list(FILE *f, const char *items, char sep)
{
    const char *p = items;
    int first = 1;

    fputc('[', f);
    while (*p != '\0') {
        const char *e = strchr(p, sep);
        size_t len = e != NULL ? (size_t)(e - p) : strlen(p);
        char tmp[1024];

        if (len > 0 && len < sizeof(tmp)) {
            memcpy(tmp, p, len);
            tmp[len] = '\0';
            if (!first)
                fputs(", ", f);
            json_str(f, tmp);
            first = 0;
        }
        if (e == NULL)
            break;
        p = e + 1;
    }
    fputc(']', f);
}

/* The EHLO keywords as a JSON list (dropping the "250-" prefixes). */
static void
json_keywords(FILE *f, const char *ehlo)
{
    char buf[CLIENT_TEXT_MAX];
    const char *p = strchr(ehlo, '\n');
    size_t n = 0;

    buf[0] = '\0';
    while (p != NULL && n + 2 < sizeof(buf)) {
        const char *line = p + 1, *end = strchr(line, '\n');
        size_t len = end != NULL ? (size_t)(end - line) : strlen(line);

        if (len > 4 && n + len < sizeof(buf))
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%.*s",
                                  n ? "\n" : "", (int)(len - 4), line + 4);
        p = end;
    }
    json_list(f, buf, '\n');
}

static void
print_human(const struct client_opts *co, const struct client_result *r,
            const char *user, const struct probe_auth *auth, size_t nauth)
{
    printf("server:    %s://%s:%s (%s)\n",
           co->url.implicit_tls ? "smtps" : "smtp", co->url.host,
           co->url.port, r->address[0] ? r->address : "?");
    if (r->greeting[0] != '\0')
        printf("banner:    %s\n", r->greeting);
    if (r->had_plain_ehlo) {
        printf("before TLS:\n  EHLO keywords:\n");
        print_keywords(stdout, r->ehlo_plain, "    ");
        printf("  mechanisms: %s\n",
               r->mechs_plain[0] ? r->mechs_plain : "(none)");
    }
    if (r->tls_protocol[0] != '\0') {
        printf("TLS:       %s, %s (%d bits)\n", r->tls_protocol,
               r->tls_cipher, r->tls_bits);
        if (r->have_cert) {
            printf("  subject:  %s\n", r->cert.subject);
            printf("  issuer:   %s\n", r->cert.issuer);
            printf("  expires:  %s\n", r->cert.not_after);
        }
        printf("  verified: %s%s\n", r->verify,
               co->insecure && strcmp(r->verify, "ok") != 0
                   ? " (accepted: --insecure)" : "");
        /* What SCRAM-*-PLUS would bind to (RFC 5802 §6). */
        printf("  channel binding: %s\n", r->channel_binding[0] != '\0'
                                               ? r->channel_binding
                                               : "none");
    } else if (!co->url.implicit_tls && r->had_plain_ehlo) {
        printf("TLS:       not offered (no STARTTLS)\n");
    }
    if (r->had_tls_ehlo) {
        printf("under TLS:\n  EHLO keywords:\n");
        print_keywords(stdout, r->ehlo_tls, "    ");
        printf("  mechanisms: %s\n",
               r->mechs_tls[0] ? r->mechs_tls : "(none)");
    }
    if (nauth > 0) {
        printf("authentication as %s:\n",
               user != NULL ? user : "the certificate's user");
        for (size_t i = 0; i < nauth; i++)
            printf("  %-14s %s\n", auth[i].mech,
                   auth[i].ok ? "ok" : auth[i].text);
    }
}

static void
print_json(const struct client_opts *co, const struct client_result *r,
           const char *user, const struct probe_auth *auth, size_t nauth,
           int ok, const char *error)
{
    printf("{\"server\": ");
    json_str(stdout, co->url.host);
    /* The number, not the text: "0587" is a port but not JSON. */
    printf(", \"port\": %lu, \"implicit_tls\": %s, \"address\": ",
           strtoul(co->url.port, NULL, 10),
           co->url.implicit_tls ? "true" : "false");
    json_str(stdout, r->address);
    printf(", \"ok\": %s", ok ? "true" : "false");
    if (error != NULL) {
        printf(", \"error\": ");
        json_str(stdout, error);
    }
    printf(", \"banner\": ");
    json_str(stdout, r->greeting);
    if (r->had_plain_ehlo) {
        printf(", \"plain\": {\"ehlo\": ");
        json_keywords(stdout, r->ehlo_plain);
        printf(", \"mechanisms\": ");
        json_list(stdout, r->mechs_plain, ' ');
        printf("}");
    }
    if (r->tls_protocol[0] != '\0') {
        printf(", \"tls\": {\"version\": ");
        json_str(stdout, r->tls_protocol);
        printf(", \"cipher\": ");
        json_str(stdout, r->tls_cipher);
        printf(", \"bits\": %d, \"verified\": %s, \"verify_result\": ",
               r->tls_bits, strcmp(r->verify, "ok") == 0 ? "true" : "false");
        json_str(stdout, r->verify);
        printf(", \"channel_binding\": ");
        if (r->channel_binding[0] != '\0')
            json_str(stdout, r->channel_binding);
        else
            printf("null");
        if (r->have_cert) {
            printf(", \"subject\": ");
            json_str(stdout, r->cert.subject);
            printf(", \"issuer\": ");
            json_str(stdout, r->cert.issuer);
            printf(", \"not_after\": ");
            json_str(stdout, r->cert.not_after);
        }
        printf("}");
    }
    if (r->had_tls_ehlo) {
        printf(", \"tls_ehlo\": {\"ehlo\": ");
        json_keywords(stdout, r->ehlo_tls);
        printf(", \"mechanisms\": ");
        json_list(stdout, r->mechs_tls, ' ');
        printf("}");
    }
    if (nauth > 0) {
        printf(", \"user\": ");
        if (user != NULL)
            json_str(stdout, user);
        else
            printf("null");
        printf(", \"auth\": {");
        for (size_t i = 0; i < nauth; i++) {
            if (i)
                printf(", ");
            json_str(stdout, auth[i].mech);
            printf(": {\"ok\": %s", auth[i].ok ? "true" : "false");
            if (!auth[i].ok) {
                printf(", \"error\": ");
                json_str(stdout, auth[i].text);
            }
            printf("}");
        }
        printf("}");
    }
    printf("}\n");
}

enum {
    OPT_USER = 256, OPT_PWFILE, OPT_CAFILE, OPT_INSECURE, OPT_PLAIN,
    OPT_JSON, OPT_TIMEOUT, OPT_CERT, OPT_KEY, OPT_DEVICE, OPT_FROM, OPT_TO,
};

/* postern probe --as-device (probe_device.h). */
static int
probe_as_device(const struct client_opts *co, const char *user,
                const char *pw, size_t pwlen, const char *from,
                const char *to)
{
    struct probe_device d = {
        .user = user,
        .password = (const uint8_t *)pw,
        .password_len = pwlen,
        /* MAIL FROM: the user's own address by default (sender_check =
         * strict), else the null reverse-path. */
        .from = from != NULL                             ? from
                : user != NULL && strchr(user, '@') != NULL ? user
                                                            : "",
        .to = to,
    };

    return probe_device_run(co, &d, stdout);
}

int
cmd_probe_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"user", required_argument, NULL, OPT_USER},
        {"password-file", required_argument, NULL, OPT_PWFILE},
        {"cafile", required_argument, NULL, OPT_CAFILE},
        {"cert", required_argument, NULL, OPT_CERT},
        {"key", required_argument, NULL, OPT_KEY},
        {"insecure", no_argument, NULL, OPT_INSECURE},
        {"allow-plaintext-auth", no_argument, NULL, OPT_PLAIN},
        {"json", no_argument, NULL, OPT_JSON},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"as-device", no_argument, NULL, OPT_DEVICE},
        {"from", required_argument, NULL, OPT_FROM},
        {"to", required_argument, NULL, OPT_TO},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct client_opts co = {0};
    struct pst_smtp_client_config cfg = {.probe = 1};
    struct client_result *r;
    struct probe_auth auth[16];
    const char *user = NULL, *pwfile = NULL, *from = NULL, *to = NULL;
    char err[512], *pw = NULL, desc[CLIENT_TEXT_MAX + 128];
    size_t pwlen = 0, nauth = 0;
    int c, json = 0, plain = 0, device = 0, rc;

    optind = 1;
    while ((c = getopt_long(argc, argv, "vh", opts, NULL)) != -1) {
        switch (c) {
        case OPT_USER: user = optarg; break;
        case OPT_PWFILE: pwfile = optarg; break;
        case OPT_CAFILE: co.cafile = optarg; break;
        case OPT_CERT: co.cert = optarg; break;
        case OPT_KEY: co.key = optarg; break;
        case OPT_INSECURE: co.insecure = 1; break;
        case OPT_PLAIN: plain = 1; break;
        case OPT_JSON: json = 1; break;
        case OPT_TIMEOUT: co.timeout = (unsigned)strtoul(optarg, NULL, 10);
            break;
        case OPT_DEVICE: device = 1; break;
        case OPT_FROM: from = optarg; break;
        case OPT_TO: to = optarg; break;
        case 'v': co.verbose = 1; break;
        case 'h':
            probe_usage(stdout);
            return EX_OK;
        default:
            probe_usage(stderr);
            return EX_USAGE;
        }
    }
    if (optind + 1 != argc || (device && json) ||
        (!device && (from != NULL || to != NULL))) {
        probe_usage(stderr);
        return EX_USAGE;
    }
    if (client_url_parse(argv[optind], &co.url, err, sizeof(err)) < 0) {
        fprintf(stderr, "postern probe: %s\n", err);
        return EX_USAGE;
    }
    if ((co.cert == NULL) != (co.key == NULL)) {
        fprintf(stderr, "postern probe: --cert and --key go together\n");
        return EX_USAGE;
    }
    if (user != NULL && client_password(pwfile, "Password: ", &pw, &pwlen,
                                        err, sizeof(err)) < 0) {
        fprintf(stderr, "postern probe: %s\n", err);
        return EX_USAGE;
    }
    if (device) {
        rc = probe_as_device(&co, user, pw, pwlen, from, to);
        if (pw != NULL)
            OPENSSL_clear_free(pw, pwlen + 1);
        return rc;
    }
    r = calloc(2, sizeof(*r));
    if (r == NULL) {
        if (pw != NULL)
            OPENSSL_clear_free(pw, pwlen + 1);
        return EX_OSERR;
    }
    rc = client_run(&co, &cfg, NULL, r);
    if (rc == 0 && (user != NULL || co.cert != NULL)) {
        /* One session per mechanism, each forced, as the device would. */
        const char *mechs = r->had_tls_ehlo ? r->mechs_tls : r->mechs_plain;
        const char *p = mechs;

        while (*p != '\0' && nauth < sizeof(auth) / sizeof(auth[0])) {
            size_t len = strcspn(p, " ");
            struct pst_sasl_client_config sasl = {
                .authcid = user, .password = (const uint8_t *)pw,
                .password_len = pwlen, .host = co.url.host,
            };
            struct pst_smtp_client_config acfg = {
                .probe = 1, .sasl = &sasl, .allow_plaintext_auth = plain,
                .tls_client_cert = co.cert != NULL,
            };
            struct probe_auth *a = &auth[nauth];
            const struct pst_sasl_mech *m;
            int external;

            snprintf(a->mech, sizeof(a->mech), "%.*s", (int)len, p);
            p += len;
            while (*p == ' ')
                p++;
            m = pst_sasl_mech_find(a->mech, strlen(a->mech));
            if (m == NULL)
                continue; /* one postern does not speak */
            /* EXTERNAL with the certificate; the rest with the
             * password. */
            external = (pst_sasl_mech_flags(m) & PST_MECH_EXTERNAL) != 0;
            if (external ? co.cert == NULL : user == NULL)
                continue;
            if (external)
                sasl = (struct pst_sasl_client_config){0};
            acfg.mech = a->mech;
            a->tried = 1;
            a->ok = client_run(&co, &acfg, NULL, &r[1]) == 0;
            if (!a->ok)
                client_describe(&r[1], a->text, sizeof(a->text));
            nauth++;
        }
    }
    if (pw != NULL)
        OPENSSL_clear_free(pw, pwlen + 1);
    if (rc != 0)
        client_describe(r, desc, sizeof(desc));
    if (json)
        print_json(&co, r, user, auth, nauth, rc == 0,
                   rc != 0 ? desc : NULL);
    else
        print_human(&co, r, user, auth, nauth);
    if (rc != 0) {
        if (!json)
            fprintf(stderr, "postern probe: %s\n", desc);
        rc = client_exit_code(r);
    } else if (user != NULL) {
        /* Credentials were to be tested: a script wants to know that
         * none of the mechanisms let the user in (sysexits: EX_NOPERM,
         * as send exits on a refused login). */
        int any = 0;

        for (size_t i = 0; i < nauth; i++)
            any |= auth[i].ok;
        if (!any)
            rc = EX_NOPERM;
    }
    free(r);
    return rc;
}
