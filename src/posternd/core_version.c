/* Keeps posternd_core non-empty whatever modules exist yet. */
#include <postern/version.h>

const char *posternd_core_version(void);

const char *
posternd_core_version(void)
{
    return PST_VERSION_STRING;
}
