/* bench.h: nosa-bench, the decode-throughput benchmark (issue 6), shared between its files.
 *
 * The driver is in-process: it builds the model, owns a host KV arena, creates a backend per
 * (backend, mode, context) and device (--devices: one instance per device, all over the one
 * arena, as one kv-host serves every GPU of a node) and calls prefill/seq_resume/decode on it
 * directly (no engine, coordinator or kv-host process in the loop). Files:
 *   bench_main.c     flags, the grid loop
 *   bench_grid.c     what fits each (mode, context); the target ratios and multi-device scaling
 *   bench_run.c      the instances of a grid cell: fill the context, time decode steps (each
 *                    device alone, then all together), one row per point and device
 *   bench_arena.c    the in-process host arena and the shared-prefix block tables
 *   bench_mem.c      device memory (cudaMemGetInfo when built with CUDA) and the estimates
 *   bench_link.c     host-to-device copy bandwidth per device, alone and together (--link-test)
 *   bench_output.c   terminal table, CSV, JSON, gnuplot PNGs */
#ifndef NOSA_BENCH_H
#define NOSA_BENCH_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"
#include "model.h"

#define BENCH_MAX_LIST 16
/* Steps after which the correlated workload's hit rate has about levelled off at 64K-128K
 * (bench/RESULTS.md, fifth session): what the note on --settle advises. */
#define BENCH_SETTLE_ADVISED 200
#define BENCH_MAX_DEVICES 16

/* A grid mode: an attention mode and a placement ("nosa-offload", "dense-resident", ...). */
struct bench_mode {
    enum nosa_attn_mode attn;
    int offload;
    char name[32];
};

/* Decode-time input tokens. rho = 0 is "random" (uniform ids every step); rho > 0 is
 * "correlated": each slot's next input repeats its previous input with probability rho, else
 * a uniform id. A repeated input gives the same layer-0 hidden state up to RoPE, so queries
 * drift slowly and query-aware selection becomes more local. greedy: each slot's next input
 * is its last step's argmax (the last prompt token first), what a served greedy job feeds
 * back: the process driver's workload (bench/processes.sh). */
struct bench_workload {
    double rho;
    int greedy;
    char name[32];
};

/* How each sequence's context is put in place before timing.
 * SHARED: one template sequence is prefilled once (nosa-offload filler backend) to the largest
 *   context; every slot of every instance is seq_resume'd from the template's first ctx/block
 *   groups (a shared, read-only prefix in the arena). Fast; sequences share their prefix KV.
 * SYNTHETIC: like SHARED but the template blocks are written directly (random bf16 K/V of the
 *   model's scale, cis computed from V with the model's eviction head): no model compute.
 * PREFILL: every slot prefilled with its own random tokens (--prompt), in chunks. Honest and
 *   slow. */
/* --prompt text: prompt ids BENCH_TEXT_FIRST .. BENCH_TEXT_LAST, the printable bytes (the
 * byte tokenizer's ids for them, what bench/processes.sh submits). */
#define BENCH_TEXT_FIRST 32
#define BENCH_TEXT_LAST 126

enum bench_fill {
    BENCH_FILL_SHARED = 0,
    BENCH_FILL_SYNTHETIC = 1,
    BENCH_FILL_PREFILL = 2,
};

struct bench_opts {
    const struct nosa_backend_ops *backends[4]; /* --backend, looked up as parsed */
    int n_backends;
    struct bench_mode modes[8];
    int n_modes;
    int batches[BENCH_MAX_LIST];
    int n_batches;
    int contexts[BENCH_MAX_LIST];
    int n_contexts;
    struct bench_workload workloads[8];
    int n_workloads;
    int steps;         /* timed decode steps per point */
    int warmup;        /* untimed decode steps before them (the pool fills after a resume) */
    int settle;        /* untimed steps a slot decodes alone once put in place (docs/BENCH.md) */
    const char *model_dir;
    const char *config_name;
    uint64_t seed;
    uint64_t gpu_mem_limit; /* bytes for the dense largest-batch search; 0: measured free */
    int dense_max_cap;      /* never run dense above this batch */
    enum bench_fill fill;
    int prefill_chunk;
    int prompt_text;        /* --prompt text: PREFILL prompts of printable bytes (BENCH_TEXT_*,
                               what bench/processes.sh submits); else uniform ids */
    double fill_timeout;    /* SHARED: > 0: synthesize instead when the template prefill would
                               take longer than this many seconds (projected after one chunk) */
    int pool_blocks;        /* 0: backend default (2 x budget) */
    int prefetch_blocks;    /* offloaded sparse modes: backend.h prefetch_blocks; 0: none */
    int devices[BENCH_MAX_DEVICES]; /* --devices, else the one --device */
    int n_devices;
    uint64_t link_test_bytes; /* --link-test: bytes each device copies per repetition; 0: off */
    const char *out_dir;
    int budget_blocks;      /* > 0: overrides the model's sparse budget */
    int query_aware_blocks; /* > 0: overrides the model's query-aware share */
    int logits_to_host;     /* --logits: every row's logits come to the host each step; 0:
                               greedy, the argmax only */
    int sample_rows;        /* --sample: every row is also drawn (top_p 0.9, temperature 0.8)
                               by the backend, as sampled rows are (the argmax still drives
                               the next input, so the work is the same) */
};

