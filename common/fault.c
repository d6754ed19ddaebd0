/* fault.c: see fault.h. */
#include "fault.h"

#include <signal.h>
#include <stdint.h>
#include <time.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "parse.h"

int g_nosa_fault_armed;
static const char *g_points;  /* the NOSA_FAULT value: comma-separated names */
static long g_skip;
static double g_prob = -1.0;  /* < 0: use g_skip */
static uint64_t g_rng;
static long g_stall_ms;       /* > 0: the first firing sleeps this long instead of killing */

static int point_armed(const char *name)
{
    size_t n = strlen(name);
    for (const char *p = g_points; *p;) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if ((len == 1 && *p == '*') || (len == n && memcmp(p, name, n) == 0)) return 1;
        if (!e) break;
        p = e + 1;
    }
    return 0;
}

static double next_uniform(void)
{
    /* splitmix64: reproducible from NOSA_FAULT_SEED */
    uint64_t z = (g_rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}

int nosa_fault_init(void)
{
    const char *pts = getenv("NOSA_FAULT");
    if (!pts || !*pts) return 0;
    char err[128];
    const char *skip = getenv("NOSA_FAULT_SKIP"), *seed = getenv("NOSA_FAULT_SEED"),
               *prob = getenv("NOSA_FAULT_PROB"), *stall = getenv("NOSA_FAULT_STALL_MS");
    if (skip && nosa_parse_long(skip, 0, 1L << 40, &g_skip, err, sizeof(err)) != 0) {
        LOG_ERROR("fault", "NOSA_FAULT_SKIP=%s: %s", skip, err);
        return -1;
    }
    if (stall && nosa_parse_long(stall, 1, 3600L * 1000, &g_stall_ms, err, sizeof(err)) != 0) {
        LOG_ERROR("fault", "NOSA_FAULT_STALL_MS=%s: %s", stall, err);
        return -1;
    }
    if (prob) {
        long s = 0;
        if (nosa_parse_double(prob, 0.0, 1.0, &g_prob, err, sizeof(err)) != 0 ||
            (seed && nosa_parse_long(seed, 0, 1L << 62, &s, err, sizeof(err)) != 0)) {
            LOG_ERROR("fault", "NOSA_FAULT_PROB=%s NOSA_FAULT_SEED=%s: %s", prob,
                      seed ? seed : "(unset)", err);
            return -1;
        }
        g_rng = (uint64_t)s;
    }
    g_points = pts;
    g_nosa_fault_armed = 1;
    LOG_INFO("fault", "armed points=%s skip=%ld prob=%g stall_ms=%ld", pts, g_skip, g_prob,
             g_stall_ms);
    return 0;
}

/* 1 when the armed point name fires at this pass (its SKIP passes done, or its draw). */
static int fires_now(const char *name)
{
    if (!point_armed(name)) return 0;
    return g_prob >= 0.0 ? next_uniform() < g_prob : g_skip-- <= 0;
}

int nosa_fault_fires(const char *name)
{
    if (!fires_now(name)) return 0;
    LOG_WARN("fault", "firing point=%s pid=%d (the process acts on it and lives on)", name,
             (int)getpid());
    g_nosa_fault_armed = 0;
    return 1;
}

void nosa_fault_hit(const char *name)
{
    if (!fires_now(name)) return;
    if (g_stall_ms > 0) { /* a slow step, once: the process must come through it alive */
        LOG_WARN("fault", "stalling point=%s pid=%d ms=%ld", name, (int)getpid(), g_stall_ms);
        g_nosa_fault_armed = 0;
        struct timespec ts = {g_stall_ms / 1000, (g_stall_ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts) != 0) /* EINTR: sleep the rest */
            ;
        return;
    }
    LOG_WARN("fault", "firing point=%s pid=%d", name, (int)getpid());
    raise(SIGKILL);
}
