/* cli_args.c: see cli_args.h. */
#include "cli_args.h"

#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "parse.h"

/* The most prompt token ids one --tokens list may hold. */
#define NOSA_CLI_MAX_TOKENS (1u << 20)

const char *nosa_cli_usage(void)
{
    return "usage: nosa [--coordinator EP] [--run-dir D] [--json] [--timeout-ms N] [--insecure]\n"
           "            COMMAND ...\n"
           "  submit (--prompt TEXT | --prompt-file F | --tokens 1,2,3) --max-tokens N\n"
           "         [--temperature T] [--top-p P] [--seed S] [--ignore-eos] [--no-stream]\n"
           "  status [--job ID]\n"
           "  cancel ID\n"
           "  drain\n"
           "  keygen      write CURVE keys into RUN_DIR/curve/ (docs/SECURITY.md)\n"
           "--coordinator defaults to $NOSA_COORDINATOR, else ipc://RUN_DIR/coord.sock.\n"
           "Exit: 0 ok, 1 job failed or local error, 2 bad flags, 3 coordinator unreachable,\n"
           "      4 request refused by the coordinator, 5 job cancelled.\n";
}

void nosa_cli_args_free(struct nosa_cli_args *a)
{
    free(a->tokens);
    a->tokens = NULL;
    a->n_tokens = 0;
}

static int parse_token_list(const char *s, struct nosa_cli_args *out, char *err, size_t errlen)
{
    size_t n = 1;
    for (const char *p = s; *p; p++) n += *p == ',';
    if (n > NOSA_CLI_MAX_TOKENS) {
        nosa_set_error(err, errlen, "--tokens: %zu ids, at most %u", n, NOSA_CLI_MAX_TOKENS);
        return -1;
    }
    int32_t *ids = calloc(n, sizeof *ids);
    if (!ids) {
        nosa_set_error(err, errlen, "--tokens: out of memory");
        return -1;
    }
    free(out->tokens);
    out->tokens = ids;
    out->n_tokens = 0;
    const char *p = s;
    for (size_t i = 0; i < n; i++) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char one[32];
        if (len == 0 || len >= sizeof one) {
            nosa_set_error(err, errlen, "--tokens: id %zu is %s (want e.g. 1,2,3)", i,
                           len ? "too long" : "empty");
            return -1;
        }
        memcpy(one, p, len);
        one[len] = 0;
        long v;
        char why[128];
        if (nosa_parse_long(one, 0, INT32_MAX, &v, why, sizeof why)) {
            nosa_set_error(err, errlen, "--tokens: id %zu: %s", i, why);
            return -1;
        }
        ids[out->n_tokens++] = (int32_t)v;
        p = comma ? comma + 1 : p + len;
    }
    return 0;
}

static int parse_command(const char *word, enum nosa_cli_command *cmd)
{
    static const struct {
        const char *name;
        enum nosa_cli_command cmd;
    } k_commands[] = {{"submit", NOSA_CLI_SUBMIT}, {"status", NOSA_CLI_STATUS},
                      {"cancel", NOSA_CLI_CANCEL}, {"drain", NOSA_CLI_DRAIN},
                      {"keygen", NOSA_CLI_KEYGEN}, {"help", NOSA_CLI_HELP}};
    for (size_t i = 0; i < sizeof k_commands / sizeof k_commands[0]; i++)
        if (strcmp(word, k_commands[i].name) == 0) {
            *cmd = k_commands[i].cmd;
            return 0;
        }
    return -1;
}

/* One flag with its value (argv[*i + 1]); -1 with err when unknown or malformed, 1 when it is
 * not a value flag. */
static int parse_value_flag(const char *f, const char *v, struct nosa_cli_args *out, char *err,
                            size_t errlen)
{
    char why[160];
    long l;
    int rc = 0;
    if (strcmp(f, "--coordinator") == 0) out->coordinator = v;
    else if (strcmp(f, "--run-dir") == 0) out->run_dir = v;
    else if (strcmp(f, "--prompt") == 0) out->prompt = v;
    else if (strcmp(f, "--prompt-file") == 0) out->prompt_file = v;
    else if (strcmp(f, "--tokens") == 0) return parse_token_list(v, out, err, errlen);
    else if (strcmp(f, "--timeout-ms") == 0) {
        rc = nosa_parse_long(v, 1, 3600000, &l, why, sizeof why);
        out->timeout_ms = (int)l;
    } else if (strcmp(f, "--max-tokens") == 0) {
        rc = nosa_parse_long(v, 1, UINT32_MAX, &l, why, sizeof why);
        out->max_tokens = (uint32_t)l;
    } else if (strcmp(f, "--temperature") == 0) {
        rc = nosa_parse_double(v, 0.0, 1000.0, &out->temperature, why, sizeof why);
    } else if (strcmp(f, "--top-p") == 0) {
        rc = nosa_parse_double(v, 0.0, 1.0, &out->top_p, why, sizeof why);
        if (rc == 0 && !(out->top_p > 0.0)) {
            nosa_set_error(why, sizeof why, "'%s' must be in (0, 1]", v);
            rc = -1;
        }
    } else if (strcmp(f, "--seed") == 0) {
        rc = nosa_parse_u64(v, 0, UINT64_MAX, &out->seed, why, sizeof why);
    } else if (strcmp(f, "--job") == 0) {
        rc = nosa_parse_u64(v, 1, UINT64_MAX, &out->job_id, why, sizeof why);
    } else {
        return 1;
    }
    if (rc) nosa_set_error(err, errlen, "%s: %s", f, why);
    return rc ? -1 : 0;
}

