/* parse.c: see parse.h. */
#include "parse.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

int nosa_parse_long(const char *s, long min, long max, long *out, char *err, size_t errlen)
{
    if (!s || !*s) {
        nosa_set_error(err, errlen, "empty number");
        return -EINVAL;
    }
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0') {
        nosa_set_error(err, errlen, "'%s' is not an integer", s);
        return -EINVAL;
    }
    if (errno == ERANGE || v < min || v > max) {
        nosa_set_error(err, errlen, "'%s' is out of range [%ld, %ld]", s, min, max);
        return -ERANGE;
    }
    *out = v;
    return 0;
}

int nosa_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err,
                   size_t errlen)
{
    if (!s || !*s || *s == '-' || isspace((unsigned char)*s)) {
        nosa_set_error(err, errlen, "'%s' is not a non-negative integer", s ? s : "");
        return -EINVAL;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end != '\0') {
        nosa_set_error(err, errlen, "'%s' is not a non-negative integer", s);
        return -EINVAL;
    }
    if (errno == ERANGE || v < min || v > max) {
        nosa_set_error(err, errlen, "'%s' is out of range [%" PRIu64 ", %" PRIu64 "]", s, min,
                       max);
        return -ERANGE;
    }
    *out = (uint64_t)v;
    return 0;
}

int nosa_parse_double(const char *s, double min, double max, double *out, char *err,
                      size_t errlen)
{
    if (!s || !*s) {
        nosa_set_error(err, errlen, "empty number");
        return -EINVAL;
    }
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || isnan(v)) {
        nosa_set_error(err, errlen, "'%s' is not a number", s);
        return -EINVAL;
    }
    if (errno == ERANGE || v < min || v > max) {
        nosa_set_error(err, errlen, "'%s' is out of range [%g, %g]", s, min, max);
        return -ERANGE;
    }
    *out = v;
    return 0;
}

int nosa_parse_size(const char *s, uint64_t *out, char *err, size_t errlen)
{
    if (!s || !*s || !isdigit((unsigned char)*s)) {
        nosa_set_error(err, errlen, "'%s' is not a size (e.g. 4096, 512M, 64G)", s ? s : "");
        return -EINVAL;
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno == ERANGE) {
        nosa_set_error(err, errlen, "size '%s' is too large", s);
        return -ERANGE;
    }
    unsigned shift = 0;
    switch (toupper((unsigned char)*end)) {
    case '\0': break;
    case 'K': shift = 10; end++; break;
    case 'M': shift = 20; end++; break;
    case 'G': shift = 30; end++; break;
    case 'T': shift = 40; end++; break;
    case 'B': break;
    default:
        nosa_set_error(err, errlen, "size '%s' has an unknown unit (use K, M, G, T)", s);
        return -EINVAL;
    }
    if (shift && (*end == 'i' || *end == 'I')) end++;
    if (*end == 'B' || *end == 'b') end++;
    if (*end != '\0') {
        nosa_set_error(err, errlen, "size '%s' has trailing characters", s);
        return -EINVAL;
    }
    if (shift && v > (UINT64_MAX >> shift)) {
        nosa_set_error(err, errlen, "size '%s' is too large", s);
        return -ERANGE;
    }
    *out = (uint64_t)v << shift;
    return 0;
}
