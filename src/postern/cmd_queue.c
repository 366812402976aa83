/*
 * postern queue -c CONF list | show ID | flush | delete ID
 *
 * What the relay's queue holds (DESIGN.md "Routing, relay and the
 * queue").  It reads the queue files named by posternd's configuration,
 * and asks a running posternd (its control socket, SPOOL/posternd.sock)
 * for what only it knows: which message is being sent, which relay waits
 * for a retry and why.  flush needs a running posternd; delete goes
 * through it when it runs (so no attempt is cut in half), else removes
 * the files itself.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include <postern/buf.h>

#include "cmds.h"
#include "config.h"
#include "control_client.h"
#include "date.h"
#include "queue_file.h"

static void
usage(FILE *f)
{
    fprintf(f, "usage: postern queue -c CONF list\n"
               "       postern queue -c CONF show ID\n"
               "       postern queue -c CONF flush\n"
               "       postern queue -c CONF delete ID\n");
}

/* "3d", "5h", "12m", "40s". */
static void
age_text(int64_t secs, char *out, size_t n)
{
    if (secs < 0)
        secs = 0;
    if (secs >= 86400)
        snprintf(out, n, "%lldd", (long long)(secs / 86400));
    else if (secs >= 3600)
        snprintf(out, n, "%lldh", (long long)(secs / 3600));
    else if (secs >= 60)
        snprintf(out, n, "%lldm", (long long)(secs / 60));
    else
        snprintf(out, n, "%llds", (long long)secs);
}

/* What the running posternd says of one message (from "list"). */
struct live {
    char id[QUEUE_ID_MAX + 1];
    char state[16];
    char *why;                     /* decoded, owned */
};

static void
live_free(struct live *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i].why);
    free(v);
}

/* Parse "ID STATE WHY" lines (WHY %XX-encoded, "-" for none). */
static int
live_parse(const char *text, struct live **out, size_t *n)
{
    struct live *v = NULL;
    size_t k = 0;

    *out = NULL;
    *n = 0;
    while (*text != '\0') {
        const char *nl = strchr(text, '\n');
        size_t len = nl != NULL ? (size_t)(nl - text) : strlen(text);
        char line[2048], id[QUEUE_ID_MAX + 1], state[16], why[1024];
        struct live *nv;

        snprintf(line, sizeof(line), "%.*s", (int)len, text);
        text += len + (nl != NULL);
        if (sscanf(line, "%40s %15s %1023s", id, state, why) != 3)
            continue;
        nv = realloc(v, (k + 1) * sizeof(*v));
        if (nv == NULL)
            break;
        v = nv;
        snprintf(v[k].id, sizeof(v[k].id), "%s", id);
        snprintf(v[k].state, sizeof(v[k].state), "%s", state);
        v[k].why = control_decode_word(why);
        k++;
    }
    *out = v;
    *n = k;
    return 0;
}

static const struct live *
live_find(const struct live *v, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i].id, id) == 0)
            return &v[i];
    return NULL;
}

/* State from the files alone: deferred once an attempt failed. */
static const char *
file_state(const struct queue_env *e, int64_t now)
{
    return e->attempts > 0 || e->next_attempt > now ? "deferred" : "queued";
}

static int
cmd_list(const struct config *cfg, int running, const char *live_text)
{
    struct live *live = NULL;
    size_t nlive = 0, n = 0;
    char **ids;
    int64_t now = (int64_t)time(NULL);

    if (queue_file_list(cfg->queue, &ids, &n) < 0) {
        fprintf(stderr, "postern: queue %s: %s\n", cfg->queue,
                strerror(errno));
        return EX_NOINPUT;
    }
    if (running)
        live_parse(live_text, &live, &nlive);
    for (size_t i = 0; i < n; i++) {
        struct queue_env *e;
        const struct live *l = live_find(live, nlive, ids[i]);
        char err[256], age[32];
        const char *state, *why;

        if (queue_file_load(cfg->queue, ids[i], &e, err, sizeof(err)) < 0)
            continue; /* removed meanwhile */
        age_text(now - e->arrival, age, sizeof(age));
        state = l != NULL ? l->state : file_state(e, now);
        why = l != NULL && strcmp(l->why, "-") != 0 ? l->why
              : e->last_reply != NULL                ? e->last_reply
                                                     : "-";
        printf("%s %s %s <%s> ->", e->id, age, state, e->sender);
        for (size_t r = 0, first = 1; r < e->nrcpt; r++) {
            if (e->rcpt[r].state != QUEUE_RCPT_PENDING)
                continue;
            printf("%s%s", first ? " " : ", ", e->rcpt[r].addr);
            first = 0;
        }
        printf(" | %s\n", why);
        queue_env_free(e);
    }
    if (n == 0)
        printf("The queue is empty.\n");
    live_free(live, nlive);
    queue_file_ids_free(ids, n);
    return EX_OK;
}

static const char *
rcpt_state(enum queue_rcpt_state st)
{
    return st == QUEUE_RCPT_SENT ? "sent" : st == QUEUE_RCPT_FAILED
                                                ? "failed"
                                                : "pending";
}

