/* kvh_config.h: nosa-kvhost's flags (docs/PROCESSES.md, docs/KVHOST.md) and the arena
 * geometry they imply (from the model's config.json or a built-in config).
 *
 * This module owns: parsing and checking argv into struct kvh_config (kvh_config_parse: no
 * file touched, so the fuzz target daemon_args runs it), then what the flags name
 * (kvh_config_resolve: the model's config, the run directory). */
#ifndef NOSA_KVH_CONFIG_H
#define NOSA_KVH_CONFIG_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "kv_geometry.h"
#include "rundir.h"

#define KVH_CONFIG_PATH_MAX 4096

struct kvh_config {
    char run_dir[NOSA_RUNDIR_MAX];
    char name[256];                   /* --name, default kvh0 */
    char endpoint[KVH_CONFIG_PATH_MAX]; /* default ipc://RUN_DIR/NAME.sock */
    uint64_t arena_bytes;             /* --arena; 0 with --recover: the arena's own size */
    const char *model_dir;            /* --model DIR (argv's word), or NULL */
    const char *model_config;         /* --config C: "tiny", "1b" or a config.json path */
    struct nosa_kv_geometry geom;     /* kvh_config_resolve: from model_dir or model_config */
    int have_geom;
    int numa_node;                    /* -1: not bound */
    int huge_pages;
    int recover;
    int remove_on_exit;               /* --remove: unlink the arena after a clean stop */
    int insecure;
    char destroy[256];                /* --destroy NAME: remove that arena and exit */
    int help;
};

/* Parses argv: the flags and their values checked, the run directory and endpoint picked
 * (nosa_rundir_resolve). Reads and creates nothing. 0, or -EINVAL with err naming the flag
 * (and the usage is for the caller to print). */
int kvh_config_parse(int argc, char **argv, struct kvh_config *out, char *err, size_t errlen);
/* After a parse without --help or --destroy: the arena geometry from the model's config, and
 * the run directory created (nosa_rundir_prepare). 0, or a negated errno with err. */
int kvh_config_resolve(struct kvh_config *cfg, char *err, size_t errlen);
void kvh_config_usage(FILE *f);

#endif
