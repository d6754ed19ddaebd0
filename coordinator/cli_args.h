/* cli_args.h: the `nosa` CLI's command line (docs/COORDINATOR.md "nosa"), parsed without I/O,
 * printing or exit() so the fuzz target can call it on any argv.
 *
 *   nosa [--coordinator EP] [--run-dir D] [--json] [--timeout-ms N] [--insecure] COMMAND ...
 *     submit (--prompt TEXT | --prompt-file F | --tokens 1,2,3) --max-tokens N
 *            [--temperature T] [--top-p P] [--seed S] [--ignore-eos] [--no-stream]
 *     status [--job ID]
 *     cancel ID
 *     drain
 *     keygen          (CURVE keys into D/curve/, docs/SECURITY.md)
 * Global flags may come before or after the command. */
#ifndef NOSA_CLI_ARGS_H
#define NOSA_CLI_ARGS_H

#include <stddef.h>
#include <stdint.h>

enum nosa_cli_command {
    NOSA_CLI_HELP = 0,
    NOSA_CLI_SUBMIT,
    NOSA_CLI_STATUS,
    NOSA_CLI_CANCEL,
    NOSA_CLI_DRAIN,
    NOSA_CLI_KEYGEN,
};

/* Prompt and flag strings point into argv; tokens is owned (nosa_cli_args_free). */
struct nosa_cli_args {
    enum nosa_cli_command command;
    const char *coordinator; /* NULL: $NOSA_COORDINATOR, else ipc://RUN_DIR/coord.sock */
    const char *run_dir;     /* NULL: the usual resolution (common/rundir.h) */
    int json;
    int insecure;
    int timeout_ms;          /* for the coordinator's first reply */
    /* submit */
    const char *prompt;
    const char *prompt_file;
    int32_t *tokens;
    size_t n_tokens;
    uint32_t max_tokens;
    double temperature, top_p;
    uint64_t seed;
    int stop_at_eos;
    int stream;
    /* status --job, cancel */
    uint64_t job_id;
};

#define NOSA_CLI_DEFAULT_TIMEOUT_MS 5000

/* Fills out from argv (argv[0] is the program). Returns 0, or -1 with err naming the flag and
 * what was wrong. out must be freed with nosa_cli_args_free either way. */
int nosa_cli_parse(int argc, char **argv, struct nosa_cli_args *out, char *err, size_t errlen);
void nosa_cli_args_free(struct nosa_cli_args *a);

/* The usage text. */
const char *nosa_cli_usage(void);

#endif
