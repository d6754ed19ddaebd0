/* mkmodel_main.c: nosa-mkmodel, writes a random-weight model folder (config.json +
 * model.safetensors) that nosa_model_load reads back; see docs/MODEL.md. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "model_internal.h"
#include "parse.h"

static void usage(FILE *f)
{
    fputs("usage: nosa-mkmodel --config tiny|1b|FILE.json --out DIR [--seed N] "
          "[--dtype bf16|f32]\n"
          "Writes a random-weight Llama-style NOSA model (config.json + model.safetensors)\n"
          "into DIR (created if missing).\n"
          "  --config  a built-in configuration (tiny: unit tests; 1b: the paper's 1B shape)\n"
          "            or a Hugging Face style config.json\n"
          "  --out     the output directory\n"
          "  --seed    the random seed, an integer in [0, 2^64) (default 0); the same seed\n"
          "            gives the same weights\n"
          "  --dtype   bf16 (default) or f32\n",
          f);
}

struct mk_args {
    const char *config, *out, *seed, *dtype;
};

/* Strict: every flag known, each given once, each with a value. */
static int parse_args(int argc, char **argv, struct mk_args *a)
{
    for (int i = 1; i < argc; i++) {
        const char **slot = NULL;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(argv[i], "--config") == 0) slot = &a->config;
        else if (strcmp(argv[i], "--out") == 0) slot = &a->out;
        else if (strcmp(argv[i], "--seed") == 0) slot = &a->seed;
        else if (strcmp(argv[i], "--dtype") == 0) slot = &a->dtype;
        if (!slot) {
            fprintf(stderr, "nosa-mkmodel: unknown argument '%s'\n", argv[i]);
            return -EINVAL;
        }
        if (*slot) {
            fprintf(stderr, "nosa-mkmodel: %s given twice\n", argv[i]);
            return -EINVAL;
        }
        if (i + 1 >= argc || argv[i + 1][0] == '\0') {
            fprintf(stderr, "nosa-mkmodel: %s needs a value\n", argv[i]);
            return -EINVAL;
        }
        *slot = argv[++i];
    }
    if (!a->config || !a->out) {
        fprintf(stderr, "nosa-mkmodel: --config and --out are required\n");
        return -EINVAL;
    }
    if (!a->dtype) a->dtype = "bf16";
    if (strcmp(a->dtype, "bf16") != 0 && strcmp(a->dtype, "f32") != 0) {
        fprintf(stderr, "nosa-mkmodel: --dtype '%s': expected bf16 or f32\n", a->dtype);
        return -EINVAL;
    }
    return 0;
}

int main(int argc, char **argv)
{
    struct mk_args a = {0};
    char err[512] = "";
    struct nosa_model_config cfg;
    uint64_t seed = 0;
    nosa_log_init_from_env();
    int rc = parse_args(argc, argv, &a);
    if (rc) {
        if (rc < 0) usage(stderr);
        return rc > 0 ? 0 : 2;
    }
    if (a.seed && nosa_parse_u64(a.seed, 0, UINT64_MAX, &seed, err, sizeof(err))) {
        fprintf(stderr, "nosa-mkmodel: --seed: %s\n", err);
        return 2;
    }
    if (strcmp(a.config, "tiny") == 0 || strcmp(a.config, "1b") == 0)
        rc = nosa_model_config_builtin(a.config, &cfg, err, sizeof(err));
    else
        rc = nosa_model_config_load_file(a.config, &cfg, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "nosa-mkmodel: --config: %s\n", err);
        return 2;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if ((rc = nosa_model_write_random(&cfg, seed, a.out, a.dtype, err, sizeof(err)))) {
        fprintf(stderr, "nosa-mkmodel: %s\n", err);
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    LOG_INFO("mkmodel", "wrote dir=%s config=%s seed=%llu dtype=%s seconds=%.2f", a.out,
             a.config, (unsigned long long)seed, a.dtype,
             (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec));
    return 0;
}
