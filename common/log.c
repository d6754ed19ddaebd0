/* log.c: see log.h. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum nosa_log_level g_nosa_log_level = NOSA_LOG_INFO;

void nosa_log_init_from_env(void)
{
    const char *v = getenv("NOSA_LOG_LEVEL");
    if (!v) return;
    if (strcmp(v, "debug") == 0) g_nosa_log_level = NOSA_LOG_DEBUG;
    else if (strcmp(v, "info") == 0) g_nosa_log_level = NOSA_LOG_INFO;
    else if (strcmp(v, "warn") == 0) g_nosa_log_level = NOSA_LOG_WARN;
    else if (strcmp(v, "error") == 0) g_nosa_log_level = NOSA_LOG_ERROR;
}

void nosa_log_write(enum nosa_log_level level, const char *component, const char *fmt, ...)
{
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    /* One fprintf per line so lines from several threads do not interleave. */
    fprintf(stderr, "%lld.%03ld %s %s: %s\n", (long long)ts.tv_sec, ts.tv_nsec / 1000000,
            names[level], component, msg);
}

void nosa_set_error(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
