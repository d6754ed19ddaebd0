/* kvh_config.c: see kvh_config.h. */
#include "kvh_config.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <string.h>

#include "log.h"
#include "model.h"
#include "model/model_internal.h" /* nosa_model_config_load_file: the config without weights */
#include "parse.h"

enum {
    OPT_RUN_DIR = 1000,
    OPT_NAME,
    OPT_ENDPOINT,
    OPT_ARENA,
    OPT_MODEL,
    OPT_CONFIG,
    OPT_NUMA_NODE,
    OPT_HUGE_PAGES,
    OPT_RECOVER,
    OPT_REMOVE,
    OPT_DESTROY,
    OPT_INSECURE,
};

static const struct option g_options[] = {
    {"run-dir", required_argument, NULL, OPT_RUN_DIR},
    {"name", required_argument, NULL, OPT_NAME},
    {"endpoint", required_argument, NULL, OPT_ENDPOINT},
    {"arena", required_argument, NULL, OPT_ARENA},
    {"model", required_argument, NULL, OPT_MODEL},
    {"config", required_argument, NULL, OPT_CONFIG},
    {"numa-node", required_argument, NULL, OPT_NUMA_NODE},
    {"huge-pages", no_argument, NULL, OPT_HUGE_PAGES},
    {"recover", no_argument, NULL, OPT_RECOVER},
    {"remove", no_argument, NULL, OPT_REMOVE},
    {"destroy", required_argument, NULL, OPT_DESTROY},
    {"insecure", no_argument, NULL, OPT_INSECURE},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

void kvh_config_usage(FILE *f)
{
    fputs("usage: nosa-kvhost (--model DIR | --config tiny|1b|FILE) --arena SIZE [options]\n"
          "       nosa-kvhost --destroy NAME\n"
          "  --run-dir D        run directory (default $NOSA_RUN_DIR, else\n"
          "                     $XDG_RUNTIME_DIR/nosa, else /tmp/nosa-$UID)\n"
          "  --name NAME        kv-host name; the arena is shm /nosa-<uid>-NAME (default kvh0)\n"
          "  --endpoint EP      control socket (default ipc://D/NAME.sock; tcp://HOST:PORT)\n"
          "  --arena SIZE       arena size, e.g. 64M, 8G (with --recover: the arena's own)\n"
          "  --model DIR        geometry from DIR/config.json\n"
          "  --config C         geometry from a built-in config (tiny, 1b) or a config.json\n"
          "  --numa-node N      bind the arena's pages and this process to NUMA node N\n"
          "  --huge-pages       transparent huge pages for the arena (madvise)\n"
          "  --recover          re-open the arena a previous kv-host left and serve it\n"
          "  --remove           remove the arena after a clean stop (SIGTERM/SIGINT)\n"
          "  --destroy NAME     remove the arena of kv-host NAME and exit\n"
          "  --insecure         allow plain tcp on a non-loopback address\n",
          f);
}

static int copy_flag(char *dst, size_t cap, const char *flag, const char *val, char *err,
                     size_t errlen)
{
    if (!val[0]) {
        nosa_set_error(err, errlen, "--%s: empty value", flag);
        return -EINVAL;
    }
    if ((size_t)snprintf(dst, cap, "%s", val) >= cap) {
        nosa_set_error(err, errlen, "--%s: value too long", flag);
        return -EINVAL;
    }
    return 0;
}

/* A kv-host name becomes part of a shm object's name (/nosa-<uid>-NAME) and of its socket's
 * file name: letters, digits, '.', '_' and '-', not empty, not starting with '.'. */
static int check_name(const char *name, char *err, size_t errlen)
{
    size_t n = strlen(name);
    int ok = n > 0 && name[0] != '.';
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)name[i]) || name[i] == '.' || name[i] == '_' ||
             name[i] == '-';
    if (!ok) {
        nosa_set_error(err, errlen, "--name '%s': use letters, digits, '.', '_' and '-' (not "
                       "empty, not starting with '.')", name);
        return -EINVAL;
    }
    return 0;
}

