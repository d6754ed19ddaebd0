/* test_bench_smoke.c: runs nosa-bench (argv[1]) on the cpu backend with the tiny model at two
 * grid points (nosa-offload and nosa-resident, batch 2, context 128, the correlated workload)
 * and checks that bench.csv and bench.json exist and parse, agree with each other, and hold
 * sane figures: tokens/s > 0, hit rate in [0, 1], selected == transferred + hits, bytes moved
 * == blocks moved * block bytes, nothing moved when resident; and the plot when gnuplot is
 * installed.
 *
 * Then the multi-device driver (--devices 0,1: two cpu instances over one arena, each alone,
 * then both at once, batches 2 and 3): every device's row, alone and together, must equal
 * exactly the one-device run of the same seed and point (blocks selected, moved and hit,
 * bytes both ways, the greedy hash of the last logits), the aggregate row must be the sum of
 * the together rows, and the files must carry the new columns and the scaling table. */
#include <cjson/cJSON.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "test_util.h"

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    int ch;
    while ((ch = fgetc(f)) != EOF) {
        if (len + 2 > cap) {
            cap = cap ? 2 * cap : 4096;
            char *nb = realloc(buf, cap);
            REQUIRE(nb, "out of memory");
            buf = nb;
        }
        buf[len++] = (char)ch;
    }
    fclose(f);
    if (buf) buf[len] = '\0';
    return buf;
}

static int count_fields(const char *line, size_t len)
{
    int n = 1;
    for (size_t i = 0; i < len; i++) n += line[i] == ',';
    return n;
}

static double num(const cJSON *row, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);
    REQUIRE(cJSON_IsNumber(v), "row field %s is not a number", key);
    return v->valuedouble;
}

static const char *str(const cJSON *row, const char *key)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(row, key);
    REQUIRE(cJSON_IsString(v), "row field %s is not a string", key);
    return v->valuestring;
}

static int on_path(const char *prog)
{
    const char *path = getenv("PATH");
    char buf[4096];
    while (path && *path) {
        const char *e = strchr(path, ':');
        int n = e ? (int)(e - path) : (int)strlen(path);
        snprintf(buf, sizeof(buf), "%.*s/%s", n, path, prog);
        if (access(buf, X_OK) == 0) return 1;
        path = e ? e + 1 : NULL;
    }
    return 0;
}

/* Checks the CSV's shape and the new columns; returns its row count. */
static int check_csv(const char *dir)
{
    static const char *const want[] = {",device,", ",devices,", ",scaling,", ",link_gbps,",
                                       ",greedy_hash"};
    char path[4200];
    snprintf(path, sizeof(path), "%s/bench.csv", dir);
    char *text = slurp(path);
    REQUIRE(text, "%s missing", path);
    char *nl = strchr(text, '\n');
    REQUIRE(nl, "csv has no header line");
    int cols = count_fields(text, (size_t)(nl - text)), rows = 0;
    CHECK(strncmp(text, "backend,mode,workload,", 22) == 0, "csv header: %.40s", text);
    *nl = '\0';
    for (size_t k = 0; k < sizeof(want) / sizeof(want[0]); k++)
        CHECK(strstr(text, want[k]) != NULL, "csv header lacks %s", want[k]);
    for (const char *line = nl + 1; *line;) {
        const char *end = strchr(line, '\n');
        REQUIRE(end, "csv: unterminated line");
        CHECK(count_fields(line, (size_t)(end - line)) == cols, "csv row %d: field count", rows);
        rows++;
        line = end + 1;
    }
    free(text);
    return rows;
}

/* bench.json of dir, parsed, after checking that it has as many rows as the CSV. */
static cJSON *load_json(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/bench.json", dir);
    char *text = slurp(path);
    REQUIRE(text, "%s missing", path);
    cJSON *root = cJSON_Parse(text);
    free(text);
    REQUIRE(root, "%s does not parse", path);
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(root, "rows");
    REQUIRE(cJSON_IsArray(rows), "rows is not an array");
    int csv_rows = check_csv(dir);
    CHECK(cJSON_GetArraySize(rows) == csv_rows, "json rows %d vs csv rows %d",
          cJSON_GetArraySize(rows), csv_rows);
    return root;
}

