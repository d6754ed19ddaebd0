/* safetensors.h: a read-only, validating view of one .safetensors file, mapped into memory.
 *
 * Format (https://github.com/huggingface/safetensors): u64 little-endian header length N,
 * N bytes of JSON {"name": {"dtype": "BF16", "shape": [r, c], "data_offsets": [b, e]}, ...,
 * "__metadata__": {...}}, then the data section; offsets are relative to its start.
 *
 * Opening validates everything a hostile file could get wrong: the header length against the
 * file size, the JSON, every dtype (only F32 and BF16 are accepted), every shape (byte size
 * must equal e - b, no overflow), offsets inside the data section, no two tensors overlapping,
 * no duplicate names. Errors name the file and the tensor. Nothing is copied: tensor data are
 * pointers into the mapping, valid until close. */
#ifndef NOSA_SAFETENSORS_H
#define NOSA_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

enum nosa_st_dtype {
    NOSA_ST_F32 = 0,
    NOSA_ST_BF16 = 1,
};

#define NOSA_ST_MAX_DIMS 8
/* The format's own limit on the header (the reference implementation refuses more). */
#define NOSA_ST_MAX_HEADER (100u * 1024u * 1024u)

struct nosa_st_tensor {
    const char *name;     /* points into the file's string storage */
    enum nosa_st_dtype dtype;
    int ndim;
    int64_t shape[NOSA_ST_MAX_DIMS];
    uint64_t numel;
    const uint8_t *data;  /* into the mapping */
    uint64_t nbytes;
};

struct nosa_st_file {
    char *path;
    uint8_t *map;
    size_t map_len;
    struct nosa_st_tensor *tensors; /* sorted by name */
    size_t n_tensors;
    char *names;                    /* one buffer holding every tensor name */
};

/* Returns 0, or a negated errno with err naming path (and the tensor at fault). */
int nosa_st_file_open(const char *path, struct nosa_st_file **out, char *err, size_t errlen);
/* Parses and validates a header against a data section of data_len bytes at data (no file
 * involved; the fuzzer's entry point). path is only used in messages. */
int nosa_st_parse(const char *path, const char *header, size_t header_len, const uint8_t *data,
                  uint64_t data_len, struct nosa_st_file *f, char *err, size_t errlen);
const struct nosa_st_tensor *nosa_st_file_find(const struct nosa_st_file *f, const char *name);
void nosa_st_file_close(struct nosa_st_file *f); /* accepts NULL */
const char *nosa_st_dtype_name(enum nosa_st_dtype d);

#endif
