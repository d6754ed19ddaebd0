/* log.h: one line per event, "LEVEL component: message key=value", to stderr.
 * The level is checked before anything is formatted, so a disabled debug line costs a compare. */
#ifndef NOSA_LOG_H
#define NOSA_LOG_H

#include <stddef.h>

enum nosa_log_level {
    NOSA_LOG_DEBUG = 0,
    NOSA_LOG_INFO = 1,
    NOSA_LOG_WARN = 2,
    NOSA_LOG_ERROR = 3,
};

extern enum nosa_log_level g_nosa_log_level;

/* Reads NOSA_LOG_LEVEL (debug|info|warn|error); unknown values keep the default (info). */
void nosa_log_init_from_env(void);
void nosa_log_write(enum nosa_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define NOSA_LOG(level, comp, ...)                                                       \
    do {                                                                                 \
        if ((level) >= g_nosa_log_level) nosa_log_write((level), (comp), __VA_ARGS__);   \
    } while (0)
#define LOG_DEBUG(comp, ...) NOSA_LOG(NOSA_LOG_DEBUG, comp, __VA_ARGS__)
#define LOG_INFO(comp, ...) NOSA_LOG(NOSA_LOG_INFO, comp, __VA_ARGS__)
#define LOG_WARN(comp, ...) NOSA_LOG(NOSA_LOG_WARN, comp, __VA_ARGS__)
#define LOG_ERROR(comp, ...) NOSA_LOG(NOSA_LOG_ERROR, comp, __VA_ARGS__)

/* Bounded error buffer, the Redis way: functions that can fail take (char *err, size_t errlen)
 * and describe what went wrong there; NULL err is allowed. */
void nosa_set_error(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