/* The one-device run: two sane rows. */
static void check_single(const cJSON *root)
{
    const cJSON *driver = cJSON_GetObjectItemCaseSensitive(root, "driver");
    CHECK(cJSON_IsString(driver) && strstr(driver->valuestring, "in-process"), "driver label");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(root, "rows");
    CHECK(cJSON_GetArraySize(rows) == 2, "rows: %d, want 2", cJSON_GetArraySize(rows));
    CHECK(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "ratios")), "ratios array");
    int seen_offload = 0, seen_resident = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        const char *mode = str(row, "mode");
        CHECK(strcmp(str(row, "workload"), "correlated-0.90") == 0, "workload %s",
              str(row, "workload"));
        CHECK_NEAR(num(row, "rho"), 0.9, 1e-12, "rho");
        CHECK(!strcmp(str(row, "device"), "0") && !strcmp(str(row, "devices"), "0"),
              "%s: device %s of %s, want 0 of 0", mode, str(row, "device"), str(row, "devices"));
        CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(row, "scaling")),
              "%s: scaling set on a one-device run", mode);
        CHECK(strlen(str(row, "greedy_hash")) == 16, "%s: greedy hash '%s'", mode,
              str(row, "greedy_hash"));
        double tps = num(row, "tokens_per_s"), hit = num(row, "hit_rate");
        CHECK(tps > 0.0, "%s: tokens/s %g", mode, tps);
        CHECK(hit >= 0.0 && hit <= 1.0, "%s: hit rate %g", mode, hit);
        double sel = num(row, "blocks_selected"), tr = num(row, "blocks_transferred");
        double hits = num(row, "block_hits"), h2d = num(row, "bytes_h2d");
        double bb = num(row, "block_bytes");
        CHECK(sel > 0.0, "%s: nothing selected", mode);
        CHECK(sel == tr + hits, "%s: selected %g != transferred %g + hits %g", mode, sel, tr,
              hits);
        CHECK(h2d == tr * bb, "%s: bytes %g != blocks %g * block bytes %g", mode, h2d, tr, bb);
        CHECK_NEAR(num(row, "blocks_per_step") * num(row, "steps"), tr, 1e-6, "blocks/step");
        CHECK_NEAR(hit, hits / sel, 1e-12, "hit rate");
        CHECK(num(row, "batch") == 2 && num(row, "context") == 128, "grid point");
        CHECK(num(row, "host_arena_bytes") > 0.0, "host arena");
        if (strcmp(mode, "nosa-offload") == 0) {
            seen_offload = 1;
        } else if (strcmp(mode, "nosa-resident") == 0) {
            seen_resident = 1;
            CHECK(tr == 0.0 && h2d == 0.0, "resident moved %g blocks", tr);
            CHECK(hit == 1.0, "resident hit rate %g", hit);
        }
    }
    CHECK(seen_offload && seen_resident, "both modes present");
}

/* What a row moved and computed; equal between devices and runs of the same seed and point. */
static const char *const g_exact[] = {"blocks_selected", "blocks_transferred", "block_hits",
                                      "bytes_h2d", "bytes_d2h", "steps", "context_mean"};

/* The row of mode at batch in rows (a one-device run's), or NULL. */
static const cJSON *find_row(const cJSON *rows, const char *mode, int batch)
{
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        if (!strcmp(str(row, "mode"), mode) && num(row, "batch") == batch) return row;
    }
    return NULL;
}

