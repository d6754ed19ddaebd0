/* bench_output.c: nosa-bench's results: the row list, the terminal table, CSV, JSON (cJSON)
 * and the gnuplot PNGs (tokens/s against batch, a line per backend, mode and device phase,
 * one figure per workload and context). A value that is not available (NAN) is an empty CSV
 * field, a JSON null and "-" in the table. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "log.h"

int bench_results_add(struct bench_results *r, const struct bench_point *p)
{
    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 32;
        struct bench_point *rows = realloc(r->rows, (size_t)cap * sizeof(*rows));
        if (!rows) return -ENOMEM;
        r->rows = rows;
        r->cap = cap;
    }
    r->rows[r->n++] = *p;
    return 0;
}

void bench_results_free(struct bench_results *r)
{
    if (!r) return;
    free(r->rows);
    r->rows = NULL;
    r->n = r->cap = 0;
}

static void bench_fmt(char *buf, size_t len, int prec, double v)
{
    if (isnan(v))
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.*f", prec, v);
}

void bench_output_table(const struct bench_results *r)
{
    printf("%-5s %-17s %-16s %4s %-7s %7s %5s %10s %9s %9s %8s %9s %6s %8s %8s %9s %9s\n",
           "bknd", "mode", "workload", "dev", "devices", "context", "batch", "tok/s", "step_ms",
           "blk/step", "pf/step", "MB/step", "hit", "copyGB/s", "linkGB/s", "gpuMB/seq",
           "hostMB");
    for (int i = 0; i < r->n; i++) {
        const struct bench_point *p = &r->rows[i];
        char tps[32], ms[32], blk[32], pf[32], mb[32], hit[32], bw[32], link[32], gpu[32],
            host[32];
        bench_fmt(tps, sizeof(tps), 1, p->tokens_per_s);
        bench_fmt(ms, sizeof(ms), 3, p->step_ms);
        bench_fmt(blk, sizeof(blk), 1, p->blocks_per_step);
        bench_fmt(pf, sizeof(pf), 1, p->prefetch_per_step);
        bench_fmt(mb, sizeof(mb), 2, p->bytes_h2d_per_step / 1e6);
        bench_fmt(hit, sizeof(hit), 4, p->hit_rate);
        bench_fmt(bw, sizeof(bw), 2, p->copy_gbps);
        bench_fmt(link, sizeof(link), 2, p->link_gbps);
        bench_fmt(gpu, sizeof(gpu), 1, p->gpu_mem_per_seq / 1e6);
        bench_fmt(host, sizeof(host), 1, p->host_arena_bytes / 1e6);
        printf("%-5s %-17s %-16s %4s %-7s %7d %5d %10s %9s %9s %8s %9s %6s %8s %8s %9s %9s%s\n",
               p->backend, p->mode, p->workload, p->device, p->devices, p->context, p->batch,
               tps, ms, blk, pf, mb, hit, bw, link, gpu, host,
               p->dense_max_batch == p->batch ? " (largest fitting batch)" : "");
    }
    /* The backend's phase timers (nosa_step_stats); "-" where it reports none (cpu). */
    printf("\nstep time split, ms per step\n%-5s %-17s %-16s %4s %-7s %7s %5s %8s %8s %8s %8s "
           "%8s\n", "bknd", "mode", "workload", "dev", "devices", "context", "batch", "gemm",
           "attn", "select", "copy", "other");
    for (int i = 0; i < r->n; i++) {
        const struct bench_point *p = &r->rows[i];
        const double v[5] = {p->gemm_ms, p->attn_ms, p->select_ms, p->copy_ms, p->other_ms};
        char f[5][32];
        for (int k = 0; k < 5; k++)
            bench_fmt(f[k], sizeof(f[k]), 3, isnan(p->gemm_ms) ? NAN : v[k]);
        printf("%-5s %-17s %-16s %4s %-7s %7d %5d %8s %8s %8s %8s %8s\n", p->backend, p->mode,
               p->workload, p->device, p->devices, p->context, p->batch, f[0], f[1], f[2], f[3],
               f[4]);
    }
}