/* What a decode step hands back, for the output's header and JSON. */
const char *bench_decode_output_desc(const struct bench_opts *o);

/* One result row: one (backend, mode, workload, context, batch) point, as one device measured
 * it alone or among all (several --devices), or the aggregate of all. NAN = not available. */
struct bench_point {
    char backend[16];
    char mode[32];
    char workload[32];
    double rho;
    char device[8];      /* the device this row measures ("0"), "all" for the aggregate row */
    char devices[64];    /* the devices decoding at the same time ("0", "0+1") */
    int dev_index;       /* index of device in --devices; -1: the aggregate row */
    int n_together;      /* how many devices decoded at the same time */
    int batch;           /* sequences decoded together, per device */
    int context;         /* target context length at fill */
    double context_mean; /* mean context over the timed steps (it grows by one per step) */
    int steps;
    double tokens_per_s;
    double scaling;      /* several devices: together rows: tokens/s over the same device's
                            alone row; aggregate: over the mean of the alone rows; else NAN */
    double step_ms;
    /* Step time split; the backend stats (backend.h) carry no per-phase times, so NAN. */
    double gemm_ms, attn_ms, select_ms, copy_ms, other_ms;
    double blocks_per_step; /* blocks transferred (the delta) per step, all layers and heads */
    double prefetch_per_step; /* blocks read ahead per step (--prefetch), all layers and heads */
    double bytes_h2d_per_step;
    double bytes_d2h_per_step;
    double hit_rate;        /* hits / selected over the timed steps */
    double copy_gbps;       /* bytes_h2d / copy time; derived (see bench_main.c), NAN if none */
    double link_gbps;       /* the delta's bytes (blocks_transferred, not the read-ahead, which
                               runs on its own stream) / the timed phase that holds the copy
                               (copy_s, else attn_s where the copy runs inside attention);
                               NAN untimed */
    uint64_t blocks_selected, blocks_transferred, block_hits, blocks_prefetched;
    uint64_t bytes_h2d, bytes_d2h; /* h2d: the delta and the read-ahead */
    uint64_t block_bytes;
    double gpu_mem_bytes;    /* device memory this backend instance holds (NAN on cpu) */
    double gpu_mem_per_seq;  /* per slot: measured slope on cuda, estimate on cpu */
    const char *gpu_mem_source; /* "measured" or "estimated" */
    double host_arena_bytes; /* arena bytes the active sequences reference (shared prefix once) */
    double host_kv_bytes;    /* KV bytes the sequences would hold unshared */
    int dense_max_batch;     /* dense rows: the largest batch that fits; else 0 */
    double fill_s;           /* seconds spent putting this point's contexts in place */
    char greedy_hash[20];    /* FNV-1a of each slot's argmax token after the last timed step */
};

struct bench_results {
    struct bench_point *rows;
    int n, cap;
};

int bench_results_add(struct bench_results *r, const struct bench_point *p);
void bench_results_free(struct bench_results *r);

/* ---- bench_arena.c ---- */
struct bench_arena;
/* A host arena of n_groups groups of geom (anonymous mapping, faulted in on first write). */
int bench_arena_create(const struct nosa_kv_geometry *geom, uint64_t n_groups,
                       struct bench_arena **out, char *err, size_t errlen);
void bench_arena_destroy(struct bench_arena *a);
const struct nosa_kv_arena *bench_arena_view(const struct bench_arena *a);
/* Bytes of the arena's block array. */
uint64_t bench_arena_bytes(const struct bench_arena *a);

/* ---- bench_mem.c ---- */
/* Free and total device memory (cudaMemGetInfo); -ENOTSUP when built without CUDA. */
int bench_mem_device_info(int device, uint64_t *free_b, uint64_t *total_b, char *err,
                          size_t errlen);
/* The device's name (cudaGetDeviceProperties); -ENOTSUP without CUDA. */
int bench_mem_device_name(int device, char *out, size_t len);
/* Estimates of what a backend must hold on the device: per slot at max_context for one
 * placement, and the weights (bf16). Used where nothing can be measured (cpu backend). */
double bench_mem_estimate_per_seq(const struct nosa_model_config *cfg, int offload,
                                  int pool_blocks, int max_context);
double bench_mem_estimate_weights(const struct nosa_model_config *cfg);

