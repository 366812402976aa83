/*
 * The server session's SASL security layer (RFC 4954 §4): once a
 * DIGEST-MD5 exchange with qop auth-int or auth-conf (RFC 2831 §2.3,
 * §2.4) has succeeded, every octet either way travels in protected
 * buffers.  The session keeps its line reader and replies as they are:
 * protected input is unwrapped into the input buffer before the reader
 * sees it (raw -> plain -> in), and replies are wrapped when the driver
 * asks for its output (out -> wire).  A buffer that fails its check
 * closes the session without a reply: nothing the client sends can be
 * trusted after it, and RFC 4954 gives no reply for it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include <postern/smtp.h>

#include "server_int.h"

size_t
pst__server_pending_out(const struct pst_smtp_server *s)
{
    size_t n = s->out.len - s->out_off;

    if (s->layer != NULL)
        n += s->layer->wire.len - s->layer->wire_off;
    return n;
}

void
pst__server_layer_free(struct pst_smtp_server *s)
{
    struct server_layer *ly = s->layer;

    if (ly == NULL)
        return;
    pst_sasl_layer_free(ly->sasl);
    pst_buf_clear(&ly->raw);
    pst_buf_clear(&ly->plain);
    pst_buf_clear(&ly->wire);
    free(ly);
    s->layer = NULL;
}

void
pst__server_layer_start(struct pst_smtp_server *s, struct pst_sasl_layer *l)
{
    size_t unread = s->in.len - s->rpos;

    s->layer = calloc(1, sizeof(*s->layer));
    if (s->layer == NULL) {
        pst_sasl_layer_free(l);
        s->broken = PST_ENOMEM;
        return;
    }
    s->layer->sasl = l;
    pst_buf_init(&s->layer->raw, SERVER_LAYER_RAW, 1);
    pst_buf_init(&s->layer->plain, SERVER_LAYER_MAXBUF, 1);
    pst_buf_init(&s->layer->wire, SERVER_WIRE_MAX, 0);
    s->layer->plain_off = 0;
    s->layer->wire_off = 0;
    /* RFC 4954 §4: "For the server, it takes effect immediately following
     * the CRLF of its success reply": what is queued (the 235) goes out
     * in clear, before every protected buffer. */
    if (s->out.len > s->out_off &&
        pst_buf_append(&s->layer->wire, s->out.data + s->out_off,
                       s->out.len - s->out_off) < 0) {
        s->broken = PST_ENOMEM;
        return;
    }
    pst_buf_reset(&s->out);
    s->out_off = 0;
    /* "For the client, it takes effect on the octet immediately following
     * the CRLF that concludes the last response": whatever followed that
     * line in the input is protected already. */
    if (unread > 0 &&
        pst_buf_append(&s->layer->raw, s->in.data + s->rpos, unread) < 0) {
        s->broken = PST_ENOMEM;
        return;
    }
    pst__server_drop_input(s);
    /* "When a security layer takes effect, the SMTP protocol is reset to
     * the initial state (the state in SMTP after a server issues a 220
     * service ready greeting).  The server MUST discard any knowledge
     * obtained from the client, such as the argument to the EHLO command,
     * which was not obtained from the SASL negotiation itself."  The
     * authentication is of the SASL negotiation: it stays. */
    pst__server_restart(s);
}

size_t
pst__server_layer_feed(struct pst_smtp_server *s, const uint8_t *in,
                       size_t len)
{
    struct server_layer *ly = s->layer;
    size_t n = ly->raw.max - ly->raw.len;

    if (n > len)
        n = len;
    if (n > 0 && pst_buf_append(&ly->raw, in, n) < 0) {
        s->broken = PST_ENOMEM;
        return 0;
    }
    return n;
}

