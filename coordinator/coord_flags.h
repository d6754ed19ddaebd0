/* coord_flags.h: nosa-coordinator's flags (docs/COORDINATOR.md).
 *
 * This module owns: argv into struct coord_options with the defaults and range checks. It
 * touches nothing (the run directory and the endpoints that default from it are the
 * caller's), so the fuzz target daemon_args runs it. */
#ifndef NOSA_COORD_FLAGS_H
#define NOSA_COORD_FLAGS_H

#include <stddef.h>
#include <stdio.h>

#include "coord.h"

/* Fills opt with the defaults, then argv's flags; --run-dir's value goes to run_dir_flag
 * ("" when not given). Returns 0, 1 for --help, or -1 with err naming the flag. */
int coord_flags_parse(int argc, char **argv, struct coord_options *opt, char *run_dir_flag,
                      size_t run_dir_cap, char *err, size_t errlen);
void coord_flags_usage(FILE *f);

#endif
