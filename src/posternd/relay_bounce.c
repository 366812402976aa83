/*
 * posternd - the relay's bounces (see relay_int.h): an RFC 3464 report
 * of a message's failed recipients, delivered here or queued.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <postern/rand.h>

#include "bounce.h"
#include "date.h"
#include "deliver_maildir.h"
#include "header.h"
#include "relay_int.h"

/* The sender's domain is local: the bounce is delivered here. */
int
relay_domain_local(const struct config *cfg, const char *addr)
{
    const char *at = strrchr(addr, '@');

    if (at == NULL)
        return cfg->local_domains.n == 0 && cfg->n_relays == 0;
    for (size_t i = 0; i < cfg->local_domains.n; i++)
        if (strcasecmp(at + 1, cfg->local_domains.v[i]) == 0)
            return 1;
    return 0;
}

/* Read the header section of the message file (from offset). */
static int
read_headers(const char *queue, const struct queue_env *e,
             struct pst_buf *out)
{
    uint8_t buf[8192];
    int fd = queue_file_open_message(queue, e->id);
    off_t off = (off_t)e->offset;
    unsigned fields;

    if (fd < 0)
        return -1;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof(buf), off);
        size_t end;

        if (n <= 0 || pst_buf_append(out, buf, (size_t)n) < 0)
            break;
        off += n;
        end = header_scan(out->data, out->len, &fields);
        if (end < out->len) {
            out->len = end;
            break;
        }
    }
    close(fd);
    return 0;
}

/*
 * Queue (or deliver) the bounce of msg's failed recipients: an RFC 3464
 * report from <> to the sender, delivered here when the sender's domain
 * is local, else queued for the message's own relay.  Blocking.
 */
int
relay_bounce_queue(struct relay_work *w, const struct queue_env *e)
{
    struct bounce_rcpt *br;
    struct bounce_info bi = {0};
    struct pst_buf hdr, out;
    char arrival[64], date[64], mid[128], boundary[96], qid[QUEUE_ID_MAX + 1];
    char (*last)[64];
    struct maildir_msg *mm;
    size_t n = 0;
    uint8_t rnd[8];
    int rc;

    br = calloc(e->nrcpt, sizeof(*br));
    last = calloc(e->nrcpt, sizeof(*last));
    if (br == NULL || last == NULL) {
        free(br);
        free(last);
        return PST_ENOMEM;
    }
    for (size_t i = 0; i < e->nrcpt; i++) {
        const struct queue_rcpt *r = &e->rcpt[i];

        if (r->state != QUEUE_RCPT_FAILED)
            continue;
        br[n].addr = r->addr;
        br[n].code = r->code;
        br[n].reply = r->reply;
        if (r->when > 0) {
            date_rfc5322((time_t)r->when, last[n], sizeof(last[n]));
            br[n].last_attempt = last[n];
        }
        n++;
    }
    pst_random_default(NULL, rnd, sizeof(rnd));
    date_rfc5322((time_t)e->arrival, arrival, sizeof(arrival));
    date_rfc5322(time(NULL), date, sizeof(date));
    snprintf(boundary, sizeof(boundary), "%s/%02x%02x%02x%02x/%s", e->id,
             rnd[0], rnd[1], rnd[2], rnd[3], "bounce");
    pst_buf_init(&hdr, RELAY_HEADERS_MAX, 0);
    pst_buf_init(&out, RELAY_HEADERS_MAX + (1u << 20), 0);
    read_headers(w->queue, e, &hdr);
    rc = maildir_begin(w->spool, w->hostname, &mm);
    if (rc == 0) {
        snprintf(qid, sizeof(qid), "%s", maildir_qid(mm));
        snprintf(mid, sizeof(mid), "<%s.bounce@%s>", qid, w->hostname);
        bi = (struct bounce_info){
            .hostname = w->hostname, .queue_id = e->id,
            .sender = e->sender, .arrival_date = arrival, .date = date,
            .message_id = mid, .boundary = boundary,
            .remote_mta = w->remote, .rcpt = br, .nrcpt = n,
            .headers = hdr.data, .headers_len = hdr.len,
        };
        /* RFC 5321 §4.4: the delivering server records the envelope
         * sender: <> for a bounce. */
        if (w->sender_local)
            rc = pst_buf_append_str(&out, "Return-Path: <>\r\n");
        if (rc == 0)
            rc = bounce_compose(&bi, &out);
        if (rc == 0)
            rc = maildir_append(mm, out.data, out.len);
        if (rc == 0 && w->sender_local) {
            struct pst_buf path;

            pst_buf_init(&path, PATH_MAX, 0);
            rc = config_mailbox_expand(w->mailbox, e->sender,
                                       strlen(e->sender), &path);
            if (rc == 0) {
                const char *paths[1] = {(const char *)path.data};

                rc = maildir_deliver(mm, w->mail_root, paths, 1, NULL);
            }
            pst_buf_clear(&path);
        } else if (rc == 0) {
            struct queue_rcpt to = {.addr = e->sender};
            struct queue_env be = {
                .arrival = (int64_t)time(NULL), .sender = "",
                .relay = e->relay, .user = "", .offset = 0,
                .rcpt = &to, .nrcpt = 1,
            };
            struct maildir_queue q = {.dir = w->queue, .env = &be};

            rc = maildir_deliver(mm, NULL, NULL, 0, &q);
        }
        if (rc != 0)
            snprintf(w->err, sizeof(w->err), "%s", maildir_error(mm));
        if (rc == 0 && !w->sender_local)
            snprintf(w->id, sizeof(w->id), "%s", qid); /* to load */
        maildir_free(mm);
    } else {
        snprintf(w->err, sizeof(w->err), "spool: %s", strerror(errno));
    }
    pst_buf_clear(&hdr);
    pst_buf_clear(&out);
    free(br);
    free(last);
    if (rc == 0)
        rc = queue_file_append(w->queue, e->id, QUEUE_REC_BOUNCED, 0,
                               (int64_t)time(NULL), 0, 0, NULL);
    return rc;
}

