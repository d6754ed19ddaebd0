/* config_json.c: fuzz target for the config.json loader (nosa_model_config_from_json, the
 * in-memory half of nosa_model_load's config step). A config it accepts must be valid and
 * survive a round trip through nosa_model_config_to_json unchanged. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_target.h"
#include "model_internal.h"

static int configs_equal(const struct nosa_model_config *a, const struct nosa_model_config *b)
{
    const struct nosa_sparse_config *x = &a->sparse, *y = &b->sparse;
    return a->vocab_size == b->vocab_size && a->hidden_size == b->hidden_size &&
           a->intermediate_size == b->intermediate_size && a->n_layers == b->n_layers &&
           a->n_heads == b->n_heads && a->n_kv_heads == b->n_kv_heads &&
           a->head_dim == b->head_dim && a->max_position == b->max_position &&
           a->rope_theta == b->rope_theta && a->rms_eps == b->rms_eps &&
           a->attention_bias == b->attention_bias &&
           a->tie_word_embeddings == b->tie_word_embeddings &&
           a->bos_token_id == b->bos_token_id && a->eos_token_id == b->eos_token_id &&
           x->block_size == y->block_size && x->budget_blocks == y->budget_blocks &&
           x->query_aware_blocks == y->query_aware_blocks &&
           x->compress_kernel == y->compress_kernel &&
           x->compress_stride == y->compress_stride && x->window_blocks == y->window_blocks &&
           x->sink_blocks == y->sink_blocks;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nosa_model_config cfg, back;
    char err[256] = "";
    if (nosa_model_config_from_json((const char *)data, size, "fuzz", &cfg, err, sizeof(err))) {
        if (err[0] == '\0') nosa_fuzz_fail("config_json", "refused without an error message");
        return 0;
    }
    if (nosa_model_config_validate(&cfg, err, sizeof(err)))
        nosa_fuzz_fail("config_json", "accepted config fails validation");
    char *text = nosa_model_config_to_json(&cfg, "float32");
    if (!text) abort(); /* out of memory: not a finding */
    if (nosa_model_config_from_json(text, strlen(text), "fuzz round trip", &back, err,
                                    sizeof(err)))
        nosa_fuzz_fail("config_json", "written config is refused when read back");
    if (!configs_equal(&cfg, &back))
        nosa_fuzz_fail("config_json", "config changes in a write/read round trip");
    free(text);
    return 0;
}
