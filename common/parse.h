/* parse.h: strict parsing of numbers and sizes from flags, config and environment.
 * Every function rejects empty strings, trailing garbage and out-of-range values and returns
 * 0 or -EINVAL / -ERANGE, writing the reason into err. */
#ifndef NOSA_PARSE_H
#define NOSA_PARSE_H

#include <stddef.h>
#include <stdint.h>

int nosa_parse_long(const char *s, long min, long max, long *out, char *err, size_t errlen);
int nosa_parse_u64(const char *s, uint64_t min, uint64_t max, uint64_t *out, char *err,
                   size_t errlen);
int nosa_parse_double(const char *s, double min, double max, double *out, char *err,
                      size_t errlen);
/* "4096", "64K", "512M", "64G", "1T" (binary units, optional trailing "B" or "iB"). */
int nosa_parse_size(const char *s, uint64_t *out, char *err, size_t errlen);

#endif
