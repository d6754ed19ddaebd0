/* fault.h: named fault points for the fault-injection tests (tests/fault). A process calls
 * NOSA_FAULT_POINT("kvhost.alloc.table_written") where a crash would be interesting; when
 * the environment names that point, the process kills itself there with SIGKILL.
 *
 *   NOSA_FAULT=name[,name...]   points armed (exact names; "*" arms every point)
 *   NOSA_FAULT_SKIP=N           pass an armed point N times before firing (default 0)
 *   NOSA_FAULT_SEED=S, NOSA_FAULT_PROB=P
 *                               instead of SKIP: fire at each armed pass with probability P,
 *                               from a generator seeded with S (random, reproducible)
 *   NOSA_FAULT_STALL_MS=N       instead of dying, the first firing sleeps N ms (a slow step,
 *                               a stalled GPU) and disarms every point
 *
 * An action point (NOSA_FAULT_ACTION) kills nothing: when it fires the caller does the damage
 * itself (worker.link.drop: the coordinator link is cut and made anew) and lives on; its
 * firing disarms every point, so it happens once.
 *
 * Unarmed, a point costs one load and a branch. Names are listed in docs/FAULTS.md. */
#ifndef NOSA_FAULT_H
#define NOSA_FAULT_H

extern int g_nosa_fault_armed; /* set by nosa_fault_init when NOSA_FAULT is present */

/* Reads the environment; call once at process start. Returns -1 (and logs) on a malformed
 * setting, so a typo in a test never silently runs without its fault. */
int nosa_fault_init(void);
void nosa_fault_hit(const char *name);
/* 1 when the armed point name fires here (logged; every point disarmed), else 0. */
int nosa_fault_fires(const char *name);

#define NOSA_FAULT_POINT(name)                  \
    do {                                        \
        if (g_nosa_fault_armed) nosa_fault_hit(name); \
    } while (0)
#define NOSA_FAULT_ACTION(name) (g_nosa_fault_armed && nosa_fault_fires(name))

#endif
