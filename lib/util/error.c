#include <postern/error.h>
#include <postern/version.h>

const char *
pst_strerror(int err)
{
    switch (err) {
#define PST_STRERROR_CASE_(name, val, msg) case PST_##name: return msg;
        PST_ERRNO_MAP(PST_STRERROR_CASE_)
#undef PST_STRERROR_CASE_
    case 0:
        return "success";
    default:
        return "unknown error";
    }
}

const char *
pst_errname(int err)
{
    switch (err) {
#define PST_ERRNAME_CASE_(name, val, msg) case PST_##name: return #name;
        PST_ERRNO_MAP(PST_ERRNAME_CASE_)
#undef PST_ERRNAME_CASE_
    case 0:
        return "OK";
    default:
        return "UNKNOWN";
    }
}

const char *
pst_version(void)
{
    return PST_VERSION_STRING;
}