/* The columns, in order, for CSV and JSON: name, how to read it off a row. */
/* STR: char array in the row; STRP: const char * in the row. */
enum bench_col_kind { BENCH_COL_STR, BENCH_COL_STRP, BENCH_COL_INT, BENCH_COL_U64, BENCH_COL_NUM };
struct bench_col {
    const char *name;
    enum bench_col_kind kind;
    size_t off;
};
#define COL(n, k) {#n, BENCH_COL_##k, offsetof(struct bench_point, n)}
static const struct bench_col bench_cols[] = {
    COL(backend, STR),         COL(mode, STR),
    COL(workload, STR),        COL(rho, NUM),
    COL(device, STR),          COL(devices, STR),
    COL(batch, INT),           COL(context, INT),
    COL(context_mean, NUM),    COL(steps, INT),
    COL(tokens_per_s, NUM),    COL(scaling, NUM),
    COL(step_ms, NUM),
    COL(gemm_ms, NUM),         COL(attn_ms, NUM),
    COL(select_ms, NUM),       COL(copy_ms, NUM),
    COL(other_ms, NUM),        COL(blocks_per_step, NUM),
    COL(prefetch_per_step, NUM),
    COL(bytes_h2d_per_step, NUM), COL(bytes_d2h_per_step, NUM),
    COL(copy_gbps, NUM),       COL(link_gbps, NUM),
    COL(hit_rate, NUM),
    COL(blocks_selected, U64), COL(blocks_transferred, U64),
    COL(block_hits, U64),      COL(blocks_prefetched, U64),
    COL(bytes_h2d, U64),
    COL(bytes_d2h, U64),       COL(block_bytes, U64),
    COL(gpu_mem_bytes, NUM),   COL(gpu_mem_per_seq, NUM),
    COL(gpu_mem_source, STRP),  COL(host_arena_bytes, NUM),
    COL(host_kv_bytes, NUM),   COL(dense_max_batch, INT),
    COL(fill_s, NUM),          COL(greedy_hash, STR),
};
#undef COL
#define BENCH_NCOLS (sizeof(bench_cols) / sizeof(bench_cols[0]))

/* Every numeric column as a double (the counters are exact below 2^53). */
static double bench_col_num(const struct bench_point *p, const struct bench_col *c)
{
    const char *base = (const char *)p + c->off;
    if (c->kind == BENCH_COL_U64) {
        uint64_t v;
        memcpy(&v, base, sizeof(v));
        return (double)v;
    }
    double d;
    memcpy(&d, base, sizeof(d));
    return d;
}

static const char *bench_col_str(const struct bench_point *p, const struct bench_col *c)
{
    const char *base = (const char *)p + c->off;
    if (c->kind == BENCH_COL_STRP) {
        const char *s;
        memcpy(&s, base, sizeof(s));
        return s ? s : "";
    }
    return base;
}

static int bench_col_int(const struct bench_point *p, const struct bench_col *c)
{
    int v;
    memcpy(&v, (const char *)p + c->off, sizeof(v));
    return v;
}

int bench_output_csv(const struct bench_results *r, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        int e = errno;
        nosa_set_error(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    for (size_t c = 0; c < BENCH_NCOLS; c++)
        fprintf(f, "%s%s", c ? "," : "", bench_cols[c].name);
    fputc('\n', f);
    for (int i = 0; i < r->n; i++) {
        const struct bench_point *p = &r->rows[i];
        for (size_t c = 0; c < BENCH_NCOLS; c++) {
            const struct bench_col *col = &bench_cols[c];
            if (c) fputc(',', f);
            if (col->kind == BENCH_COL_STR || col->kind == BENCH_COL_STRP) {
                fputs(bench_col_str(p, col), f);
            } else if (col->kind == BENCH_COL_INT) {
                fprintf(f, "%d", bench_col_int(p, col));
            } else {
                double v = bench_col_num(p, col);
                if (!isnan(v)) fprintf(f, "%.9g", v);
            }
        }
        fputc('\n', f);
    }
    int rc = 0;
    if (ferror(f) | fclose(f)) {
        nosa_set_error(err, errlen, "%s: write failed", path);
        rc = -EIO;
    }
    return rc;
}

static cJSON *bench_row_json(const struct bench_point *p)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    for (size_t c = 0; c < BENCH_NCOLS; c++) {
        const struct bench_col *col = &bench_cols[c];
        cJSON *v;
        if (col->kind == BENCH_COL_STR || col->kind == BENCH_COL_STRP) {
            v = cJSON_CreateString(bench_col_str(p, col));
        } else if (col->kind == BENCH_COL_INT) {
            v = cJSON_CreateNumber(bench_col_int(p, col));
        } else {
            double d = bench_col_num(p, col);
            v = isnan(d) ? cJSON_CreateNull() : cJSON_CreateNumber(d);
        }
        if (!v || !cJSON_AddItemToObject(o, col->name, v)) {
            cJSON_Delete(v);
            cJSON_Delete(o);
            return NULL;
        }
    }
    return o;
}