/* A buffer was refused: the layer is over, and so is the session. */
static void
server_layer_fail(struct pst_smtp_server *s, int rc)
{
    struct server_layer *ly = s->layer;
    struct pst_smtp_event *ev;

    snprintf(s->reason, sizeof(s->reason), "security layer: %s",
             rc == PST_EFORGED ? "a buffer failed its integrity check "
                                 "(MAC or sequence number)"
             : rc == PST_ELIMIT ? "a buffer larger than our maxbuf"
                                : "a malformed buffer");
    /* Replies queued before the bad buffer still go out. */
    pst__server_layer_seal(s);
    pst_buf_reset(&ly->raw);
    pst_buf_reset(&ly->plain);
    ly->plain_off = 0;
    pst__server_drop_input(s);
    pst__server_end_sasl(s);
    ev = pst__server_event(s, PST_SMTP_EV_CLOSE, 0);
    ev->error = rc;
    ev->reason = s->reason;
    pst__server_enter_state(s, PST_SMTP_STATE_CLOSED);
    s->flush = 1;
}

int
pst__server_layer_pull(struct pst_smtp_server *s)
{
    struct server_layer *ly = s->layer;
    int moved = 0;

    while (!s->broken && s->state != PST_SMTP_STATE_CLOSED) {
        size_t used = 0, n;
        int rc;

        if (ly->plain_off < ly->plain.len) {
            /* Make room at the front, as feed() does. */
            if (s->rpos > 0) {
                memmove(s->in.data, s->in.data + s->rpos,
                        s->in.len - s->rpos);
                s->in.len -= s->rpos;
                s->in.data[s->in.len] = '\0';
                s->rpos = 0;
            }
            n = s->in.max - s->in.len;
            if (n > ly->plain.len - ly->plain_off)
                n = ly->plain.len - ly->plain_off;
            if (n == 0)
                break;
            if (pst_buf_append(&s->in, ly->plain.data + ly->plain_off, n) <
                0) {
                s->broken = PST_ENOMEM;
                break;
            }
            ly->plain_off += n;
            moved = 1;
            if (ly->plain_off < ly->plain.len)
                break;
            pst_buf_reset(&ly->plain);
            ly->plain_off = 0;
            /* As the input buffer: a burst gives its memory back. */
            if (ly->plain.cap > SERVER_BUF_KEEP)
                (void)pst_buf_shrink(&ly->plain, 0);
            continue;
        }
        if (ly->raw.len == 0) {
            if (ly->raw.cap > SERVER_BUF_KEEP)
                (void)pst_buf_shrink(&ly->raw, 0);
            break;
        }
        rc = pst_sasl_layer_unwrap(ly->sasl, ly->raw.data, ly->raw.len, &used,
                                   &ly->plain);
        if (rc == PST_ENOMEM) {
            s->broken = PST_ENOMEM;
            break;
        }
        if (rc < 0) {
            server_layer_fail(s, rc);
            return 1;
        }
        if (rc == 0)
            break; /* not a whole buffer yet */
        OPENSSL_cleanse(ly->raw.data, used);
        memmove(ly->raw.data, ly->raw.data + used, ly->raw.len - used);
        ly->raw.len -= used;
        ly->raw.data[ly->raw.len] = '\0';
        moved = 1;
    }
    return moved;
}

void
pst__server_layer_seal(struct pst_smtp_server *s)
{
    struct server_layer *ly = s->layer;
    int rc;

    if (s->layer == NULL || s->out.len == s->out_off || s->broken)
        return;
    /* One call, one or more buffers: none larger than the client's
     * maxbuf (pst_sasl_layer_wrap() cuts them). */
    rc = pst_sasl_layer_wrap(ly->sasl, s->out.data + s->out_off,
                             s->out.len - s->out_off, &ly->wire);
    pst_buf_reset(&s->out);
    s->out_off = 0;
    if (rc < 0)
        s->broken = PST_ENOMEM;
}

unsigned
pst_smtp_server_layer(const struct pst_smtp_server *s, unsigned *cipher)
{
    if (cipher != NULL)
        *cipher = s != NULL && s->layer != NULL
                      ? pst_sasl_layer_cipher(s->layer->sasl)
                      : 0;
    return s != NULL && s->layer != NULL ? pst_sasl_layer_qop(s->layer->sasl)
                                         : 0;
}