/* The two-device run (batches 2 and 3) against the one-device runs at batch 2 and batch 3. */
static void check_multi(const cJSON *root, const cJSON *one_b2, const cJSON *one_b3)
{
    const cJSON *devs = cJSON_GetObjectItemCaseSensitive(root, "devices");
    CHECK(cJSON_IsArray(devs) && cJSON_GetArraySize(devs) == 2 &&
              cJSON_GetArrayItem(devs, 0)->valueint == 0 &&
              cJSON_GetArrayItem(devs, 1)->valueint == 1,
          "devices is not [0, 1]");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(root, "rows");
    /* per (mode, batch): device 0 alone, 1 alone, 0 together, 1 together, the aggregate */
    CHECK(cJSON_GetArraySize(rows) == 2 * 2 * 5, "rows: %d, want 20", cJSON_GetArraySize(rows));
    int alone = 0, together = 0, aggregate = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        const char *mode = str(row, "mode"), *dev = str(row, "device");
        const char *devices = str(row, "devices");
        int batch = (int)num(row, "batch");
        const cJSON *ref = find_row(batch == 2 ? one_b2 : one_b3, mode, batch);
        REQUIRE(ref, "no one-device row for %s batch %d", mode, batch);
        if (!strcmp(dev, "all")) {
            aggregate++;
            CHECK(!strcmp(devices, "0+1"), "aggregate devices %s", devices);
            CHECK(num(row, "tokens_per_s") > 0.0 && num(row, "scaling") > 0.0,
                  "%s b%d: aggregate tokens/s %g scaling %g", mode, batch,
                  num(row, "tokens_per_s"), num(row, "scaling"));
            for (size_t k = 0; k < 5; k++) /* the counters: twice one device's */
                CHECK(num(row, g_exact[k]) == 2 * num(ref, g_exact[k]),
                      "%s b%d aggregate %s: %g, want 2 x %g", mode, batch, g_exact[k],
                      num(row, g_exact[k]), num(ref, g_exact[k]));
            continue;
        }
        CHECK(!strcmp(dev, "0") || !strcmp(dev, "1"), "device %s", dev);
        if (!strcmp(devices, "0+1")) {
            together++;
            CHECK(num(row, "scaling") > 0.0, "%s b%d dev %s: scaling %g", mode, batch, dev,
                  num(row, "scaling"));
        } else {
            alone++;
            CHECK(!strcmp(devices, dev), "alone row of device %s says devices %s", dev, devices);
            CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(row, "scaling")),
                  "%s b%d dev %s: scaling set on an alone row", mode, batch, dev);
        }
        CHECK(cJSON_GetObjectItemCaseSensitive(row, "link_gbps") != NULL, "no link_gbps");
        for (size_t k = 0; k < sizeof(g_exact) / sizeof(g_exact[0]); k++)
            CHECK(num(row, g_exact[k]) == num(ref, g_exact[k]),
                  "%s b%d dev %s of %s: %s %.17g, one-device run %.17g", mode, batch, dev,
                  devices, g_exact[k], num(row, g_exact[k]), num(ref, g_exact[k]));
        CHECK(!strcmp(str(row, "greedy_hash"), str(ref, "greedy_hash")),
              "%s b%d dev %s of %s: greedy hash %s, one-device run %s", mode, batch, dev,
              devices, str(row, "greedy_hash"), str(ref, "greedy_hash"));
    }
    CHECK(alone == 8 && together == 8 && aggregate == 4, "alone %d together %d aggregate %d",
          alone, together, aggregate);
    const cJSON *sc = cJSON_GetObjectItemCaseSensitive(root, "scaling");
    REQUIRE(cJSON_IsArray(sc), "no scaling array");
    CHECK(cJSON_GetArraySize(sc) == 8, "scaling entries %d, want 8 (2 modes x 2 batches x 2 "
          "devices)", cJSON_GetArraySize(sc));
    cJSON_ArrayForEach(row, sc) {
        CHECK(num(row, "aggregate_over_alone") > 0.0, "scaling value %g",
              num(row, "aggregate_over_alone"));
        CHECK_NEAR(num(row, "target"), 1.9, 1e-12, "scaling target");
        CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(row, "same_greedy")),
              "%s b%g dev %s: greedy output differs alone and together", str(row, "mode"),
              num(row, "batch"), str(row, "device"));
    }
    /* --link-test: skipped without a GPU (no entry), else one per device alone, together and
     * the aggregate. */
    const cJSON *link = cJSON_GetObjectItemCaseSensitive(root, "link_test");
    CHECK(!link || (cJSON_IsArray(link) && cJSON_GetArraySize(link) == 5),
          "link_test entries %d", link ? cJSON_GetArraySize(link) : -1);
}

/* --logits only adds the logits' copy: the run says so, and every row decodes the same
 * greedy tokens (greedy_hash) as the argmax-only run. */