static int geometry_from_model_config(const char *model_dir, const char *config,
                                      struct nosa_kv_geometry *out, char *err, size_t errlen)
{
    struct nosa_model_config cfg;
    char path[KVH_CONFIG_PATH_MAX + 16];
    int rc;
    if (model_dir) {
        snprintf(path, sizeof(path), "%s/config.json", model_dir);
        rc = nosa_model_config_load_file(path, &cfg, err, errlen);
    } else if (!strcmp(config, "tiny") || !strcmp(config, "1b")) {
        rc = nosa_model_config_builtin(config, &cfg, err, errlen);
    } else {
        rc = nosa_model_config_load_file(config, &cfg, err, errlen);
    }
    if (!rc) rc = nosa_model_config_validate(&cfg, err, errlen);
    if (rc) return rc;
    *out = nosa_model_kv_geometry(&cfg);
    return 0;
}

int kvh_config_parse(int argc, char **argv, struct kvh_config *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->numa_node = -1;
    snprintf(out->name, sizeof(out->name), "kvh0");
    const char *run_dir_flag = NULL, *model_dir = NULL, *config = NULL, *arena = NULL;
    int c, rc = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", g_options, NULL)) != -1) {
        switch (c) {
        case OPT_RUN_DIR: run_dir_flag = optarg; break;
        case OPT_NAME:
            rc = copy_flag(out->name, sizeof(out->name), "name", optarg, err, errlen);
            if (!rc) rc = check_name(out->name, err, errlen);
            break;
        case OPT_ENDPOINT:
            rc = copy_flag(out->endpoint, sizeof(out->endpoint), "endpoint", optarg, err, errlen);
            break;
        case OPT_ARENA: arena = optarg; break;
        case OPT_MODEL: model_dir = optarg; break;
        case OPT_CONFIG: config = optarg; break;
        case OPT_NUMA_NODE: {
            long node;
            rc = nosa_parse_long(optarg, 0, 1023, &node, err, errlen);
            out->numa_node = (int)node;
            break;
        }
        case OPT_HUGE_PAGES: out->huge_pages = 1; break;
        case OPT_RECOVER: out->recover = 1; break;
        case OPT_REMOVE: out->remove_on_exit = 1; break;
        case OPT_DESTROY:
            rc = copy_flag(out->destroy, sizeof(out->destroy), "destroy", optarg, err, errlen);
            break;
        case OPT_INSECURE: out->insecure = 1; break;
        case 'h': out->help = 1; return 0;
        default:
            nosa_set_error(err, errlen, "unknown or incomplete flag '%s'", argv[optind - 1]);
            return -EINVAL;
        }
        if (rc) return -EINVAL;
    }
    if (optind < argc) {
        nosa_set_error(err, errlen, "unexpected argument '%s'", argv[optind]);
        return -EINVAL;
    }
    if (out->destroy[0]) return 0;
    if (!!model_dir == !!config) {
        nosa_set_error(err, errlen, "give exactly one of --model DIR and --config C");
        return -EINVAL;
    }
    out->model_dir = model_dir;
    out->model_config = config;
    if (arena && nosa_parse_size(arena, &out->arena_bytes, err, errlen)) return -EINVAL;
    if (arena && out->arena_bytes == 0) { /* 0 would mean "the arena's own size" */
        nosa_set_error(err, errlen, "--arena 0: give a size (or --recover alone to keep the "
                       "arena's)");
        return -EINVAL;
    }
    if (!arena && !out->recover) {
        nosa_set_error(err, errlen, "--arena SIZE is required (e.g. --arena 8G)");
        return -EINVAL;
    }
    if ((rc = nosa_rundir_resolve(run_dir_flag, out->run_dir, sizeof(out->run_dir), err, errlen)))
        return rc;
    if (!out->endpoint[0]) {
        char sock[300];
        snprintf(sock, sizeof(sock), "%s.sock", out->name);
        if ((rc = nosa_rundir_endpoint(out->run_dir, sock, out->endpoint, sizeof(out->endpoint),
                                       err, errlen)))
            return rc;
    }
    return 0;
}

int kvh_config_resolve(struct kvh_config *cfg, char *err, size_t errlen)
{
    if (geometry_from_model_config(cfg->model_dir, cfg->model_config, &cfg->geom, err, errlen))
        return -EINVAL;
    cfg->have_geom = 1;
    return nosa_rundir_prepare(cfg->run_dir, err, errlen);
}
