/* bench_grid.c: what runs at each (backend, mode, context) of the grid, given device memory,
 * and, computed from the rows afterwards, issue 6's target ratios and issue 8's multi-device
 * scaling. */
#include <cjson/cJSON.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "log.h"

#define BENCH_LINK_GBPS 55.0 /* PCIe Gen5 x16: the design's host-to-device budget */

static void bench_sort_ints(int *v, int n)
{
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            int t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
}

int bench_grid_instance(struct bench_ctx *c, const struct nosa_backend_ops *ops,
                        const struct bench_mode *mode, int context, int max_slots,
                        struct bench_results *res, char *err, size_t errlen)
{
    const struct bench_opts *o = c->opts;
    const struct nosa_model_config *cfg = &c->model->cfg;
    int max_ctx = bench_run_max_context(o, cfg, context);
    int on_device = strcmp(ops->name, "cpu") != 0;
    double fixed = 0.0, per_seq = 0.0, limit = (double)o->gpu_mem_limit;
    const char *src = "estimated";
    int rc;
    if (on_device) {
        /* Every device runs the same batches: the one with the least room decides. */
        double free_min = INFINITY;
        for (int d = 0; d < o->n_devices; d++) {
            double fx, ps;
            uint64_t f, t;
            if ((rc = bench_run_probe_memory(c, ops, mode, max_ctx, o->devices[d], &fx, &ps,
                                             err, errlen)))
                return rc;
            if ((rc = bench_mem_device_info(o->devices[d], &f, &t, err, errlen))) return rc;
            fixed = fx > fixed ? fx : fixed;
            per_seq = ps > per_seq ? ps : per_seq;
            free_min = (double)f < free_min ? (double)f : free_min;
        }
        if (limit <= 0.0) limit = free_min;
        src = "measured";
    } else {
        per_seq = bench_mem_estimate_per_seq(cfg, mode->offload, o->pool_blocks, max_ctx);
        fixed = bench_mem_estimate_weights(cfg);
    }
    int fit = max_slots;
    if (limit > 0.0 && per_seq > 0.0) {
        double f = floor((limit - fixed) / per_seq);
        fit = f < 0.0 ? 0 : f > max_slots ? max_slots : (int)f;
    }
    int dense = mode->attn == NOSA_ATTN_DENSE && limit > 0.0;
    for (;;) {
        int batches[BENCH_MAX_LIST + 1], n = 0, dense_max = 0;
        for (int i = 0; i < o->n_batches; i++) {
            if (o->batches[i] <= fit) {
                batches[n++] = o->batches[i];
            } else {
                printf("skip: %s %s context %d batch %d: does not fit (%.3f GB per sequence, "
                       "%.3f GB fixed, %.3f GB limit, %s)\n", ops->name, mode->name, context,
                       o->batches[i], per_seq / 1e9, fixed / 1e9, limit / 1e9, src);
            }
        }
        if (dense) {
            dense_max = fit < o->dense_max_cap ? fit : o->dense_max_cap;
            int present = 0;
            for (int i = 0; i < n; i++) present |= batches[i] == dense_max;
            if (dense_max > 0 && !present) batches[n++] = dense_max;
            printf("dense: %s context %d: largest batch that fits: %d (%.3f GB per sequence, "
                   "%.3f GB fixed, %.3f GB limit, %s%s)\n", ops->name, context, dense_max,
                   per_seq / 1e9, fixed / 1e9, limit / 1e9, src,
                   fit > o->dense_max_cap ? "; capped by --dense-max" : "");
        }
        if (n == 0) return 0;
        bench_sort_ints(batches, n);
        struct bench_instance_spec sp = {
            .backend_name = ops->name,
            .mode = mode,
            .context = context,
            .batches = batches,
            .n_batches = n,
            .dense_max_batch = dense_max,
            .gpu_per_seq = per_seq,
            .gpu_mem_source = src,
        };
        int rows_before = res->n;
        rc = bench_run_instance(c, ops, &sp, res, err, errlen);
        if (rc != -ENOMEM) return rc;
        /* The device refused what the memory model let through (the 1-vs-2-slot probe does
         * not see allocations that grow faster than the slots, nor fragmentation). Dense
         * needs its true largest batch: when the refusal came before any point ran (at
         * create), shrink the batch by 2% and try again; otherwise keep the points run. */
        if (!dense || dense_max <= 1 || res->n != rows_before) {
            printf("skip: %s %s context %d: out of memory: %s\n", ops->name, mode->name,
                   context, err);
            return 0;
        }
        int smaller = dense_max - (dense_max + 49) / 50;
        printf("dense: %s context %d: batch %d out of memory at create (%s); trying %d\n",
               ops->name, context, dense_max, err, smaller);
        fit = smaller;
    }
}

