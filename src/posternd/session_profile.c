/*
 * posternd - a connection's compatibility profile (session.h, DESIGN.md
 * "Per-client compatibility profiles"): picked at accept from the
 * client's address and the listener, before anything is sent, so that
 * its TLS context answers the ClientHello and its session settings the
 * first command; each exception the session uses is noted, logged once
 * when the session ends (event=compat) and counted (profile.h).  Here
 * too: add_missing_headers, which holds back the header section of a
 * message until its end to add Date and Message-ID (RFC 6409 §8).
 */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "date.h"
#include "header.h"
#include "log.h"
#include "profile.h"
#include "session.h"

void
conn_profile_pick(struct conn *c, struct pst_smtp_server_config *scfg)
{
    const struct config_listener *l = &c->sc->cfg->listeners[c->lidx];

    c->profile = config_profile_match(c->sc->cfg, l,
                                      (const struct sockaddr *)&c->peer_sa);
    snapshot_session_config(c->sc, c->lidx, c->profile, scfg);
    if (c->profile != NULL)
        log_event(LOG_LEVEL_INFO, "profile", "sid", c->sid, "peer", c->peer,
                  "listener", l->name, "profile", c->profile->name, NULL);
}

struct tls_ctx *
conn_profile_tls(const struct conn *c)
{
    return snapshot_client_tls(c->sc, c->profile);
}

void
conn_profile_tls_up(struct conn *c)
{
    const struct config *cfg = c->sc->cfg;
    enum tls_version v, min = cfg->tls_min_version == TLS_VERSION_DEFAULT
                                  ? TLS_VERSION_1_2
                                  : cfg->tls_min_version;

    if (c->profile == NULL || c->profile->tls_min_version ==
                                  TLS_VERSION_DEFAULT)
        return;
    /* OpenSSL names the versions as tls_min_version does ("TLSv1"). */
    if (tls_version_parse(tls_protocol(c->tls), &v) == 0 && v < min)
        c->profile_used |= PROFILE_USED_TLS_MIN_VERSION;
}

void
conn_profile_auth(struct conn *c, const struct pst_smtp_event *ev)
{
    const struct config_listener *l = &c->sc->cfg->listeners[c->lidx];
    const struct pst_sasl_mech *m;

    if (c->profile == NULL || ev->mech == NULL ||
        (c->tls != NULL && tls_established(c->tls)))
        return;
    /* Before TLS, a mechanism the listener's own auth_before_tls would
     * not offer (RFC 4954 §4: 504 5.5.4) was offered for the profile. */
    m = pst_sasl_mech_find(ev->mech, strlen(ev->mech));
    if (m != NULL && !config_listener_offers(l, m, 0))
        c->profile_used |= PROFILE_USED_AUTH_BEFORE_TLS;
}

/* --- add_missing_headers ------------------------------------------------- */

void
conn_profile_data_begin(struct conn *c)
{
    conn_profile_data_reset(c);
    if (c->profile == NULL || !c->profile->add_missing_headers ||
        c->msg == NULL)
        return;
    pst_buf_init(&c->hdr, PROFILE_HDR_MAX, 0);
    c->hdr_holding = CONN_HDR_HOLDING;
}

void
conn_profile_data_reset(struct conn *c)
{
    c->hdr_holding = CONN_HDR_OFF;
    pst_buf_clear(&c->hdr);
}

/* The section held back is whole (or the message ended in it): write it
 * with Date and Message-ID where absent. */
static int
conn_profile_hdr_flush(struct conn *c)
{
    char date[DATE_RFC5322_MAX], msgid[MAILDIR_QID_LEN + 300];
    struct pst_buf out;
    unsigned added = 0;
    int rc;

    c->hdr_holding = CONN_HDR_OFF;
    /* RFC 6409 §8.2: the time the message arrived; §8.3: an id unique
     * to this server: the queue id at the host name. */
    if (date_rfc5322(time(NULL), date, sizeof(date)) != 0)
        date[0] = '\0';
    snprintf(msgid, sizeof(msgid), "<%s@%s>", maildir_qid(c->msg),
             c->sc->cfg->hostname);
    pst_buf_init(&out, PROFILE_HDR_MAX + PROFILE_HDR_ADDED_MAX, 0);
    rc = date[0] != '\0' ? profile_hdr_fix(c->hdr.data, c->hdr.len, date,
                                           msgid, &out, &added)
                         : PST_EINVAL;
    if (rc == 0) {
        rc = conn_data_put(c, out.data, out.len);
        /* A use once the message is whole (conn_profile_data_end()). */
        if (added != 0)
            c->hdr_holding = CONN_HDR_ADDED;
    } else {
        /* The message goes as it came rather than not at all. */
        log_event(LOG_LEVEL_WARN, "compat_headers_unchanged", "sid", c->sid,
                  "profile", c->profile->name, "error", pst_errname(rc),
                  NULL);
        rc = conn_data_put(c, c->hdr.data, c->hdr.len);
    }
    pst_buf_clear(&out);
    pst_buf_clear(&c->hdr);
    return rc < 0 ? -1 : 0;
}

int
conn_profile_data(struct conn *c, const uint8_t *p, size_t len)
{
    if (c->hdr_holding != CONN_HDR_HOLDING)
        return conn_data_put(c, p, len) < 0 ? -1 : 0;
    if (c->hdr.len + len > PROFILE_HDR_MAX) {
        /* Bounded: a header section this long passes as it is. */
        log_event(LOG_LEVEL_INFO, "compat_headers_unchanged", "sid", c->sid,
                  "profile", c->profile->name, "reason",
                  "header section over 64 KiB", NULL);
        c->hdr_holding = CONN_HDR_OFF;
        if (conn_data_put(c, c->hdr.data, c->hdr.len) < 0)
            return -1;
        pst_buf_clear(&c->hdr);
        return conn_data_put(c, p, len) < 0 ? -1 : 0;
    }
    if (profile_hdr_classify(p, len, c->hdr.len) == PROFILE_HDR_FIELD)
        return pst_buf_append(&c->hdr, p, len) < 0 ? -1 : 0;
    if (pst_buf_append(&c->hdr, p, len) < 0)
        return -1;
    return conn_profile_hdr_flush(c);
}

int
conn_profile_data_end(struct conn *c)
{
    int rc = 0;

    if (c->hdr_holding == CONN_HDR_HOLDING)
        rc = conn_profile_hdr_flush(c);
    if (rc == 0 && c->hdr_holding == CONN_HDR_ADDED)
        c->profile_used |= PROFILE_USED_ADD_MISSING_HEADERS;
    c->hdr_holding = CONN_HDR_OFF;
    return rc;
}

/* --- The end ------------------------------------------------------------- */

void
conn_profile_end(struct conn *c)
{
    char used[PROFILE_USED_MAX];

    if (c->profile == NULL)
        return;
    if (c->s != NULL)
        c->profile_used |= pst_smtp_server_compat_used(c->s);
    if (c->profile_used == 0)
        return;
    profile_used_format(c->profile_used, used, sizeof(used));
    log_event(LOG_LEVEL_INFO, "compat", "sid", c->sid, "peer", c->peer,
              "profile", c->profile->name, "used", used, NULL);
    profile_count(c->profile->name, c->profile_used);
    c->profile_used = 0;
}