static int
cmd_show(const struct config *cfg, const char *id, int running,
         const char *live_text)
{
    struct queue_env *e;
    struct live *live = NULL;
    size_t nlive = 0;
    const struct live *l;
    char err[512], date[DATE_RFC5322_MAX];
    int64_t now = (int64_t)time(NULL);

    if (!queue_id_valid(id) ||
        queue_file_load(cfg->queue, id, &e, err, sizeof(err)) < 0) {
        fprintf(stderr, "postern: %s: not in the queue\n", id);
        return EX_DATAERR;
    }
    if (running)
        live_parse(live_text, &live, &nlive);
    l = live_find(live, nlive, id);
    date_rfc5322((time_t)e->arrival, date, sizeof(date));
    printf("id: %s\narrival: %s\nsender: <%s>\nuser: %s\nrelay: %s\n"
           "state: %s\nattempts: %u\n",
           e->id, date, e->sender, e->user[0] ? e->user : "-", e->relay,
           l != NULL ? l->state : file_state(e, now), e->attempts);
    if (e->next_attempt > now) {
        date_rfc5322((time_t)e->next_attempt, date, sizeof(date));
        printf("next attempt: %s\n", date);
    }
    if (e->last_reply != NULL)
        printf("last reply: %s\n", e->last_reply);
    if (l != NULL && strcmp(l->why, "-") != 0)
        printf("relay says: %s\n", l->why);
    for (size_t r = 0; r < e->nrcpt; r++) {
        printf("rcpt: <%s> %s", e->rcpt[r].addr,
               rcpt_state(e->rcpt[r].state));
        if (e->rcpt[r].reply != NULL)
            printf(" (%u %s)", e->rcpt[r].code, e->rcpt[r].reply);
        printf("\n");
    }
    if (e->bounced)
        printf("bounce: sent\n");
    queue_env_free(e);
    live_free(live, nlive);
    return EX_OK;
}

int
cmd_queue_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *conf = NULL, *verb, *id = NULL;
    struct config *cfg;
    struct pst_buf answer;
    char err[CONFIG_ERR_MAX];
    int opt, running, rc;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c': conf = optarg; break;
        case 'h': usage(stdout); return EX_OK;
        default: usage(stderr); return EX_USAGE;
        }
    }
    if (conf == NULL || optind >= argc) {
        usage(stderr);
        return EX_USAGE;
    }
    verb = argv[optind++];
    if (strcmp(verb, "show") == 0 || strcmp(verb, "delete") == 0) {
        if (optind >= argc) {
            usage(stderr);
            return EX_USAGE;
        }
        id = argv[optind++];
    } else if (strcmp(verb, "list") != 0 && strcmp(verb, "flush") != 0) {
        usage(stderr);
        return EX_USAGE;
    }
    if (optind != argc) {
        usage(stderr);
        return EX_USAGE;
    }
    if (config_load(conf, &cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "postern: %s\n", err);
        return EX_CONFIG;
    }
    if (cfg->queue == NULL) {
        fprintf(stderr, "postern: %s: no relay is configured, so there is "
                "no queue\n", conf);
        config_free(cfg);
        return EX_CONFIG;
    }
    pst_buf_init(&answer, 64u << 20, 0);
    if (strcmp(verb, "delete") == 0 || strcmp(verb, "flush") == 0) {
        char cmd[128];

        snprintf(cmd, sizeof(cmd), "%s%s%s", verb, id ? " " : "",
                 id ? id : "");
        running = control_call(cfg->spool, cmd, &answer, err, sizeof(err));
    } else {
        running = control_call(cfg->spool, "list", &answer, err,
                               sizeof(err));
    }
    if (running < 0) {
        fprintf(stderr, "postern: %s\n", err);
        rc = EX_UNAVAILABLE;
    } else if (strcmp(verb, "list") == 0) {
        rc = cmd_list(cfg, running, (const char *)answer.data);
    } else if (strcmp(verb, "show") == 0) {
        rc = cmd_show(cfg, id, running, (const char *)answer.data);
    } else if (strcmp(verb, "flush") == 0) {
        if (!running) {
            fprintf(stderr, "postern: posternd is not running (no %s/%s): "
                    "the queue goes when it starts\n", cfg->spool,
                    CONTROL_SOCKET_NAME);
            rc = EX_UNAVAILABLE;
        } else {
            fputs((const char *)answer.data, stdout);
            rc = strncmp((const char *)answer.data, "error", 5) == 0
                     ? EX_SOFTWARE
                     : EX_OK;
        }
    } else if (running) { /* delete */
        fputs((const char *)answer.data, stdout);
        rc = strncmp((const char *)answer.data, "error", 5) == 0
                 ? EX_DATAERR
                 : EX_OK;
    } else if (!queue_id_valid(id) ||
               queue_file_remove(cfg->queue, id) < 0) {
        fprintf(stderr, "postern: %s: not in the queue\n", id);
        rc = EX_DATAERR;
    } else {
        printf("deleted\n");
        rc = EX_OK;
    }
    pst_buf_clear(&answer);
    config_free(cfg);
    return rc;
}
