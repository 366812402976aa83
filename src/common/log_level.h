/*
 * The log levels, with Postfix's meanings (util/msg.h): shared by
 * posternd's logger (src/posternd/log.h) and the configuration
 * (log_level), which `postern` reads too.
 */
#ifndef COMMON_LOG_LEVEL_H
#define COMMON_LOG_LEVEL_H

enum log_level {
    LOG_LEVEL_PANIC = 0, /* a bug in posternd: logged, then abort() */
    LOG_LEVEL_FATAL,     /* cannot start or go on: logged, then exit(1) */
    LOG_LEVEL_WARN,      /* something failed; posternd carries on */
    LOG_LEVEL_INFO,      /* one line per normal event (the default) */
    LOG_LEVEL_DEBUG,     /* detail for developers */
};

#endif