/* Adds a copy of arr (when not NULL) as root[key]; 0 when out of memory. */
static int bench_json_add_copy(cJSON *root, const char *key, const cJSON *arr)
{
    if (!arr) return 1;
    cJSON *dup = cJSON_Duplicate(arr, 1);
    if (!dup) return 0;
    return cJSON_AddItemToObject(root, key, dup) || (cJSON_Delete(dup), 0);
}

int bench_output_json(const struct bench_results *r, const struct bench_opts *o,
                      const char *model_desc, const char *fill_desc,
                      const struct bench_json_extra *extra, const char *path, char *err,
                      size_t errlen)
{
    int rc = -ENOMEM;
    char *text = NULL;
    FILE *f = NULL;
    cJSON *rows = NULL;
    cJSON *root = cJSON_CreateObject();
    if (!root) goto fail;
    cJSON_AddStringToObject(root, "driver", "in-process (backend called directly; no engine, "
                                            "coordinator or kv-host process)");
    cJSON_AddStringToObject(root, "model", model_desc);
    cJSON_AddStringToObject(root, "fill", fill_desc);
    cJSON_AddStringToObject(root, "decode_output", bench_decode_output_desc(o));
    cJSON_AddNumberToObject(root, "steps", o->steps);
    cJSON_AddNumberToObject(root, "warmup", o->warmup);
    cJSON_AddNumberToObject(root, "settle", o->settle);
    cJSON_AddNumberToObject(root, "prefetch_blocks", o->prefetch_blocks);
    cJSON_AddNumberToObject(root, "seed", (double)o->seed);
    cJSON *devs = cJSON_CreateIntArray(o->devices, o->n_devices);
    if (!devs || !cJSON_AddItemToObject(root, "devices", devs)) {
        cJSON_Delete(devs);
        goto fail;
    }
    rows = cJSON_AddArrayToObject(root, "rows");
    if (!rows) goto fail;
    for (int i = 0; i < r->n; i++) {
        cJSON *row = bench_row_json(&r->rows[i]);
        if (!row) goto fail;
        cJSON_AddItemToArray(rows, row);
    }
    if (extra && !(bench_json_add_copy(root, "ratios", extra->ratios) &&
                   bench_json_add_copy(root, "scaling", extra->scaling) &&
                   bench_json_add_copy(root, "link_test", extra->link_test)))
        goto fail;
    text = cJSON_Print(root);
    if (!text) goto fail;
    f = fopen(path, "w");
    if (!f) {
        rc = -errno;
        nosa_set_error(err, errlen, "%s: %s", path, strerror(-rc));
        goto out;
    }
    fputs(text, f);
    fputc('\n', f);
    rc = (ferror(f) | fclose(f)) ? -EIO : 0;
    f = NULL;
    if (rc) nosa_set_error(err, errlen, "%s: write failed", path);
    goto out;
fail:
    nosa_set_error(err, errlen, "json: out of memory");
out:
    if (f) fclose(f);
    free(text);
    cJSON_Delete(root);
    return rc;
}

/* The directory of gnuplot on PATH, or -ENOENT. */
static int bench_find_gnuplot(char *out, size_t len)
{
    const char *path = getenv("PATH");
    if (!path) return -ENOENT;
    const char *p = path;
    while (*p) {
        const char *e = strchr(p, ':');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0 && (size_t)snprintf(out, len, "%.*s/gnuplot", (int)n, p) < len &&
            access(out, X_OK) == 0)
            return 0;
        p += n + (e ? 1 : 0);
    }
    return -ENOENT;
}

