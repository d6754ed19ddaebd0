/* rundir.h: the run directory (docs/PROCESSES.md "Run directory"), where a node keeps its ipc
 * sockets, journal, CURVE keys, pid and log files. It must be private to its user: other users
 * must not connect to the sockets or read the journal.
 *
 * This module owns: choosing the directory (flag, environment, defaults), creating it mode
 * 0700, refusing one another user could reach into, and building ipc endpoints inside it. */
#ifndef NOSA_RUNDIR_H
#define NOSA_RUNDIR_H

#include <stddef.h>

/* Room for any run directory path we accept (with its NUL). */
#define NOSA_RUNDIR_MAX 4096

/* Picks the run directory: flag (--run-dir; NULL or "" when not given), else $NOSA_RUN_DIR,
 * else $XDG_RUNTIME_DIR/nosa, else /tmp/nosa-$UID (empty variables count as unset). Writes
 * the path to out; touches no file. Returns 0 or -ENAMETOOLONG with err set. */
int nosa_rundir_resolve(const char *flag, char *out, size_t outlen, char *err, size_t errlen);

/* Creates dir mode 0700 if it does not exist (its parent must), then checks it: a directory,
 * not a symlink, owned by the effective user, no permission bits for group or others.
 * Returns 0, -EPERM for a path that is not such a private directory (err says which rule and
 * how to fix it), or another negated errno. */
int nosa_rundir_prepare(const char *dir, char *err, size_t errlen);

/* nosa_rundir_resolve, then nosa_rundir_prepare: what every process does at start. */
int nosa_rundir_open(const char *flag, char *out, size_t outlen, char *err, size_t errlen);

/* Writes "ipc://DIR/NAME" to out. Fails with -ENAMETOOLONG when DIR/NAME does not fit in a
 * unix socket address (107 bytes), which ZeroMQ would otherwise report only at bind. */
int nosa_rundir_endpoint(const char *dir, const char *name, char *out, size_t outlen, char *err,
                         size_t errlen);

#endif