/* ---- bench_run.c ---- */
struct bench_ctx {
    const struct bench_opts *opts;
    const struct nosa_model *model;
    struct bench_arena *arena;
    uint64_t template_groups;  /* groups [0, template_groups) hold the shared prefix */
    uint64_t slot_groups;      /* private groups per slot, after the template */
    int slots;                 /* slots per device: device i's slot s owns the private groups
                                  of arena slot i * slots + s */
    int template_tokens;       /* tokens the template holds (0 before it is filled) */
    enum bench_fill fill_used; /* what filled the template (SHARED may fall back) */
    char fill_note[160];       /* how, for the outputs */
    int32_t last_template_token;
};

/* Puts the template prefix in place (SHARED: prefill on a filler backend; SYNTHETIC: write
 * blocks) for contexts up to max_ctx tokens. No-op for PREFILL. */
int bench_template_fill(struct bench_ctx *c, const struct nosa_backend_ops *ops, int max_ctx,
                        double *seconds, char *err, size_t errlen);

/* One backend instance: (backend, mode, context) and the batches to run in it. */
struct bench_instance_spec {
    const char *backend_name;
    const struct bench_mode *mode;
    int context;
    const int *batches;
    int n_batches;
    int dense_max_batch;        /* written into the rows (0 for other modes) */
    double gpu_per_seq;         /* per-slot device bytes for the rows */
    const char *gpu_mem_source; /* "measured" or "estimated" */
};

/* Creates the backend with max(batches) slots on each of --devices, fills the slots each batch
 * needs and appends the rows of each (workload, batch) to res. One device: one row per point,
 * sequences growing from point to point. Several: each device alone, then all together
 * (free-running, one thread each), every phase from the same freshly filled slots and
 * inputs; a row per device and phase and an aggregate row. */
int bench_run_instance(struct bench_ctx *c, const struct nosa_backend_ops *ops,
                       const struct bench_instance_spec *sp, struct bench_results *res,
                       char *err, size_t errlen);

/* Memory a backend instance holds on device, measured: creates it with L and L + 1 slots
 * (cuda; L = ops->prefill_lanes, past which its prefill buffers stop growing) and returns
 * the fixed part and the per-slot slope; -ENOTSUP on backends without device memory. */
int bench_run_probe_memory(struct bench_ctx *c, const struct nosa_backend_ops *ops,
                           const struct bench_mode *mode, int max_context, int device,
                           double *fixed_b, double *per_seq_b, char *err, size_t errlen);

/* Monotonic seconds (bench_run.c), for every timing of the benchmark. */
double bench_now(void);
/* Tokens each slot may reach in an instance for context ctx (fill + every decode step). */
int bench_run_max_context(const struct bench_opts *o, const struct nosa_model_config *cfg,
                          int ctx);

/* ---- bench_grid.c ---- */
/* One (backend, mode, context) of the grid: works out which batches fit the device memory
 * (measured on cuda, estimated on cpu, the smallest over --devices; dense: its largest
 * fitting batch too), then runs them in one instance per device. Points that do not fit are
 * skipped with a message. */
int bench_grid_instance(struct bench_ctx *c, const struct nosa_backend_ops *ops,
                        const struct bench_mode *mode, int context, int max_slots,
                        struct bench_results *res, char *err, size_t errlen);
/* Fills the rows' derived copy bandwidth and returns the target ratios as a cJSON array
 * (caller frees; NULL when out of memory), printing them as a table. */
struct cJSON *bench_ratios(struct bench_results *res);
/* Several devices: per point and device, the aggregate tokens/s of all devices together over
 * that device alone (target 0.95 x devices: 1.9 with two) and its copy bandwidth alone and
 * together, printed as a table and returned as a cJSON array (NULL when out of memory). */
struct cJSON *bench_scaling(const struct bench_results *res);

/* ---- bench_link.c ---- */
/* --link-test: a pinned (registered) host buffer of o->link_test_bytes copied to each device
 * of --devices, alone, then to all at once (one thread each), a few times; prints GB/s per
 * device and returns them as a cJSON array (*out, caller frees). -ENOTSUP without the CUDA
 * runtime. */
int bench_link_test(const struct bench_opts *o, struct cJSON **out, char *err, size_t errlen);

/* ---- bench_output.c ---- */
void bench_output_table(const struct bench_results *r);
int bench_output_csv(const struct bench_results *r, const char *path, char *err,
                     size_t errlen);
/* JSON: {"driver", "model", "fill", "steps", "warmup", "seed", "devices": [...], "rows": [...],
 * "ratios": [...], "scaling": [...], "link_test": [...]}. The arrays are owned by the caller
 * (each may be NULL: left out). */
struct bench_json_extra {
    const struct cJSON *ratios, *scaling, *link_test;
};
int bench_output_json(const struct bench_results *r, const struct bench_opts *o,
                      const char *model_desc, const char *fill_desc,
                      const struct bench_json_extra *extra, const char *path, char *err,
                      size_t errlen);
/* One PNG per (workload, context): tokens/s against batch, a line per (backend, mode).
 * Returns 0, -ENOENT when gnuplot is missing (a message is printed), or another -errno. */
int bench_output_plots(const struct bench_results *r, const char *dir, char *err,
                       size_t errlen);

#endif