static void check_logits_run(const cJSON *plain, const cJSON *with_logits)
{
    const cJSON *dp = cJSON_GetObjectItemCaseSensitive(plain, "decode_output");
    const cJSON *dl = cJSON_GetObjectItemCaseSensitive(with_logits, "decode_output");
    CHECK(cJSON_IsString(dp) && strstr(dp->valuestring, "argmax only"), "decode_output: %s",
          cJSON_IsString(dp) ? dp->valuestring : "(none)");
    CHECK(cJSON_IsString(dl) && strstr(dl->valuestring, "--logits"), "--logits decode_output: %s",
          cJSON_IsString(dl) ? dl->valuestring : "(none)");
    const cJSON *ra = cJSON_GetObjectItemCaseSensitive(plain, "rows");
    const cJSON *rb = cJSON_GetObjectItemCaseSensitive(with_logits, "rows");
    CHECK(cJSON_GetArraySize(ra) > 0 && cJSON_GetArraySize(ra) == cJSON_GetArraySize(rb),
          "rows: %d vs %d with --logits", cJSON_GetArraySize(ra), cJSON_GetArraySize(rb));
    for (int i = 0; i < cJSON_GetArraySize(ra) && i < cJSON_GetArraySize(rb); i++) {
        const cJSON *ha = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(ra, i), "greedy_hash");
        const cJSON *hb = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(rb, i), "greedy_hash");
        CHECK(cJSON_IsString(ha) && cJSON_IsString(hb) && !strcmp(ha->valuestring, hb->valuestring),
              "row %d: greedy_hash %s, with --logits %s", i,
              cJSON_IsString(ha) ? ha->valuestring : "-", cJSON_IsString(hb) ? hb->valuestring : "-");
    }
}

/* The run with --workload correlated:0.995 --settle 5: a RHO that two decimals would round
 * to another (0.995 to 0.99) keeps its digits in the workload's name, so the rows of two such
 * workloads never share a label; and each slot decoded 5 untimed steps once in place, before
 * the 2 warm-up steps, so the timed steps' mean context is 128 + 5 + 2 + (6 - 1) / 2 (the
 * run without --settle: 5 less). */
static void check_rho_settle_run(const char *dir, const cJSON *plain_rows)
{
    cJSON *root = load_json(dir);
    const cJSON *row, *settle = cJSON_GetObjectItemCaseSensitive(root, "settle");
    CHECK(cJSON_IsNumber(settle) && settle->valuedouble == 5.0, "json settle");
    cJSON_ArrayForEach(row, cJSON_GetObjectItemCaseSensitive(root, "rows")) {
        CHECK(strcmp(str(row, "workload"), "correlated-0.995") == 0, "workload %s",
              str(row, "workload"));
        CHECK_NEAR(num(row, "rho"), 0.995, 1e-12, "rho");
        CHECK(fabs(num(row, "context_mean") - 137.5) < 1e-9, "%s: context_mean %.9g, want 137.5",
              str(row, "mode"), num(row, "context_mean"));
    }
    cJSON_ArrayForEach(row, plain_rows)
        CHECK(fabs(num(row, "context_mean") - 132.5) < 1e-9,
              "%s without --settle: context_mean %.9g, want 132.5", str(row, "mode"),
              num(row, "context_mean"));
    cJSON_Delete(root);
}

/* The run with --workload greedy --fill prefill --prompt text: each slot's input is its last
 * argmax, so offloaded and resident (equal tokens, step by step) end on the same tokens. */
static void check_greedy_run(const char *dir)
{
    cJSON *root = load_json(dir);
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(root, "rows"), *row;
    REQUIRE(cJSON_GetArraySize(rows) == 2, "greedy run: %d rows, want 2",
            cJSON_GetArraySize(rows));
    cJSON_ArrayForEach(row, rows) {
        CHECK(strcmp(str(row, "workload"), "greedy") == 0, "workload %s", str(row, "workload"));
        CHECK(num(row, "rho") == 0.0, "greedy rho %g", num(row, "rho"));
    }
    const char *a = str(cJSON_GetArrayItem(rows, 0), "greedy_hash");
    const char *b = str(cJSON_GetArrayItem(rows, 1), "greedy_hash");
    CHECK(strcmp(a, b) == 0, "greedy: offloaded ends on %s, resident on %s", a, b);
    cJSON_Delete(root);
}

/* Runs args (args[0] the binary, NULL-terminated); with log, its stdout and stderr go to that
 * file. Returns the wait status. */
static int bench_exec(const char *const *args, const char *log)
{
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork failed");
    if (pid == 0) {
        if (log) {
            int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0600);
            if (fd < 0 || dup2(fd, 1) < 0 || dup2(fd, 2) < 0) _exit(126);
        }
        execv(args[0], (char *const *)args);
        perror("execv");
        _exit(127);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid failed");
    return status;
}

/* Runs nosa-bench with bad arguments (NULL-terminated; its output to log): it must fail with
 * the message named. */
