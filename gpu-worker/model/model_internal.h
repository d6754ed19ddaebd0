/* model_internal.h: what the model module's files share and nobody else sees.
 *
 * The tensor table is the single place that knows the model's tensors: their Hugging Face
 * names (shared with the released NOSA checkpoints, docs/NOSA.md), shapes, and which field of
 * struct nosa_model each one fills. The random initialiser, the safetensors loader and the
 * writer all walk this table, so they cannot disagree about names or shapes. */
#ifndef NOSA_MODEL_INTERNAL_H
#define NOSA_MODEL_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "model.h"

struct cJSON;
struct nosa_st_file;

enum nosa_tensor_role {
    NOSA_TENSOR_EMBED,
    NOSA_TENSOR_FINAL_NORM,
    NOSA_TENSOR_LM_HEAD,
    NOSA_TENSOR_ATTN_NORM,
    NOSA_TENSOR_WQ,
    NOSA_TENSOR_BQ,
    NOSA_TENSOR_WK,
    NOSA_TENSOR_BK,
    NOSA_TENSOR_WV,
    NOSA_TENSOR_BV,
    NOSA_TENSOR_WO,
    NOSA_TENSOR_EVICT_DELTA_W,
    NOSA_TENSOR_EVICT_DELTA_B,
    NOSA_TENSOR_EVICT_A,
    NOSA_TENSOR_MLP_NORM,
    NOSA_TENSOR_GATE,
    NOSA_TENSOR_UP,
    NOSA_TENSOR_DOWN,
};

#define NOSA_TENSOR_NAME_MAX 96

struct nosa_tensor_desc {
    enum nosa_tensor_role role;
    int layer;                  /* -1 for the model-level tensors */
    char name[NOSA_TENSOR_NAME_MAX];
    int ndim;                   /* 1 or 2 */
    int64_t shape[2];           /* shape[1] == 1 when ndim == 1 */
    size_t numel;
};

/* Everything the model owns besides struct nosa_model itself: the one buffer of weights that
 * are not used in place (random init; from files: the vectors of a bf16 file, converted to
 * f32, and any tensor the file leaves misaligned), and the mapped safetensors files. */
struct nosa_model_storage {
    void *owned;
    size_t owned_bytes;
    struct nosa_st_file **files;
    size_t n_files;
};

/* Fills *out (malloc'd, caller frees) with the tensors a model of cfg has, in file order:
 * embedding, layers (attention, eviction head, MLP), final norm, lm_head (absent when tied).
 * cfg must be valid. Returns 0 or -ENOMEM. */
int nosa_tensor_table_build(const struct nosa_model_config *cfg, struct nosa_tensor_desc **out,
                            size_t *n_out);
/* Points the field of m that desc fills at data: a matrix (desc->ndim == 2) keeps the view
 * (f32 or bf16), a vector takes data as an f32 array (it must be f32). */
void nosa_tensor_set(struct nosa_model *m, const struct nosa_tensor_desc *desc,
                     struct nosa_weight data);
/* desc's values in m as a typed view (a vector is f32); data is NULL while unset. */
struct nosa_weight nosa_tensor_get(const struct nosa_model *m, const struct nosa_tensor_desc *desc);
/* Writes desc's random initial values (docs/MODEL.md "Initialisation") into dst[numel].
 * Each tensor has its own stream, derived from (seed, tensor index), so a tensor can be
 * generated alone (nosa-mkmodel streams them) and still equal nosa_model_init_random's. */
void nosa_tensor_fill_random(const struct nosa_model_config *cfg,
                             const struct nosa_tensor_desc *desc, size_t index, uint64_t seed,
                             float *dst);

/* Allocates an empty model (zeroed, storage allocated) for cfg. */
int nosa_model_alloc(const struct nosa_model_config *cfg, struct nosa_model **out, char *err,
                     size_t errlen);
/* Allocates storage->owned for n bytes (one anonymous mapping, prefaulted: faulting 4 GB
 * page by page costs seconds per GB on VMs). Returns 0 or -ENOMEM. */
int nosa_model_storage_alloc(struct nosa_model_storage *s, size_t n);
/* Sets lm_head = tok_embed when tied. Call after every slot is filled. */
void nosa_model_finish(struct nosa_model *m);

/* config.json <-> struct nosa_model_config (Hugging Face Llama keys plus the NOSA keys,
 * docs/MODEL.md). parse validates; what is named "where" appears in error messages. */
int nosa_model_config_from_json(const char *text, size_t len, const char *where,
                                struct nosa_model_config *out, char *err, size_t errlen);
/* Reads and parses a config.json file (nosa-mkmodel --config FILE). */
int nosa_model_config_load_file(const char *path, struct nosa_model_config *out, char *err,
                                size_t errlen);
/* Returns a malloc'd, NUL-terminated JSON text (torch_dtype: "bfloat16" or "float32"), or
 * NULL on allocation failure. */
char *nosa_model_config_to_json(const struct nosa_model_config *cfg, const char *torch_dtype);

/* The streaming writer behind nosa_model_save and nosa-mkmodel: writes dir/config.json and
 * dir/model.safetensors (dtype "bf16" or "f32"), each through a temporary file renamed into
 * place. Tensor i's values come from get(ctx, desc, i): a view of desc->numel elements, data
 * NULL on failure (with err set by get). */
typedef struct nosa_weight (*nosa_tensor_source_fn)(void *ctx, const struct nosa_tensor_desc *desc,
                                                    size_t index, char *err, size_t errlen);
int nosa_model_write(const struct nosa_model_config *cfg, const char *dir, const char *dtype,
                     nosa_tensor_source_fn get, void *ctx, char *err, size_t errlen);
/* Writes the model nosa_model_init_random(cfg, seed) would make, one tensor at a time (the
 * 1b model never exists in memory as a whole). */
int nosa_model_write_random(const struct nosa_model_config *cfg, uint64_t seed, const char *dir,
                            const char *dtype, char *err, size_t errlen);

#endif