static void bench_file_tag(const char *s, char *out, size_t len)
{
    size_t i = 0;
    for (; s[i] && i + 1 < len; i++) {
        char ch = s[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        out[i] = ok ? ch : '_';
    }
    out[i] = '\0';
}

static int bench_run_gnuplot(const char *gnuplot, const char *script, char *err, size_t errlen)
{
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        nosa_set_error(err, errlen, "fork: %s", strerror(e));
        return -e;
    }
    if (pid == 0) {
        execl(gnuplot, "gnuplot", script, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        nosa_set_error(err, errlen, "gnuplot %s failed (status %d)", script, status);
        return -EIO;
    }
    return 0;
}

/* Rows on one line of a figure: same backend and mode, same device and phase. */
static int bench_same_series(const struct bench_point *a, const struct bench_point *b)
{
    return !strcmp(a->backend, b->backend) && !strcmp(a->mode, b->mode) &&
           !strcmp(a->device, b->device) && !strcmp(a->devices, b->devices);
}

/* One figure: rows of workload wl at context ctx; a series per distinct (backend, mode,
 * device, devices). */
static int bench_plot_one(const struct bench_results *r, const char *dir, const char *gnuplot,
                          const char *wl, int ctx, char *err, size_t errlen)
{
    char tag[40], dat[4096], gp[4096], png[4096];
    bench_file_tag(wl, tag, sizeof(tag));
    snprintf(dat, sizeof(dat), "%s/plot_%s_ctx%d.dat", dir, tag, ctx);
    snprintf(gp, sizeof(gp), "%s/plot_%s_ctx%d.gp", dir, tag, ctx);
    snprintf(png, sizeof(png), "%s/tokens_per_s_%s_ctx%d.png", dir, tag, ctx);
    FILE *fd = fopen(dat, "w"), *fg = fopen(gp, "w");
    if (!fd || !fg) {
        if (fd) fclose(fd);
        if (fg) fclose(fg);
        nosa_set_error(err, errlen, "%s: cannot write plot files", dir);
        return -EIO;
    }
    fprintf(fg, "set terminal pngcairo size 900,600 noenhanced\nset output '%s'\n", png);
    fprintf(fg, "set title 'decode tokens/s vs batch | workload %s | context %d | in-process "
                "driver'\n", wl, ctx);
    fprintf(fg, "set xlabel 'batch (sequences)'\nset ylabel 'decode tokens/s'\n"
                "set logscale x 2\nset key top left\nset grid\n");
    int series = 0, multi = 0;
    for (int i = 0; i < r->n; i++) multi |= r->rows[i].dev_index != 0;
    for (int i = 0; i < r->n; i++) {
        const struct bench_point *p = &r->rows[i];
        if (p->context != ctx || strcmp(p->workload, wl)) continue;
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = r->rows[j].context == ctx && !strcmp(r->rows[j].workload, wl) &&
                   bench_same_series(&r->rows[j], p);
        if (seen) continue;
        if (series) fprintf(fd, "\n\n");
        for (int j = i; j < r->n; j++) {
            const struct bench_point *q = &r->rows[j];
            if (q->context == ctx && !strcmp(q->workload, wl) && bench_same_series(q, p) &&
                !isnan(q->tokens_per_s))
                fprintf(fd, "%d %.6g\n", q->batch, q->tokens_per_s);
        }
        /* One device: "backend mode"; several: which device and with which others. */
        char who[96] = "";
        if (multi) snprintf(who, sizeof(who), " dev %s of %s", p->device, p->devices);
        fprintf(fg, "%s '%s' index %d using 1:2 with linespoints title '%s %s%s'",
                series ? ", \\\n    " : "plot ", dat, series, p->backend, p->mode, who);
        series++;
    }
    fputc('\n', fg);
    int bad = ferror(fd) | ferror(fg);
    bad |= fclose(fd) | fclose(fg);
    if (bad) {
        nosa_set_error(err, errlen, "%s: cannot write plot files", dir);
        return -EIO;
    }
    return series ? bench_run_gnuplot(gnuplot, gp, err, errlen) : 0;
}

int bench_output_plots(const struct bench_results *r, const char *dir, char *err,
                       size_t errlen)
{
    char gnuplot[4096];
    if (bench_find_gnuplot(gnuplot, sizeof(gnuplot)) != 0) {
        printf("plot: skipped: gnuplot is not installed (Debian: apt-get install gnuplot-nox)\n");
        return -ENOENT;
    }
    for (int i = 0; i < r->n; i++) {
        const struct bench_point *p = &r->rows[i];
        int seen = 0;
        for (int j = 0; j < i && !seen; j++)
            seen = r->rows[j].context == p->context && !strcmp(r->rows[j].workload, p->workload);
        if (seen) continue;
        int rc = bench_plot_one(r, dir, gnuplot, p->workload, p->context, err, errlen);
        if (rc) return rc;
    }
    return 0;
}
