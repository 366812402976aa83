/*
 * posternd - a relay connection sends the queued message (relay_conn.c
 * has the connection and its session): the file read on the thread pool
 * in RC_CHUNK pieces, fed to the client session (which dot-stuffs it),
 * reading paused while more than RC_WRITE_HIGH octets wait to be
 * written; the header section completed on its way out (RFC 6409 §8:
 * Date, Message-ID) and, with rewrite_sender, its sender rewritten.
 */
#include <fcntl.h>
#include <stdlib.h>

#include <postern/smtp_client.h>

#include "header.h"
#include "relay_conn_int.h"

/* Feed p[0..n) of message to the session (last: the end). */
static int
rc_feed_data(struct relay_conn *c, const uint8_t *p, size_t n, int last)
{
    int rc = pst_smtp_client_data(c->s, p, n, last);

    if (rc == PST_ELIMIT) {
        /* The session's output is full: send, then feed again. */
        if (rc_flush(c) < 0)
            return -1;
        rc = pst_smtp_client_data(c->s, p, n, last);
    }
    if (rc < 0)
        return -1;
    return rc_flush(c);
}

/*
 * The header section on its way out: gather it (whole lines only tell
 * where it ends), then send it with what a submission server adds when
 * missing (RFC 6409 §8.2 Date, §8.3 Message-ID: add_date, add_msgid)
 * and, with rewrite_from, the sender rewritten (header_rewrite_sender()),
 * then what followed it.  Returns 1 while more is needed, 0 when sent,
 * -1 on failure.
 */
static int
rc_send_header(struct relay_conn *c, const uint8_t *p, size_t n)
{
    const struct relay_job *j = c->job;
    size_t whole, end, fields_end;
    unsigned fields;
    struct pst_buf out;
    int rc = 0;

    if (pst_buf_append(&c->hdr, p, n) < 0) {
        /* Larger than RC_HEADER_MAX: sent as it is (logged). */
        rc_log(c, LOG_LEVEL_WARN, "relay_header_unchanged", "qid", j->id,
               "why", "header section too large");
        c->hdr_done = 1;
        rc = rc_feed_data(c, c->hdr.data, c->hdr.len, 0);
        if (rc == 0)
            rc = rc_feed_data(c, p, n, c->eof);
        pst_buf_clear(&c->hdr);
        return rc;
    }
    for (whole = c->hdr.len; whole > 0 && c->hdr.data[whole - 1] != '\n';)
        whole--;
    end = header_scan(c->hdr.data, whole, &fields);
    if (end == whole && !c->eof)
        return 1;
    if (c->eof)
        end = header_scan(c->hdr.data, c->hdr.len, &fields);
    /* The fields alone, before the empty line that ends them. */
    fields_end = end;
    if (fields_end >= 2 && c->hdr.data[fields_end - 1] == '\n' &&
        c->hdr.data[fields_end - 2] == '\r' &&
        (fields_end == 2 || c->hdr.data[fields_end - 3] == '\n'))
        fields_end -= 2;
    pst_buf_init(&out, RC_HEADER_MAX * 2, 0);
    if (fields_end == 0 && end == 0) {
        /* No header section at all: the additions make one. */
        rc = header_add_missing(0, j->add_date, j->add_msgid, &out);
        if (rc == 0 && j->rewrite_from != NULL)
            rc = pst_buf_printf(&out, "From: <%s>\r\n", j->rewrite_from);
        if (rc == 0)
            rc = pst_buf_append_str(&out, "\r\n");
    } else {
        if (j->rewrite_from != NULL)
            rc = header_rewrite_sender(c->hdr.data, fields_end,
                                       j->rewrite_from, &out);
        else
            rc = pst_buf_append(&out, c->hdr.data, fields_end);
        if (rc == 0)
            rc = header_add_missing(fields, j->add_date, j->add_msgid,
                                    &out);
    }
    if (rc == 0)
        rc = pst_buf_append(&out, c->hdr.data + fields_end,
                            c->hdr.len - fields_end);
    c->hdr_done = 1;
    if (rc == 0)
        rc = rc_feed_data(c, out.data, out.len, c->eof);
    pst_buf_clear(&out);
    pst_buf_clear(&c->hdr);
    return rc < 0 ? -1 : 0;
}

static void
on_file_read(uv_fs_t *req)
{
    struct relay_conn *c = req->data;
    ssize_t n = req->result;
    int rc;

    uv_fs_req_cleanup(req);
    c->reqs--;
    if (c->state == RC_CLOSING) {
        rc_close(c, c->end, c->end_code, c->end_reply); /* finish */
        return;
    }
    if (n < 0) {
        rc_log(c, LOG_LEVEL_WARN, "relay_read_failed", "qid", c->job->id,
               "error", uv_strerror((int)n));
        rc_close(c, RELAY_END_BROKEN, 0, "cannot read the queued message");
        return;
    }
    c->eof = n == 0;
    c->file_off += (uint64_t)n;
    if (!c->hdr_done)
        rc = rc_send_header(c, c->chunk, (size_t)n);
    else
        rc = rc_feed_data(c, c->chunk, (size_t)n, c->eof);
    if (rc < 0) {
        rc_close(c, RELAY_END_BROKEN, 0, "session refused the message data");
        return;
    }
    if (c->eof) {
        uv_fs_t close_req;

        uv_fs_close(NULL, &close_req, c->fd, NULL); /* a read-only fd */
        uv_fs_req_cleanup(&close_req);
        c->fd = -1;
        c->data_phase = 0;
        rc_pump(c);
        return;
    }
    if (c->write_queue < RC_WRITE_HIGH)
        rc_read_file(c);
}

void
rc_read_file(struct relay_conn *c)
{
    uv_buf_t b = uv_buf_init((char *)c->chunk, sizeof(c->chunk));

    c->fs.data = c;
    if (uv_fs_read(c->loop, &c->fs, c->fd, &b, 1, (int64_t)c->file_off,
                   on_file_read) < 0) {
        rc_close(c, RELAY_END_BROKEN, 0, "cannot read the queued message");
        return;
    }
    c->reqs++;
}

static void
on_file_open(uv_fs_t *req)
{
    struct relay_conn *c = req->data;
    ssize_t fd = req->result;

    uv_fs_req_cleanup(req);
    c->reqs--;
    if (c->state == RC_CLOSING) {
        if (fd >= 0) {
            uv_fs_t close_req;

            uv_fs_close(NULL, &close_req, (uv_file)fd, NULL);
            uv_fs_req_cleanup(&close_req);
        }
        rc_close(c, c->end, c->end_code, c->end_reply);
        return;
    }
    if (fd < 0) {
        rc_log(c, LOG_LEVEL_WARN, "relay_read_failed", "qid", c->job->id,
               "error", uv_strerror((int)fd));
        rc_close(c, RELAY_END_BROKEN, 0, "cannot open the queued message");
        return;
    }
    c->fd = (int)fd;
    c->file_off = c->job->offset;
    rc_read_file(c);
}

/* DATA was accepted (354): send the message from job->offset. */
void
rc_start_data(struct relay_conn *c)
{
    c->data_phase = 1;
    c->eof = 0;
    c->hdr_done = 0;
    pst_buf_init(&c->hdr, RC_HEADER_MAX, 0);
    c->fs.data = c;
    if (uv_fs_open(c->loop, &c->fs, c->job->path,
                   O_RDONLY | O_NOFOLLOW | O_CLOEXEC, 0, on_file_open) < 0) {
        rc_close(c, RELAY_END_BROKEN, 0, "cannot open the queued message");
        return;
    }
    c->reqs++;
}
