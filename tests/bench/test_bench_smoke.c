/* test_bench_smoke.c: runs nosa-bench (argv[1]) on the cpu backend with the tiny model at two
 * grid points (nosa-offload and nosa-resident, batch 2, context 128, the correlated workload)
 * and checks that bench.csv and bench.json exist and parse, agree with each other, and hold
 * sane figures: tokens/s > 0, hit rate in [0, 1], selected == transferred + hits, bytes moved
 * == blocks moved * block bytes, nothing moved when resident; and the plot when gnuplot is
 * installed. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void check_csv(const char *path, int *rows)
{
    char *text = slurp(path);
    REQUIRE(text, "%s missing", path);
    const char *nl = strchr(text, '\n');
    REQUIRE(nl, "csv has no header line");
    int cols = count_fields(text, (size_t)(nl - text));
    CHECK(strncmp(text, "backend,mode,workload,", 22) == 0, "csv header: %.40s", text);
    *rows = 0;
    for (const char *line = nl + 1; *line;) {
        const char *end = strchr(line, '\n');
        REQUIRE(end, "csv: unterminated line");
        CHECK(count_fields(line, (size_t)(end - line)) == cols, "csv row %d: field count",
              *rows);
        (*rows)++;
        line = end + 1;
    }
    free(text);
}

static void check_json(const char *path, int csv_rows)
{
    char *text = slurp(path);
    REQUIRE(text, "%s missing", path);
    cJSON *root = cJSON_Parse(text);
    REQUIRE(root, "bench.json does not parse");
    const cJSON *driver = cJSON_GetObjectItemCaseSensitive(root, "driver");
    CHECK(cJSON_IsString(driver) && strstr(driver->valuestring, "in-process"), "driver label");
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(root, "rows");
    REQUIRE(cJSON_IsArray(rows), "rows is not an array");
    CHECK(cJSON_GetArraySize(rows) == 2, "rows: %d, want 2", cJSON_GetArraySize(rows));
    CHECK(cJSON_GetArraySize(rows) == csv_rows, "json rows %d vs csv rows %d",
          cJSON_GetArraySize(rows), csv_rows);
    CHECK(cJSON_IsArray(cJSON_GetObjectItemCaseSensitive(root, "ratios")), "ratios array");
    int seen_offload = 0, seen_resident = 0;
    const cJSON *row;
    cJSON_ArrayForEach(row, rows) {
        const cJSON *mode = cJSON_GetObjectItemCaseSensitive(row, "mode");
        const cJSON *wl = cJSON_GetObjectItemCaseSensitive(row, "workload");
        REQUIRE(cJSON_IsString(mode) && cJSON_IsString(wl), "mode/workload labels");
        CHECK(strcmp(wl->valuestring, "correlated-0.90") == 0, "workload %s", wl->valuestring);
        CHECK_NEAR(num(row, "rho"), 0.9, 1e-12, "rho");
        double tps = num(row, "tokens_per_s"), hit = num(row, "hit_rate");
        CHECK(tps > 0.0, "%s: tokens/s %g", mode->valuestring, tps);
        CHECK(hit >= 0.0 && hit <= 1.0, "%s: hit rate %g", mode->valuestring, hit);
        double sel = num(row, "blocks_selected"), tr = num(row, "blocks_transferred");
        double hits = num(row, "block_hits"), h2d = num(row, "bytes_h2d");
        double bb = num(row, "block_bytes");
        CHECK(sel > 0.0, "%s: nothing selected", mode->valuestring);
        CHECK(sel == tr + hits, "%s: selected %g != transferred %g + hits %g",
              mode->valuestring, sel, tr, hits);
        CHECK(h2d == tr * bb, "%s: bytes %g != blocks %g * block bytes %g", mode->valuestring,
              h2d, tr, bb);
        CHECK_NEAR(num(row, "blocks_per_step") * num(row, "steps"), tr, 1e-6, "blocks/step");
        CHECK_NEAR(hit, hits / sel, 1e-12, "hit rate");
        CHECK(num(row, "batch") == 2 && num(row, "context") == 128, "grid point");
        CHECK(num(row, "host_arena_bytes") > 0.0, "host arena");
        if (strcmp(mode->valuestring, "nosa-offload") == 0) {
            seen_offload = 1;
        } else if (strcmp(mode->valuestring, "nosa-resident") == 0) {
            seen_resident = 1;
            CHECK(tr == 0.0 && h2d == 0.0, "resident moved %g blocks", tr);
            CHECK(hit == 1.0, "resident hit rate %g", hit);
        }
    }
    CHECK(seen_offload && seen_resident, "both modes present");
    cJSON_Delete(root);
    free(text);
}

int main(int argc, char **argv)
{
    REQUIRE(argc == 2, "usage: test_bench_smoke PATH/nosa-bench");
    char dir[] = "/tmp/nosa-bench-smoke-XXXXXX";
    REQUIRE(mkdtemp(dir), "mkdtemp failed");
    pid_t pid = fork();
    REQUIRE(pid >= 0, "fork failed");
    if (pid == 0) {
        execl(argv[1], argv[1], "--backend", "cpu", "--config", "tiny", "--modes",
              "nosa-offload,nosa-resident", "--batch", "2", "--context", "128", "--workload",
              "correlated:0.9", "--steps", "6", "--warmup", "2", "--out", dir, (char *)NULL);
        perror("execl");
        _exit(127);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid, "waitpid failed");
    REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0, "nosa-bench failed (status %d)",
            status);
    char path[4200];
    int csv_rows = 0;
    snprintf(path, sizeof(path), "%s/bench.csv", dir);
    check_csv(path, &csv_rows);
    snprintf(path, sizeof(path), "%s/bench.json", dir);
    check_json(path, csv_rows);
    snprintf(path, sizeof(path), "%s/tokens_per_s_correlated_0_90_ctx128.png", dir);
    if (on_path("gnuplot"))
        CHECK(access(path, R_OK) == 0, "plot %s missing", path);
    else
        printf("gnuplot not installed: plot not checked\n");
    char cmd[4300];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return test_report("test_bench_smoke");
}