/* q was measured like p: same backend, workload and context, on the same device (or the
 * aggregate), alone or with as many other devices. */
static int bench_same_cell(const struct bench_point *p, const struct bench_point *q)
{
    return !strcmp(q->backend, p->backend) && !strcmp(q->workload, p->workload) &&
           q->context == p->context && q->dev_index == p->dev_index &&
           q->n_together == p->n_together;
}

/* The row of mode at batch measured like p; batch < 0: the largest batch. */
static const struct bench_point *bench_find(const struct bench_results *r,
                                            const struct bench_point *p, const char *mode,
                                            int batch)
{
    const struct bench_point *best = NULL;
    for (int i = 0; i < r->n; i++) {
        const struct bench_point *q = &r->rows[i];
        if (!bench_same_cell(p, q) || strcmp(q->mode, mode)) continue;
        if (batch >= 0 ? q->batch == batch : (!best || q->batch > best->batch)) best = q;
    }
    return best;
}

/* The largest batch that both modes ran at. */
static int bench_common_batch(const struct bench_results *r, const struct bench_point *p,
                              const char *mode_a, const char *mode_b)
{
    int best = -1;
    for (int i = 0; i < r->n; i++) {
        const struct bench_point *q = &r->rows[i];
        if (!bench_same_cell(p, q) || strcmp(q->mode, mode_a) || q->batch <= best) continue;
        if (bench_find(r, p, mode_b, q->batch)) best = q->batch;
    }
    return best;
}

static double bench_best_tps(const struct bench_results *r, const struct bench_point *p,
                             const char *mode)
{
    double best = NAN;
    for (int i = 0; i < r->n; i++) {
        const struct bench_point *q = &r->rows[i];
        if (!bench_same_cell(p, q) || strcmp(q->mode, mode)) continue;
        /* dense: its largest fitting batch when known, else its best batch */
        if (q->dense_max_batch > 0 && q->batch != q->dense_max_batch) continue;
        if (isnan(best) || q->tokens_per_s > best) best = q->tokens_per_s;
    }
    return best;
}

/* Offload rows with a resident twin (same attention, workload, context, batch): the copy time
 * is taken as the step-time difference, so copy_gbps = bytes_h2d per step / that. This
 * overstates the copy's cost where the offloaded path does other extra work (pool diff). */
static void bench_derive_copy(struct bench_results *r)
{
    for (int i = 0; i < r->n; i++) {
        struct bench_point *p = &r->rows[i];
        const char *dash = strrchr(p->mode, '-');
        /* The aggregate's step time is a span over devices, not one device's step. */
        if (!dash || strcmp(dash, "-offload") || p->dev_index < 0) continue;
        char twin[40];
        snprintf(twin, sizeof(twin), "%.*s-resident", (int)(dash - p->mode), p->mode);
        const struct bench_point *q = bench_find(r, p, twin, p->batch);
        if (!q || p->bytes_h2d == 0 || !isnan(p->copy_ms)) continue; /* measured */
        double copy_s = (p->step_ms - q->step_ms) * 1e-3;
        if (copy_s > 0.0) {
            p->copy_ms = copy_s * 1e3;
            p->copy_gbps = p->bytes_h2d_per_step / copy_s / 1e9;
        }
    }
}

/* A number, or null when it is not available (NAN). 0 when out of memory. */
static int bench_json_num(cJSON *o, const char *key, double v)
{
    return isnan(v) ? cJSON_AddNullToObject(o, key) != NULL
                    : cJSON_AddNumberToObject(o, key, v) != NULL;
}