/* What each command needs, checked once every flag is read. */
static int check_command(struct nosa_cli_args *out, int have_command, char *err, size_t errlen)
{
    if (!have_command) {
        nosa_set_error(err, errlen, "no command (submit, status, cancel, drain, keygen)");
        return -1;
    }
    int prompts = (out->prompt != NULL) + (out->prompt_file != NULL) + (out->tokens != NULL);
    if (out->command != NOSA_CLI_SUBMIT &&
        (prompts || out->max_tokens || !out->stream || !out->stop_at_eos)) {
        nosa_set_error(err, errlen, "prompt and sampling flags belong to submit");
        return -1;
    }
    if (out->command != NOSA_CLI_STATUS && out->command != NOSA_CLI_CANCEL && out->job_id) {
        nosa_set_error(err, errlen, "--job belongs to status");
        return -1;
    }
    if (out->command == NOSA_CLI_SUBMIT) {
        if (prompts != 1) {
            nosa_set_error(err, errlen, "submit needs exactly one of --prompt, --prompt-file, "
                           "--tokens (got %d)", prompts);
            return -1;
        }
        if (out->prompt && !out->prompt[0]) {
            nosa_set_error(err, errlen, "--prompt: empty");
            return -1;
        }
        if (!out->max_tokens) {
            nosa_set_error(err, errlen, "submit needs --max-tokens N (N >= 1)");
            return -1;
        }
    }
    if (out->command == NOSA_CLI_CANCEL && !out->job_id) {
        nosa_set_error(err, errlen, "cancel needs a job id: nosa cancel ID");
        return -1;
    }
    return 0;
}

int nosa_cli_parse(int argc, char **argv, struct nosa_cli_args *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->timeout_ms = NOSA_CLI_DEFAULT_TIMEOUT_MS;
    out->top_p = 1.0;
    out->stop_at_eos = 1;
    out->stream = 1;
    int have_command = 0, cancel_id_seen = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!a) break;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            out->command = NOSA_CLI_HELP;
            return 0;
        }
        if (strcmp(a, "--json") == 0) out->json = 1;
        else if (strcmp(a, "--insecure") == 0) out->insecure = 1;
        else if (strcmp(a, "--no-stream") == 0) out->stream = 0;
        else if (strcmp(a, "--ignore-eos") == 0) out->stop_at_eos = 0;
        else if (a[0] == '-' && a[1] == '-') {
            if (i + 1 >= argc || !argv[i + 1]) {
                nosa_set_error(err, errlen, "%s needs a value (or is unknown)", a);
                return -1;
            }
            int rc = parse_value_flag(a, argv[i + 1], out, err, errlen);
            if (rc < 0) return -1;
            if (rc > 0) {
                nosa_set_error(err, errlen, "unknown flag %s", a);
                return -1;
            }
            i++;
        } else if (!have_command) {
            if (parse_command(a, &out->command)) {
                nosa_set_error(err, errlen, "unknown command '%s' (submit, status, cancel, "
                               "drain, keygen)", a);
                return -1;
            }
            if (out->command == NOSA_CLI_HELP) return 0;
            have_command = 1;
        } else if (out->command == NOSA_CLI_CANCEL && !cancel_id_seen) {
            char why[128];
            if (nosa_parse_u64(a, 1, UINT64_MAX, &out->job_id, why, sizeof why)) {
                nosa_set_error(err, errlen, "cancel: job id: %s", why);
                return -1;
            }
            cancel_id_seen = 1;
        } else {
            nosa_set_error(err, errlen, "unexpected argument '%s'", a);
            return -1;
        }
    }
    return check_command(out, have_command, err, errlen);
}
