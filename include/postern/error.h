/*
 * postern - error codes shared by libpostern, posternd and postern.
 *
 * One namespace for the whole library: functions return 0 on success, a
 * non-negative progress value where documented, or a negative PST_E* code.
 */
#ifndef POSTERN_ERROR_H
#define POSTERN_ERROR_H

#include <postern/version.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * X(name, value, message).  The classes that decide an SMTP reply are
 * distinct: PST_EPROTO -> 501, PST_EAUTH -> 535, PST_ETEMP -> 454.
 */
#define PST_ERRNO_MAP(X)                                                     \
    X(EPROTO,   -1,  "malformed input from the peer")                        \
    X(EAUTH,    -2,  "authentication failed")                                \
    X(ETEMP,    -3,  "temporary failure")                                    \
    X(ELIMIT,   -4,  "size limit exceeded")                                  \
    X(ENOMEM,   -5,  "out of memory")                                        \
    X(EINVAL,   -6,  "invalid argument")                                     \
    X(ESTATE,   -7,  "operation not valid in this state")                    \
    X(ENOTSUP,  -8,  "not supported")                                        \
    X(ECANCEL,  -9,  "exchange cancelled")                                   \
    X(EFORGED,  -10, "the server failed to prove it knows the password")     \
    X(EWEAK,    -11, "parameters too weak")                                  \
    X(EPREP,    -12, "string is not valid under SASLprep")                   \
    X(ENOENT,   -13, "no such entry")                                        \
    X(EEXIST,   -14, "entry exists")                                         \
    X(EIO,      -15, "input/output error")                                   \
    X(ESYNTAX,  -16, "syntax error")                                         \
    X(EREJECT,  -17, "refused by the peer")

enum pst_errno {
#define PST_ERRNO_ENUM_(name, val, msg) PST_##name = (val),
    PST_ERRNO_MAP(PST_ERRNO_ENUM_)
#undef PST_ERRNO_ENUM_
};

/*
 * A sentence describing err, for messages ("authentication failed").
 * Returns: a static string; "unknown error" for an unknown code.
 */
PST_EXTERN const char *pst_strerror(int err);

/*
 * The symbolic name of err without the prefix ("EAUTH").
 * Returns: a static string; "UNKNOWN" for an unknown code.
 */
PST_EXTERN const char *pst_errname(int err);

#ifdef __cplusplus
}
#endif
#endif