static int bench_ratio_add(cJSON *arr, const struct bench_point *p, const char *name,
                           double value, double target, int batch, const char *note)
{
    cJSON *o = cJSON_CreateObject();
    if (!o) return -ENOMEM;
    cJSON_AddItemToArray(arr, o);
    int ok = cJSON_AddStringToObject(o, "backend", p->backend) &&
             cJSON_AddStringToObject(o, "workload", p->workload) &&
             cJSON_AddNumberToObject(o, "context", p->context) &&
             cJSON_AddStringToObject(o, "ratio", name) && bench_json_num(o, "value", value) &&
             cJSON_AddNumberToObject(o, "target", target) &&
             cJSON_AddBoolToObject(o, "met", !isnan(value) && value >= target) &&
             cJSON_AddNumberToObject(o, "batch", batch) &&
             cJSON_AddStringToObject(o, "note", note);
    if (!ok) return -ENOMEM;
    printf("%-5s %-16s %7d %-34s %9.3f %7.2f %-4s %s\n", p->backend, p->workload, p->context,
           name, value, target, isnan(value) ? "-" : value >= target ? "yes" : "NO", note);
    return 0;
}

cJSON *bench_ratios(struct bench_results *r)
{
    bench_derive_copy(r);
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return NULL;
    printf("\ntarget ratios (issue 6)\n%-5s %-16s %7s %-34s %9s %7s %-4s %s\n", "bknd",
           "workload", "context", "ratio", "value", "target", "met", "note");
    int rc = 0;
    for (int i = 0; i < r->n && !rc; i++) {
        const struct bench_point *p = &r->rows[i];
        /* One device's figures: the first device alone (several devices: see bench_scaling). */
        if (strcmp(p->mode, "nosa-offload") || p->dev_index != 0 || p->n_together != 1)
            continue;
        if (bench_find(r, p, p->mode, -1) != p) continue;
        char note[128];
        int b = bench_common_batch(r, p, "nosa-offload", "infllmv2-offload");
        if (b > 0) {
            double v = bench_find(r, p, "nosa-offload", b)->tokens_per_s /
                       bench_find(r, p, "infllmv2-offload", b)->tokens_per_s;
            snprintf(note, sizeof(note), "tokens/s at batch %d", b);
            rc = bench_ratio_add(arr, p, "nosa_offload/infllmv2_offload", v, 2.5, b, note);
        }
        double dense = bench_best_tps(r, p, "dense-resident");
        if (!rc && !isnan(dense)) {
            double v = bench_best_tps(r, p, "nosa-offload") / dense;
            snprintf(note, sizeof(note), "best tokens/s vs dense at its largest batch%s",
                     p->context >= 65536 ? "" : " (target is for 64K+)");
            rc = bench_ratio_add(arr, p, "nosa_offload/dense_largest_batch", v, 5.0, p->batch,
                                 note);
        }
        b = bench_common_batch(r, p, "nosa-offload", "nosa-resident");
        if (!rc && b > 0) {
            const struct bench_point *off = bench_find(r, p, "nosa-offload", b);
            const struct bench_point *res = bench_find(r, p, "nosa-resident", b);
            snprintf(note, sizeof(note), "tokens/s at batch %d", b);
            rc = bench_ratio_add(arr, p, "nosa_offload/nosa_resident",
                                 off->tokens_per_s / res->tokens_per_s, 0.9, b, note);
            if (!rc && !isnan(off->copy_gbps))
                rc = bench_ratio_add(arr, p, "copy_GBps/55", off->copy_gbps / BENCH_LINK_GBPS,
                                     0.9, b,
                                     isnan(off->gemm_ms)
                                         ? "derived: bytes_h2d / (offload - resident step)"
                                         : "bytes_h2d / copy time (backend timer)");
        }
        const struct bench_point *d = bench_find(r, p, "dense-resident", -1);
        if (!rc && d && p->gpu_mem_per_seq > 0.0) {
            snprintf(note, sizeof(note), "per-sequence device memory, %s%s", p->gpu_mem_source,
                     p->context >= 131072 ? "" : " (target is for 128K)");
            rc = bench_ratio_add(arr, p, "dense_mem/nosa_offload_mem",
                                 d->gpu_mem_per_seq / p->gpu_mem_per_seq, 8.0, 0, note);
        }
    }
    if (rc) {
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}

#define BENCH_SCALING_PER_DEVICE 0.95 /* issue 8: at least 1.9x with two devices */

/* The row of p's point (backend, mode, workload, context, batch) measured on device dev_index
 * (-1: the aggregate) with n_together devices decoding at once; NULL when none. */
static const struct bench_point *bench_find_phase(const struct bench_results *r,
                                                  const struct bench_point *p, int dev_index,
                                                  int n_together)
{
    for (int i = 0; i < r->n; i++) {
        const struct bench_point *q = &r->rows[i];
        if (!strcmp(q->backend, p->backend) && !strcmp(q->mode, p->mode) &&
            !strcmp(q->workload, p->workload) && q->context == p->context &&
            q->batch == p->batch && q->dev_index == dev_index && q->n_together == n_together)
            return q;
    }
    return NULL;
}

static int bench_scaling_add(cJSON *arr, const struct bench_point *alone,
                             const struct bench_point *tog, const struct bench_point *all)
{
    double v = all->tokens_per_s / alone->tokens_per_s;
    double target = BENCH_SCALING_PER_DEVICE * tog->n_together;
    int same = !strcmp(alone->greedy_hash, tog->greedy_hash);
    cJSON *o = cJSON_CreateObject();
    if (!o) return -ENOMEM;
    cJSON_AddItemToArray(arr, o);
    int ok = cJSON_AddStringToObject(o, "backend", tog->backend) &&
             cJSON_AddStringToObject(o, "mode", tog->mode) &&
             cJSON_AddStringToObject(o, "workload", tog->workload) &&
             cJSON_AddNumberToObject(o, "context", tog->context) &&
             cJSON_AddNumberToObject(o, "batch", tog->batch) &&
             cJSON_AddStringToObject(o, "device", tog->device) &&
             cJSON_AddStringToObject(o, "devices", tog->devices) &&
             bench_json_num(o, "alone_tokens_per_s", alone->tokens_per_s) &&
             bench_json_num(o, "together_tokens_per_s", tog->tokens_per_s) &&
             bench_json_num(o, "aggregate_tokens_per_s", all->tokens_per_s) &&
             bench_json_num(o, "aggregate_over_alone", v) &&
             cJSON_AddNumberToObject(o, "target", target) &&
             cJSON_AddBoolToObject(o, "met", !isnan(v) && v >= target) &&
             bench_json_num(o, "together_over_alone", tog->scaling) &&
             bench_json_num(o, "alone_link_gbps", alone->link_gbps) &&
             bench_json_num(o, "together_link_gbps", tog->link_gbps) &&
             cJSON_AddBoolToObject(o, "same_greedy", same);
    if (!ok) return -ENOMEM;
    printf("%-5s %-17s %-16s %7d %5d %4s %11.1f %11.1f %11.1f %9.3f %6.2f %-4s %9.3f %8.2f "
           "%8.2f %s\n", tog->backend, tog->mode, tog->workload, tog->context, tog->batch, tog->device,
           alone->tokens_per_s, tog->tokens_per_s, all->tokens_per_s, v, target,
           isnan(v) ? "-" : v >= target ? "yes" : "NO", tog->scaling, alone->link_gbps,
           tog->link_gbps, same ? "yes" : "NO");
    return 0;
}

cJSON *bench_scaling(const struct bench_results *r)
{
    cJSON *arr = cJSON_CreateArray();
    if (!arr) return NULL;
    int rc = 0, printed = 0;
    for (int i = 0; i < r->n && !rc; i++) {
        const struct bench_point *tog = &r->rows[i];
        if (tog->dev_index < 0 || tog->n_together < 2) continue;
        const struct bench_point *alone = bench_find_phase(r, tog, tog->dev_index, 1);
        const struct bench_point *all = bench_find_phase(r, tog, -1, tog->n_together);
        if (!alone || !all) continue;
        if (!printed++)
            printf("\nmulti-device scaling (issue 8): devices %s, each alone, then all at once "
                   "(free-running from a common start), same batch and context per device\n"
                   "%-5s %-17s %-16s %7s %5s %4s %11s %11s %11s %9s %6s %-4s %9s %8s %8s %s\n",
                   tog->devices, "bknd", "mode", "workload", "context", "batch", "dev",
                   "alone tok/s", "tog. tok/s", "all tok/s", "all/alone", "target", "met",
                   "tog/alone", "aloneGB/s", "tog.GB/s", "same greedy");
        rc = bench_scaling_add(arr, alone, tog, all);
    }
    if (rc) {
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}
