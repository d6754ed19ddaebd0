/* journal.h: the coordinator's job journal (docs/COORDINATOR.md "Journal"), so jobs survive
 * a coordinator restart. An append-only file of records:
 *
 *   u32 payload_len | u32 crc32 | u8 type | 3 zero bytes | u64 job_id | payload
 *
 * (host byte order; crc32 is zlib's over type, the zero bytes, job_id and payload). Payloads
 * are the protobuf messages the coordinator already has: ACCEPT a packed JobSpec, TOKENS a
 * packed JobTokens, FINISH a packed JobFinished; META holds the next job id (u64); KVFREE a
 * change of a kv-host's queue of frees (kvhosts.h): u8 1 (queued) or 0 (left the queue), then
 * the kv-host's endpoint (no NUL), job_id the sequence; PLACE where a job's sequence is
 * (after each assignment or claim, and as its prefill advances): u8 0 (no kv-host), 1 (not
 * known) or 2 (at the endpoint that follows), 3 zero bytes, u32 fresh_from, u32 prompt_done,
 * then the endpoint (no NUL) for 2.
 * Replay stops at the first record that is incomplete or fails its checksum (a write torn by
 * a crash), logs it, and truncates the file there so later appends follow valid records.
 *
 * This module owns the file descriptor, the write-failure state and compaction (the live
 * records rewritten into PATH.tmp, fsync'd and renamed over PATH). After a write error (disk
 * full, EFBIG) the journal is "failed": appends return -1 with the first error, which the
 * coordinator shows when it refuses new jobs. Only regular files are replayed, fsync'd or
 * compacted (a journal at /dev/full is written to and fails). */
#ifndef NOSA_COORD_JOURNAL_H
#define NOSA_COORD_JOURNAL_H

#include <stddef.h>
#include <stdint.h>

enum coord_journal_type {
    COORD_JOURNAL_META = 1,
    COORD_JOURNAL_ACCEPT = 2,
    COORD_JOURNAL_TOKENS = 3,
    COORD_JOURNAL_FINISH = 4,
    COORD_JOURNAL_KVFREE = 5,
    COORD_JOURNAL_PLACE = 6,
};

#define COORD_JOURNAL_HEADER_BYTES 20u
#define COORD_JOURNAL_MAX_PAYLOAD (64u << 20)
/* Compaction once the file is past max(compact_min_bytes, 4 x its size after the last
 * compaction); this by default. */
#define COORD_JOURNAL_COMPACT_MIN_BYTES (1u << 20)

struct coord_journal {
    int fd;
    int regular;            /* a regular file: replayed, fsync'd, compacted */
    int failed;             /* a write failed: error says how; appends refused */
    char path[4096];
    char error[512];
    uint64_t size;          /* bytes of valid records in the file */
    uint64_t compacted_size;
    uint64_t compact_min_bytes; /* COORD_JOURNAL_COMPACT_MIN_BYTES unless set after open */
};

/* Called for each valid record at open, in file order. Return 0 to go on, -1 to stop the
 * open with an error (err set by the callback). */
typedef int (*coord_journal_record_fn)(enum coord_journal_type type, uint64_t job_id,
                                       const uint8_t *payload, size_t len, void *arg, char *err,
                                       size_t errlen);

/* Opens (creating mode 0600) and replays path. -1 with err when it cannot be opened or read,
 * or a callback refused a record. A torn tail is not an error (logged, cut off). */
int coord_journal_open(struct coord_journal *j, const char *path, coord_journal_record_fn fn,
                       void *arg, char *err, size_t errlen);
void coord_journal_close(struct coord_journal *j);

/* Appends one record; sync: fdatasync before returning (job accept and finish). Returns 0, or
 * -1 with err (and the journal failed from then on). */
int coord_journal_append(struct coord_journal *j, enum coord_journal_type type, uint64_t job_id,
                         const uint8_t *payload, size_t len, int sync, char *err,
                         size_t errlen);

/* 1 when the file has grown enough to be worth compacting. */
int coord_journal_wants_compaction(const struct coord_journal *j);

/* Writes the live records into a fresh journal: write_live appends them to `out` with
 * coord_journal_append (no sync needed); then fsync, rename over the journal, fsync the
 * folder. On failure the old journal stays in use, untouched; -1 with err. */
typedef int (*coord_journal_writer_fn)(struct coord_journal *out, void *arg, char *err,
                                       size_t errlen);
int coord_journal_compact(struct coord_journal *j, coord_journal_writer_fn write_live, void *arg,
                          char *err, size_t errlen);

#endif
