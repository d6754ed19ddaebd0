/* journal.c: see journal.h. */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <zlib.h>

#include "fault.h"
#include "log.h"

static void encode_header(uint8_t hdr[COORD_JOURNAL_HEADER_BYTES], enum coord_journal_type type,
                          uint64_t job_id, const uint8_t *payload, size_t len)
{
    memset(hdr, 0, COORD_JOURNAL_HEADER_BYTES);
    uint32_t len32 = (uint32_t)len;
    memcpy(hdr, &len32, 4);
    hdr[8] = (uint8_t)type;
    memcpy(hdr + 12, &job_id, 8);
    uLong crc = crc32(0L, hdr + 8, COORD_JOURNAL_HEADER_BYTES - 8);
    if (len) crc = crc32(crc, payload, (uInt)len);
    uint32_t crc32v = (uint32_t)crc;
    memcpy(hdr + 4, &crc32v, 4);
}

/* Reads the whole file into memory. */
static int read_all(int fd, uint8_t **out, size_t *len, const char *path, char *err,
                    size_t errlen)
{
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    if (!buf) goto oom;
    for (;;) {
        if (n == cap) {
            uint8_t *grown = realloc(buf, cap * 2);
            if (!grown) goto oom;
            buf = grown;
            cap *= 2;
        }
        ssize_t r = pread(fd, buf + n, cap - n, (off_t)n);
        if (r < 0) {
            if (errno == EINTR) continue;
            nosa_set_error(err, errlen, "journal %s: read: %s", path, strerror(errno));
            free(buf);
            return -1;
        }
        if (r == 0) break;
        n += (size_t)r;
    }
    *out = buf;
    *len = n;
    return 0;
oom:
    free(buf);
    nosa_set_error(err, errlen, "journal %s: out of memory reading it", path);
    return -1;
}

/* Replays records; returns the length of the valid prefix, or -1 when a callback refused. */
static long long replay(const uint8_t *buf, size_t len, const char *path,
                        coord_journal_record_fn fn, void *arg, char *err, size_t errlen)
{
    size_t off = 0;
    while (off < len) {
        const char *why = NULL;
        uint32_t plen = 0, crc = 0;
        if (len - off < COORD_JOURNAL_HEADER_BYTES) {
            why = "incomplete header";
        } else {
            memcpy(&plen, buf + off, 4);
            memcpy(&crc, buf + off + 4, 4);
            if (plen > COORD_JOURNAL_MAX_PAYLOAD) why = "length out of range";
            else if (len - off - COORD_JOURNAL_HEADER_BYTES < plen) why = "incomplete payload";
        }
        if (!why) {
            uLong want = crc32(0L, buf + off + 8, COORD_JOURNAL_HEADER_BYTES - 8);
            if (plen) want = crc32(want, buf + off + COORD_JOURNAL_HEADER_BYTES, plen);
            if ((uint32_t)want != crc) why = "checksum mismatch";
        }
        if (!why) {
            uint8_t type = buf[off + 8];
            if (type < COORD_JOURNAL_META || type > COORD_JOURNAL_PLACE) why = "unknown type";
        }
        if (why) {
            LOG_WARN("coordinator", "journal %s: ignoring %zu bytes from offset %zu (%s): a "
                     "record torn by a crash; the records before it are kept",
                     path, len - off, off, why);
            return (long long)off;
        }
        uint64_t job_id;
        memcpy(&job_id, buf + off + 12, 8);
        const uint8_t *payload = buf + off + COORD_JOURNAL_HEADER_BYTES;
        if (fn((enum coord_journal_type)buf[off + 8], job_id, payload, plen, arg, err, errlen))
            return -1;
        off += COORD_JOURNAL_HEADER_BYTES + plen;
    }
    return (long long)off;
}

