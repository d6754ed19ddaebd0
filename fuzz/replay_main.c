/* replay_main.c: runs saved inputs through a fuzz target's entry point without libFuzzer, so
 * the same target code checks the corpus and every saved crash in ordinary (gcc, release and
 * ASan) builds: `fuzz_<target>_replay FILE|DIR...` (a directory: every regular file in it).
 * Prints how many inputs ran; a finding aborts or is reported by the sanitizers. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_target.h"

/* Inputs larger than this are refused: libFuzzer's -max_len in scripts/fuzz.sh is smaller. */
#define REPLAY_MAX_BYTES (16u << 20)

static int replay_file(const char *path)
{
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        fprintf(stderr, "replay: cannot open %s: %s\n", path, strerror(errno));
        return -1;
    }
    uint8_t *buf = malloc(REPLAY_MAX_BYTES);
    if (!buf) {
        fclose(fp);
        fprintf(stderr, "replay: out of memory for %s\n", path);
        return -1;
    }
    size_t n = fread(buf, 1, REPLAY_MAX_BYTES, fp);
    int rc = 0;
    if (ferror(fp) || !feof(fp)) {
        fprintf(stderr, "replay: %s: read error or larger than %u bytes\n", path,
                REPLAY_MAX_BYTES);
        rc = -1;
    }
    fclose(fp);
    if (rc == 0) {
        /* An exact-size copy, so ASan sees a read past the input as the overflow it is. */
        uint8_t *exact = malloc(n ? n : 1);
        if (!exact) {
            free(buf);
            return -1;
        }
        memcpy(exact, buf, n);
        LLVMFuzzerTestOneInput(exact, n);
        free(exact);
    }
    free(buf);
    return rc;
}

/* Replays every regular file of dir in name order; returns the count or -1. */
static long replay_dir(const char *dir)
{
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) {
        fprintf(stderr, "replay: cannot list %s: %s\n", dir, strerror(errno));
        return -1;
    }
    long count = 0;
    for (int i = 0; i < n; i++) {
        char path[4096];
        struct stat st;
        int len = snprintf(path, sizeof(path), "%s/%s", dir, ents[i]->d_name);
        if (count >= 0 && len > 0 && (size_t)len < sizeof(path) && stat(path, &st) == 0 &&
            S_ISREG(st.st_mode))
            count = replay_file(path) == 0 ? count + 1 : -1;
        free(ents[i]);
    }
    free(ents);
    return count;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
        return 2;
    }
    long total = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        long n;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        n = S_ISDIR(st.st_mode) ? replay_dir(argv[i]) : (replay_file(argv[i]) == 0 ? 1 : -1);
        if (n < 0) return 1;
        total += n;
    }
    printf("replay: %ld inputs, no finding\n", total);
    return 0;
}
