/* coord_journal.c: fuzz target for the coordinator's journal replay: coord_open over a journal
 * holding the input, so both halves run as at a restart: the record framing (lengths,
 * checksums, the torn-tail cut: coordinator/journal.c) and coord.c's decoders of every record
 * (JobSpec, JobTokens, JobFinished, META, PLACE, KVFREE). White-box (coord_internal.h) to read
 * the jobs back. The journal is a memfd (no disk, nothing left behind); the links are inproc
 * and the run directory has no keys. Invariants: a refused journal has an error text; a
 * journal opened once (its torn tail cut, a META record appended) opens again to the same
 * jobs (ids, states, tokens) and next id. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "coord.h"
#include "coord_internal.h"
#include "fuzz_target.h"
#include "log.h"

#define MAX_JOBS_COMPARED 4096

struct snapshot {
    size_t n;
    uint64_t next_id;
    uint64_t id[MAX_JOBS_COMPARED];
    uint32_t state[MAX_JOBS_COMPARED], tokens[MAX_JOBS_COMPARED];
};

/* Opens a coordinator on the journal at path: 0 and its jobs in *snap, or -1 (err set). */
static int open_once(const char *path, struct snapshot *snap, char *err, size_t errlen)
{
    struct coord_options opt;
    memset(&opt, 0, sizeof opt);
    snprintf(opt.run_dir, sizeof opt.run_dir, "/nonexistent/nosa-fuzz"); /* no curve/ keys */
    snprintf(opt.workers_ep, sizeof opt.workers_ep, "inproc://fuzz-workers");
    snprintf(opt.clients_ep, sizeof opt.clients_ep, "inproc://fuzz-clients");
    snprintf(opt.journal, sizeof opt.journal, "%s", path);
    snprintf(opt.metrics_address, sizeof opt.metrics_address, "127.0.0.1");
    opt.heartbeat_timeout_ms = 1000;
    struct coord *c = NULL;
    int rc = coord_open(&opt, &c, err, errlen);
    if (rc == 0) {
        snap->n = c->jobs.n;
        snap->next_id = c->jobs.next_id;
        for (size_t i = 0; i < c->jobs.n && i < MAX_JOBS_COMPARED; i++) {
            snap->id[i] = c->jobs.jobs[i]->id;
            snap->state[i] = (uint32_t)c->jobs.jobs[i]->state;
            snap->tokens[i] = c->jobs.jobs[i]->tok.n;
        }
    }
    coord_close(c);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct snapshot first, again;
    g_nosa_log_level = NOSA_LOG_ERROR; /* each unreadable record is a WARN line: too many */
    int fd = memfd_create("nosa-fuzz-journal", MFD_CLOEXEC);
    if (fd < 0) abort(); /* the harness, not a finding */
    size_t done = 0;
    while (done < size) {
        ssize_t w = write(fd, data + done, size - done);
        if (w <= 0) abort();
        done += (size_t)w;
    }
    char path[64], err[512] = "";
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    if (open_once(path, &first, err, sizeof err) != 0) {
        if (err[0] == '\0') nosa_fuzz_fail("coord_journal", "refused without an error message");
        close(fd);
        return 0;
    }
    if (open_once(path, &again, err, sizeof err) != 0)
        nosa_fuzz_fail("coord_journal", "a journal the coordinator opened is refused next time");
    if (first.n != again.n || first.next_id != again.next_id)
        nosa_fuzz_fail("coord_journal", "reopening changes the jobs or the next id");
    size_t n = first.n < MAX_JOBS_COMPARED ? first.n : MAX_JOBS_COMPARED;
    for (size_t i = 0; i < n; i++)
        if (first.id[i] != again.id[i] || first.state[i] != again.state[i] ||
            first.tokens[i] != again.tokens[i])
            nosa_fuzz_fail("coord_journal", "reopening changes a job");
    close(fd);
    return 0;
}