static void check_bench_refuses(const char *bench, const char *const *args, const char *log,
                                const char *want)
{
    const char *argv[16] = {bench};
    int n = 1;
    for (int i = 0; args[i]; i++) {
        REQUIRE(n < 15, "check_bench_refuses: too many arguments");
        argv[n++] = args[i];
    }
    argv[n] = NULL;
    int status = bench_exec(argv, log);
    char *out = test_read_file(log);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) != 0, "nosa-bench %s ...: status %d, want "
          "a failure", args[0], status);
    CHECK(out && strstr(out, want), "nosa-bench %s ...: output '%s' lacks '%s'", args[0],
          out ? out : "", want);
    free(out);
}

/* Runs nosa-bench on the tiny model's two grid points into dir; extra arguments appended. */
static void run_bench(const char *bench, const char *dir, const char *batch,
                      const char *const *extra, int n_extra)
{
    const char *args[32] = {bench, "--backend", "cpu", "--config", "tiny", "--modes",
                            "nosa-offload,nosa-resident", "--batch", batch, "--context", "128",
                            "--workload", "correlated:0.9", "--steps", "6", "--warmup", "2",
                            "--out", dir};
    int n = 19;
    for (int i = 0; i < n_extra; i++) args[n++] = extra[i];
    args[n] = NULL;
    REQUIRE(mkdir(dir, 0700) == 0, "mkdir %s failed", dir);
    int status = bench_exec(args, NULL);
    REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "nosa-bench failed (status %d)",
            status);
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2, "usage: test_bench_smoke PATH/nosa-bench");
    char dir[] = "/tmp/nosa-bench-smoke-XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp failed");
    char one2[4200], one3[4200], two[4200], lg2[4200], r995[4200], greedy[4200], path[4300];
    snprintf(one2, sizeof(one2), "%s/one-b2", dir);
    snprintf(one3, sizeof(one3), "%s/one-b3", dir);
    snprintf(two, sizeof(two), "%s/two", dir);
    snprintf(lg2, sizeof(lg2), "%s/logits-b2", dir);
    snprintf(r995, sizeof(r995), "%s/rho-0.995", dir);
    snprintf(greedy, sizeof(greedy), "%s/greedy", dir);
    static const char *const multi[] = {"--devices", "0,1", "--link-test", "1M"};
    static const char *const logits[] = {"--logits"};
    static const char *const rho3[] = {"--workload", "correlated:0.995", /* the later wins */
                                       "--settle", "5"};
    static const char *const greedy_args[] = {"--workload", "greedy", "--fill", "prefill",
                                              "--prompt", "text"};
    run_bench(argv[1], one2, "2", NULL, 0);
    run_bench(argv[1], one3, "3", NULL, 0);
    run_bench(argv[1], two, "2,3", multi, 4);
    run_bench(argv[1], lg2, "2", logits, 1);
    run_bench(argv[1], r995, "2", rho3, 4);
    run_bench(argv[1], greedy, "2", greedy_args, 6);
    check_greedy_run(greedy);
    static const char *const no_prefill[] = {"--prompt", "text", "--fill", "shared", NULL};
    static const char *const bad_prompt[] = {"--prompt", "words", NULL};
    snprintf(path, sizeof(path), "%s/refused.log", dir);
    check_bench_refuses(argv[1], no_prefill, path, "--prompt text needs --fill prefill");
    check_bench_refuses(argv[1], bad_prompt, path, "--prompt: 'words' (random, text)");
    cJSON *r2 = load_json(one2), *r3 = load_json(one3), *rm = load_json(two);
    cJSON *rl = load_json(lg2);
    check_single(r2);
    check_rho_settle_run(r995, cJSON_GetObjectItemCaseSensitive(r2, "rows"));
    check_logits_run(r2, rl);
    check_multi(rm, cJSON_GetObjectItemCaseSensitive(r2, "rows"),
                cJSON_GetObjectItemCaseSensitive(r3, "rows"));
    snprintf(path, sizeof(path), "%s/tokens_per_s_correlated_0_90_ctx128.png", one2);
    if (on_path("gnuplot"))
        CHECK(access(path, R_OK) == 0, "plot %s missing", path);
    else
        printf("gnuplot not installed: plot not checked\n");
    cJSON_Delete(r2);
    cJSON_Delete(r3);
    cJSON_Delete(rm);
    cJSON_Delete(rl);
    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_report("test_bench_smoke");
}
