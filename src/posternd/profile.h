/*
 * posternd - compatibility profiles at work (DESIGN.md "Per-client
 * compatibility profiles"; the [profile NAME] sections are config.h's):
 * the names of the exceptions a session used, their counts per profile
 * (kept in memory across reloads, logged at stop), what `posternd -t`
 * says about each profile, and the header section of
 * add_missing_headers (RFC 6409 §8).
 *
 * A connection's side of it (picking the profile at accept, noticing
 * each use) is session_profile.c.
 */
#ifndef POSTERND_PROFILE_H
#define POSTERND_PROFILE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <postern/buf.h>
#include <postern/smtp.h>

#include "config.h"

/* The exceptions a session used: the session's own
 * (pst_smtp_server_compat_used()) and those only the daemon sees. */
#define PROFILE_USED_HELO_AUTH   PST_SMTP_COMPAT_HELO_AUTH
#define PROFILE_USED_BARE_LF     PST_SMTP_COMPAT_BARE_LF
#define PROFILE_USED_LONG_LINES  PST_SMTP_COMPAT_LONG_LINES
#define PROFILE_USED_TLS_MIN_VERSION 0x100u /* a TLS version below the
                                               global tls_min_version */
#define PROFILE_USED_AUTH_BEFORE_TLS 0x200u /* an AUTH before TLS that
                                               the listener would have
                                               refused (504 5.5.4) */
#define PROFILE_USED_ADD_MISSING_HEADERS 0x400u /* Date or Message-ID
                                                   added */

/* Bytes of the longest profile_used_format() text, NUL included. */
#define PROFILE_USED_MAX 128

/* The header section add_missing_headers holds back, at most (bytes):
 * past it the message passes unchanged. */
#define PROFILE_HDR_MAX (64 * 1024)
/* What profile_hdr_fix() adds, at most: "Date: " and an RFC 5322 date,
 * "Message-ID: <" a queue id "@" a host name (253) ">", two CRLFs. */
#define PROFILE_HDR_ADDED_MAX 512

/*
 * The used bits as the log shows them, in the order of the profile's
 * keys: "tls_min_version,auth_before_tls,helo_auth,bare_lf,long_lines,
 * add_missing_headers" (those set), "" for none.
 * Parameters: buf [out] n bytes (PROFILE_USED_MAX is enough).
 * Returns: buf.
 */
char *profile_used_format(unsigned used, char *buf, size_t n);

/*
 * Count one session of the profile called name ([in], copied) that used
 * the exceptions of used (not 0).  The counts are kept per name, so that
 * a reload that keeps a profile keeps its counts.  Any thread.
 * Returns: 0, PST_ENOMEM (not counted).
 */
int profile_count(const char *name, unsigned used);

/*
 * Log the counts, one line per profile in the order first counted:
 *   event=compat_stats profile=scanners sessions=3 helo_auth=2 bare_lf=1
 * (the exceptions never used are left out), then forget them.
 */
void profile_stats_log(void);

/*
 * What `posternd -t` says of the profiles of cfg ([in]): to out, one
 * line per profile, its networks, listeners and what it relaxes:
 *   posternd: profile scanners (line 12): 192.168.10.0/24 on lan:
 *   tls_min_version = TLSv1, helo_auth = yes, bare_lf = normalize
 * (one line in the output); to warn, a warning for each profile that
 * relaxes TLS (tls_min_version below TLSv1.2) or lets passwords go before
 * TLS (auth_before_tls = all) for a network wider than a /16 (IPv4) or a
 * /48 (IPv6).
 * Returns: the number of warnings.
 */
unsigned profile_report(const struct config *cfg, FILE *out, FILE *warn);

/*
 * add_missing_headers: where the header section of a message being
 * received ends.  The section is held back line by line (each line as
 * the session passes it on, CRLF included) until it ends: at the empty
 * line, at a line that is neither a field nor a continuation (a message
 * without headers), or at the end of the message.
 */
enum profile_hdr_line {
    PROFILE_HDR_FIELD = 0,    /* a field or a continuation: hold it */
    PROFILE_HDR_END,          /* the section ends with this line (the
                                 empty line, or the body's first) */
};

/*
 * Classify line ([in], len octets, CRLF included) of the header section,
 * held holds how many octets came before it.
 * Returns: PROFILE_HDR_FIELD or PROFILE_HDR_END.
 */
enum profile_hdr_line profile_hdr_classify(const uint8_t *line, size_t len,
                                           size_t held);

/*
 * The header section sec ([in], len octets: the lines held back, the one
 * that ended it included) with Date and Message-ID added where absent
 * (RFC 6409 §8.2, §8.3), appended to out: before the empty line, or
 * before the first line that is not a field, or at the end when the
 * message ended within its header section.  date ([in]: an RFC 5322
 * date) and msgid ([in]: "<id@host>") are the values.  *added ([out])
 * gets HEADER_HAS_DATE and HEADER_HAS_MESSAGE_ID for what was added.
 * Returns: 0, PST_ELIMIT, PST_ENOMEM.
 */
int profile_hdr_fix(const uint8_t *sec, size_t len, const char *date,
                    const char *msgid, struct pst_buf *out,
                    unsigned *added);

#endif
