/* cli.c: fuzz target for the `nosa` CLI's argument parser (nosa_cli_parse,
 * coordinator/cli_args.h). The input split on NUL bytes is argv[1..] (fuzz_argv.h; argv[0] is
 * "nosa"), so a seed is a command line with a NUL after each word. Besides no crash and no leak: the
 * parse returns 0 or -1 with an error text, and what it accepts is a command the CLI can run
 * (the checks below restate cli_args.h's rules, so a parser change that breaks them is seen). */

#include "cli_args.h"
#include "fuzz_argv.h"
#include "fuzz_target.h"

static const char k_target[] = "cli";

/* A string the parser returned must be NULL or one of argv's words, never a copy or a tail. */
static int is_arg(const char *s, char **argv, int argc)
{
    if (!s) return 1;
    for (int i = 1; i < argc; i++)
        if (s == argv[i]) return 1;
    return 0;
}

static void check_accepted(const struct nosa_cli_args *a, char **argv, int argc)
{
    if (a->command < NOSA_CLI_HELP || a->command > NOSA_CLI_KEYGEN)
        nosa_fuzz_fail(k_target, "accepted with an unknown command");
    if (a->command == NOSA_CLI_HELP) return; /* --help stops the parse where it stands */
    if (!is_arg(a->coordinator, argv, argc) || !is_arg(a->run_dir, argv, argc) ||
        !is_arg(a->prompt, argv, argc) || !is_arg(a->prompt_file, argv, argc))
        nosa_fuzz_fail(k_target, "a string flag does not point at its argv word");
    if (a->timeout_ms < 1 || a->timeout_ms > 3600000)
        nosa_fuzz_fail(k_target, "--timeout-ms out of range");
    int prompts = (a->prompt != NULL) + (a->prompt_file != NULL) + (a->tokens != NULL);
    if (a->command != NOSA_CLI_SUBMIT) {
        if (prompts || a->max_tokens || !a->stream || !a->stop_at_eos)
            nosa_fuzz_fail(k_target, "submit's flags accepted on another command");
        if (a->command != NOSA_CLI_STATUS && a->command != NOSA_CLI_CANCEL && a->job_id)
            nosa_fuzz_fail(k_target, "a job id accepted on a command without one");
        if (a->command == NOSA_CLI_CANCEL && a->job_id == 0)
            nosa_fuzz_fail(k_target, "cancel accepted without a job id");
        return;
    }
    if (prompts != 1) nosa_fuzz_fail(k_target, "submit accepted without exactly one prompt");
    if (a->prompt && a->prompt[0] == '\0') nosa_fuzz_fail(k_target, "empty --prompt accepted");
    if (a->tokens && a->n_tokens == 0) nosa_fuzz_fail(k_target, "empty --tokens accepted");
    for (size_t i = 0; i < a->n_tokens; i++)
        if (a->tokens[i] < 0) nosa_fuzz_fail(k_target, "negative token id accepted");
    if (a->max_tokens == 0) nosa_fuzz_fail(k_target, "submit accepted without --max-tokens");
    if (!(a->temperature >= 0.0 && a->temperature <= 1000.0) ||
        !(a->top_p > 0.0 && a->top_p <= 1.0))
        nosa_fuzz_fail(k_target, "sampling parameter out of range accepted");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nosa_fuzz_argv in;
    nosa_fuzz_argv_split(data, size, "nosa", &in);
    int argc = in.argc;
    char **argv = in.argv;
    struct nosa_cli_args args;
    char err[256] = "";
    int rc = nosa_cli_parse(argc, argv, &args, err, sizeof err);
    if (rc == 0) check_accepted(&args, argv, argc);
    else if (rc != -1) nosa_fuzz_fail(k_target, "returned neither 0 nor -1");
    else if (err[0] == '\0') nosa_fuzz_fail(k_target, "refused without an error message");
    nosa_cli_args_free(&args);
    nosa_fuzz_argv_free(&in);
    return 0;
}
