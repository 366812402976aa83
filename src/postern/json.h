/*
 * postern - the little JSON the CLI prints (probe --json, bench --json).
 */
#ifndef POSTERN_JSON_H
#define POSTERN_JSON_H

#include <stdio.h>

/* Print s ([in] C string) as a JSON string, quotes included; control
 * bytes escaped, other bytes (UTF-8) as they are. */
void json_str(FILE *f, const char *s);

#endif
