/* test_parse_size.c: nosa_parse_size (common/parse.h), the parser of nosa-kvhost --arena and
 * of every other size flag: binary units with an optional "B" or "iB", case-insensitive;
 * anything else refused with -EINVAL, a size past 2^64 - 1 with -ERANGE, the error naming it. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "parse.h"
#include "test_util.h"

static void ok(const char *s, uint64_t want)
{
    uint64_t got = 12345;
    char err[256] = "";
    int rc = nosa_parse_size(s, &got, err, sizeof err);
    CHECK(rc == 0 && got == want, "'%s': rc %d, %llu, want %llu (%s)", s, rc,
          (unsigned long long)got, (unsigned long long)want, err);
}

static void refused(const char *s, int want_rc, const char *needle)
{
    uint64_t got = 12345;
    char err[256] = "";
    int rc = nosa_parse_size(s, &got, err, sizeof err);
    CHECK(rc == want_rc && got == 12345, "'%s': rc %d, want %d (value untouched)", s ? s : "NULL",
          rc, want_rc);
    CHECK(strstr(err, needle) && (!s || !s[0] || strstr(err, s)),
          "'%s': the error names it and says '%s': %s", s ? s : "NULL", needle, err);
}

int main(void)
{
    ok("0", 0); /* a size of 0 parses; the kv-host's planner refuses an arena that small */
    ok("4096", 4096);
    ok("1B", 1);
    ok("512M", 512ull << 20);
    ok("512m", 512ull << 20);
    ok("64G", 64ull << 30);
    ok("8GiB", 8ull << 30);
    ok("8gib", 8ull << 30);
    ok("8GB", 8ull << 30);
    ok("64K", 64ull << 10);
    ok("2T", 2ull << 40);
    ok("16777215T", 16777215ull << 40);
    ok("18446744073709551615", UINT64_MAX);

    refused("", -EINVAL, "not a size");
    refused(NULL, -EINVAL, "not a size");
    refused("G", -EINVAL, "not a size");
    refused("-1G", -EINVAL, "not a size");
    refused(" 8G", -EINVAL, "not a size");
    refused("8X", -EINVAL, "unknown unit");
    refused("8P", -EINVAL, "unknown unit");
    refused("8iB", -EINVAL, "unknown unit");
    refused("8GG", -EINVAL, "trailing");
    refused("8G ", -EINVAL, "trailing");
    refused("1.5G", -EINVAL, "unknown unit");
    refused("18446744073709551616", -ERANGE, "too large");
    refused("16777216T", -ERANGE, "too large");
    refused("17179869184G", -ERANGE, "too large");
    return test_report("test_parse_size");
}