int coord_journal_open(struct coord_journal *j, const char *path, coord_journal_record_fn fn,
                       void *arg, char *err, size_t errlen)
{
    memset(j, 0, sizeof *j);
    j->fd = -1;
    if (snprintf(j->path, sizeof j->path, "%s", path) >= (int)sizeof j->path) {
        nosa_set_error(err, errlen, "journal path too long: %s", path);
        return -1;
    }
    j->fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (j->fd < 0) {
        nosa_set_error(err, errlen, "journal %s: open: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(j->fd, &st) != 0) {
        nosa_set_error(err, errlen, "journal %s: stat: %s", path, strerror(errno));
        goto fail;
    }
    j->regular = S_ISREG(st.st_mode);
    if (!j->regular) {
        LOG_WARN("coordinator", "journal %s is not a regular file: not replayed or compacted",
                 path);
        return 0;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (read_all(j->fd, &buf, &len, path, err, errlen) != 0) goto fail;
    long long valid = replay(buf, len, path, fn, arg, err, errlen);
    free(buf);
    if (valid < 0) goto fail;
    if ((size_t)valid < len && ftruncate(j->fd, (off_t)valid) != 0) {
        nosa_set_error(err, errlen, "journal %s: cutting off the torn record: %s", path,
                       strerror(errno));
        goto fail;
    }
    j->size = (uint64_t)valid;
    j->compacted_size = j->size;
    j->compact_min_bytes = COORD_JOURNAL_COMPACT_MIN_BYTES;
    return 0;
fail:
    close(j->fd);
    j->fd = -1;
    return -1;
}

void coord_journal_close(struct coord_journal *j)
{
    if (j->fd >= 0) close(j->fd);
    j->fd = -1;
}

static int fail_with(struct coord_journal *j, const char *what, int e, char *err, size_t errlen)
{
    if (!j->failed) {
        j->failed = 1;
        nosa_set_error(j->error, sizeof j->error, "journal %s: %s: %s", j->path, what,
                       strerror(e));
        LOG_ERROR("coordinator", "%s; refusing new jobs, running ones go on", j->error);
    }
    nosa_set_error(err, errlen, "%s", j->error);
    return -1;
}

/* Writes all of iov (short writes continued). Returns 0 or an errno. */
static int write_fully(int fd, struct iovec *iov, int n)
{
    while (n > 0) {
        ssize_t w = writev(fd, iov, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        if (w == 0) return EIO;
        while (n > 0 && (size_t)w >= iov->iov_len) {
            w -= (ssize_t)iov->iov_len;
            iov++;
            n--;
        }
        if (n > 0) {
            iov->iov_base = (uint8_t *)iov->iov_base + w;
            iov->iov_len -= (size_t)w;
        }
    }
    return 0;
}

int coord_journal_append(struct coord_journal *j, enum coord_journal_type type, uint64_t job_id,
                         const uint8_t *payload, size_t len, int sync, char *err,
                         size_t errlen)
{
    if (j->failed) {
        nosa_set_error(err, errlen, "%s", j->error);
        return -1;
    }
    if (len > COORD_JOURNAL_MAX_PAYLOAD) {
        nosa_set_error(err, errlen, "journal %s: a record of %zu bytes is over the %u limit",
                       j->path, len, COORD_JOURNAL_MAX_PAYLOAD);
        return -1;
    }
    uint8_t hdr[COORD_JOURNAL_HEADER_BYTES];
    encode_header(hdr, type, job_id, payload, len);
    struct iovec iov[2] = {{hdr, sizeof hdr}, {(void *)payload, len}};
    int e;
    if (g_nosa_fault_armed) { /* the record in two writes, a crash point between them */
        if ((e = write_fully(j->fd, iov, 1)) != 0) return fail_with(j, "write", e, err, errlen);
        NOSA_FAULT_POINT("coordinator.journal.torn");
        if ((e = write_fully(j->fd, iov + 1, 1)) != 0)
            return fail_with(j, "write", e, err, errlen);
    } else if ((e = write_fully(j->fd, iov, len ? 2 : 1)) != 0) {
        return fail_with(j, "write", e, err, errlen);
    }
    j->size += sizeof hdr + len;
    NOSA_FAULT_POINT("coordinator.journal.after_append");
    if (sync && j->regular && fdatasync(j->fd) != 0)
        return fail_with(j, "fdatasync", errno, err, errlen);
    return 0;
}

int coord_journal_wants_compaction(const struct coord_journal *j)
{
    uint64_t limit = 4 * j->compacted_size;
    if (limit < j->compact_min_bytes) limit = j->compact_min_bytes;
    return j->regular && !j->failed && j->size > limit;
}

static int fsync_folder(const char *path)
{
    char copy[4096];
    snprintf(copy, sizeof copy, "%s", path);
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return -1;
    int rc = fsync(dfd);
    close(dfd);
    return rc;
}

int coord_journal_compact(struct coord_journal *j, coord_journal_writer_fn write_live, void *arg,
                          char *err, size_t errlen)
{
    if (!j->regular) {
        nosa_set_error(err, errlen, "journal %s is not a regular file: not compacted", j->path);
        return -1;
    }
    struct coord_journal out;
    memset(&out, 0, sizeof out);
    out.regular = 1;
    if (snprintf(out.path, sizeof out.path, "%s.tmp", j->path) >= (int)sizeof out.path) {
        nosa_set_error(err, errlen, "journal path too long for compaction: %s", j->path);
        return -1;
    }
    out.fd = open(out.path, O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    if (out.fd < 0) {
        nosa_set_error(err, errlen, "journal %s: open: %s", out.path, strerror(errno));
        return -1;
    }
    if (write_live(&out, arg, err, errlen) != 0) goto fail;
    if (fsync(out.fd) != 0) {
        nosa_set_error(err, errlen, "journal %s: fsync: %s", out.path, strerror(errno));
        goto fail;
    }
    NOSA_FAULT_POINT("coordinator.compact.written");
    if (rename(out.path, j->path) != 0) {
        nosa_set_error(err, errlen, "journal: rename %s -> %s: %s", out.path, j->path,
                       strerror(errno));
        goto fail;
    }
    if (fsync_folder(j->path) != 0)
        LOG_WARN("coordinator", "journal %s: fsync of its folder: %s", j->path, strerror(errno));
    close(j->fd);
    j->fd = out.fd;
    LOG_INFO("coordinator", "journal %s compacted: %llu -> %llu bytes", j->path,
             (unsigned long long)j->size, (unsigned long long)out.size);
    j->size = out.size;
    j->compacted_size = out.size;
    return 0;
fail:
    close(out.fd);
    unlink(out.path);
    return -1;
}
