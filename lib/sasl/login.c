/*
 * LOGIN, draft-murchison-sasl-login-00: the server prompts "Username:" and
 * "Password:", the client answers each with the bare field.  There is no
 * authorization identity.
 */
#include <string.h>

#include "mech.h"

/* draft-murchison-sasl-login §2 suggests "User Name" and "Password" but
 * notes that deployed clients insist on these two strings, which every
 * mature server sends; "VXNlcm5hbWU6" and "UGFzc3dvcmQ6" on the wire. */
#define LOGIN_PROMPT_USER     "Username:"
#define LOGIN_PROMPT_PASSWORD "Password:"

/* --- Client half --------------------------------------------------------- */

enum login_client_state {
    LOGIN_C_START = 0,      /* nothing sent */
    LOGIN_C_SENT_USER,      /* sent the user name */
    LOGIN_C_SENT_PASSWORD,  /* sent the password: nothing more to say */
};

struct login_client {
    enum login_client_state state;
};

static int
login_client_step(struct pst_sasl_client *c, const uint8_t *in, size_t len,
                  struct pst_buf *out)
{
    struct login_client *st = c->state;
    int rc;

    /* draft-murchison-sasl-login §2: the client ignores the challenges'
     * text; like msmtp and curl we answer by position, not wording.
     * LOGIN has no authorization identity, so an authzid is not sent. */
    (void)len;
    switch (st->state) {
    case LOGIN_C_START:
        /* The user name, as the initial response (in == NULL) or in
         * answer to the first challenge, whatever it says. */
        if ((rc = pst_buf_append(out, c->authcid.data, c->authcid.len)) < 0)
            return rc;
        st->state = LOGIN_C_SENT_USER;
        return PST_SASL_CONTINUE;
    case LOGIN_C_SENT_USER:
        /* An initial response can only be asked for first. */
        if (in == NULL)
            return PST_ESTATE;
        if ((rc = pst_buf_append(out, c->password.data,
                                 c->password.len)) < 0)
            return rc;
        st->state = LOGIN_C_SENT_PASSWORD;
        return PST_SASL_CONTINUE;
    case LOGIN_C_SENT_PASSWORD:
        /* A third challenge: the server is not speaking LOGIN. */
        return PST_ESTATE;
    }
    return PST_ESTATE;
}

/* --- Server half --------------------------------------------------------- */

enum login_server_state {
    LOGIN_S_START = 0,      /* nothing received */
    LOGIN_S_WANT_USER,      /* sent "Username:" */
    LOGIN_S_WANT_PASSWORD,  /* sent "Password:" */
    LOGIN_S_LOOKUP,         /* waiting for credentials */
    LOGIN_S_VERIFY,         /* waiting for the verdict */
};

struct login_server {
    enum login_server_state state;
};

/* The user name: the same rules as a PLAIN authcid (RFC 4616 §2). */
static int
login_server_user(struct pst_sasl_server *s, const uint8_t *in, size_t len)
{
    if (len == 0)
        return pst__sasl_fail(s, PST_EPROTO, "LOGIN: empty user name");
    /* Non-empty UTF-8 without NUL, at most PST_SASL_MAX_NAME octets. */
    return pst__sasl_set_authcid(s, in, len, 0);
}

/*
 * The password: opaque octets without NUL.  Unlike PLAIN (RFC 4616 §2),
 * the LOGIN draft says nothing of a charset, and the printers and scanners
 * that speak only LOGIN send Latin-1 as readily as UTF-8: the bytes go to
 * the verifier as they came.
 */
static int
login_server_password(struct pst_sasl_server *s, const uint8_t *in,
                      size_t len)
{
    if (len > PST_SASL_MAX_PASSWORD)
        return pst__sasl_fail(s, PST_ELIMIT, "LOGIN: password too long");
    if (len == 0)
        return pst__sasl_fail(s, PST_EPROTO, "LOGIN: empty password");
    if (memchr(in, 0, len) != NULL)
        return pst__sasl_fail(s, PST_EPROTO, "LOGIN: NUL in password");
    return pst__sasl_set_password(s, in, len);
}

static int
login_server_step(struct pst_sasl_server *s, const uint8_t *in, size_t len,
                  struct pst_buf *out)
{
    struct login_server *st = s->state;
    int rc;

    switch (st->state) {
    case LOGIN_S_START:
        if (in == NULL) {
            /* No initial response: prompt for the user name. */
            if ((rc = pst_buf_append_str(out, LOGIN_PROMPT_USER)) < 0)
                return rc;
            st->state = LOGIN_S_WANT_USER;
            return PST_SASL_CONTINUE;
        }
        /* An initial response is the user name (curl --sasl-ir, and
         * RFC 4954 §4 allows one for any client-first mechanism). */
        /* fall through */
    case LOGIN_S_WANT_USER:
        if (in == NULL)
            return pst__sasl_fail(s, PST_ESTATE, "LOGIN: no user name");
        if ((rc = login_server_user(s, in, len)) < 0)
            return rc;
        if ((rc = pst_buf_append_str(out, LOGIN_PROMPT_PASSWORD)) < 0)
            return rc;
        st->state = LOGIN_S_WANT_PASSWORD;
        return PST_SASL_CONTINUE;
    case LOGIN_S_WANT_PASSWORD:
        if (in == NULL)
            return pst__sasl_fail(s, PST_ESTATE, "LOGIN: no password");
        if ((rc = login_server_password(s, in, len)) < 0)
            return rc;
        st->state = LOGIN_S_LOOKUP;
        return PST_SASL_NEED_CRED;
    case LOGIN_S_LOOKUP:
        if (in != NULL)
            return pst__sasl_fail(s, PST_ESTATE,
                                  "LOGIN: message after the password");
        /* Unknown users are verified too (against nothing), so they take
         * the same path and time as a wrong password. */
        st->state = LOGIN_S_VERIFY;
        return PST_SASL_NEED_VERIFY;
    case LOGIN_S_VERIFY:
        if (in != NULL)
            return pst__sasl_fail(s, PST_ESTATE,
                                  "LOGIN: message after the password");
        if (s->cred == NULL)
            return pst__sasl_fail(s, PST_EAUTH, "unknown user");
        if (!s->verified)
            return pst__sasl_fail(s, PST_EAUTH, "password mismatch");
        return PST_SASL_DONE;
    }
    return PST_ESTATE;
}

static const struct pst_sasl_client_ops login_client = {
    .state_size = sizeof(struct login_client),
    .step = login_client_step,
};

static const struct pst_sasl_server_ops login_server = {
    .state_size = sizeof(struct login_server),
    .step = login_server_step,
};

const struct pst_sasl_mech pst__mech_login = {
    .name = "LOGIN",
    .flags = PST_MECH_SENDS_PASSWORD | PST_MECH_CLIENT_FIRST,
    .client = &login_client,
    .server = &login_server,
};
