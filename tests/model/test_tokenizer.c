/* test_tokenizer.c: the byte tokenizer (round trip of arbitrary bytes, BOS, placeholders,
 * buffer limits) and token-id list parsing (strict). */
#include <errno.h>
#include <string.h>

#include "tokenizer.h"
#include "test_util.h"

static void test_round_trip(void)
{
    struct nosa_model_config c;
    struct nosa_tokenizer t;
    char err[256], out[1024];
    int32_t ids[600];
    size_t n, len;
    REQUIRE(nosa_model_config_builtin("tiny", &c, err, sizeof(err)) == 0, "tiny");
    REQUIRE(nosa_tokenizer_init(&t, &c, err, sizeof(err)) == 0, "init: %s", err);
    unsigned char all[256];
    for (int i = 0; i < 256; i++) all[i] = (unsigned char)i; /* every byte, NUL and UTF-8 */
    CHECK(nosa_tokenizer_encode(&t, (const char *)all, 256, 1, ids, 600, &n, err,
                                sizeof(err)) == 0 && n == 257, "encode all bytes");
    CHECK(ids[0] == 256 && ids[1] == 0 && ids[256] == 255, "BOS then bytes");
    CHECK(nosa_tokenizer_decode(&t, ids, n, out, sizeof(out), &len, err, sizeof(err)) == 0,
          "decode: %s", err);
    CHECK(len == 256 && memcmp(out, all, 256) == 0, "round trip (BOS renders as nothing)");
    const char *utf8 = "h\xc3\xa9llo \xe2\x82\xac";
    CHECK(nosa_tokenizer_encode(&t, utf8, strlen(utf8), 0, ids, 600, &n, err, sizeof(err)) == 0 &&
              n == strlen(utf8) && ids[1] == 0xc3,
          "UTF-8 bytes, no BOS");
    /* Ids past the bytes render as placeholders; EOS as nothing. */
    int32_t mixed[] = {'a', 300, 257, 'b', 511};
    CHECK(nosa_tokenizer_decode(&t, mixed, 5, out, sizeof(out), &len, err, sizeof(err)) == 0 &&
              strcmp(out, "a<|300|>b<|511|>") == 0 && len == 16,
          "placeholders: '%s'", out);
    char piece[NOSA_TOKEN_TEXT_MAX];
    CHECK(nosa_tokenizer_token_text(&t, 257, piece) == 0, "eos empty");
    CHECK(nosa_tokenizer_token_text(&t, 512, piece) == -EINVAL, "out of vocab");
    CHECK(nosa_tokenizer_token_text(&t, -1, piece) == -EINVAL, "negative");
    int32_t bad[] = {'a', 512};
    CHECK(nosa_tokenizer_decode(&t, bad, 2, out, sizeof(out), &len, err, sizeof(err)) ==
              -EINVAL && strstr(err, "512"),
          "decode out of vocab: %s", err);
    CHECK(nosa_tokenizer_decode(&t, mixed, 5, out, 16, &len, err, sizeof(err)) == -ENOSPC,
          "no room for the NUL");
    CHECK(nosa_tokenizer_decode(&t, mixed, 0, out, 0, &len, err, sizeof(err)) == -ENOSPC,
          "cap 0");
    CHECK(nosa_tokenizer_encode(&t, "abc", 3, 1, ids, 3, &n, err, sizeof(err)) == -ENOSPC &&
              n == 4,
          "encode reports the size it needs");
    c.bos_token_id = -1;
    REQUIRE(nosa_tokenizer_init(&t, &c, err, sizeof(err)) == 0, "init");
    CHECK(nosa_tokenizer_encode(&t, "abc", 3, 1, ids, 3, &n, err, sizeof(err)) == 0 && n == 3,
          "no BOS in the model: none added");
    c.vocab_size = 255;
    CHECK(nosa_tokenizer_init(&t, &c, err, sizeof(err)) == -EINVAL && strstr(err, "256"),
          "vocab too small: %s", err);
}

static void test_parse_ids(void)
{
    int32_t ids[4];
    size_t n;
    char err[256];
    CHECK(nosa_tokenizer_parse_ids("1,2,3", 512, ids, 4, &n, err, sizeof(err)) == 0 && n == 3 &&
              ids[0] == 1 && ids[2] == 3,
          "1,2,3");
    CHECK(nosa_tokenizer_parse_ids(" 7 , 511 ", 512, ids, 4, &n, err, sizeof(err)) == 0 &&
              n == 2 && ids[1] == 511,
          "spaces");
    CHECK(nosa_tokenizer_parse_ids("0", 512, ids, 4, &n, err, sizeof(err)) == 0 && n == 1,
          "single 0");
    static const char *bad[] = {"", "1,,2", "1,2,", ",1", "1 2", "a", "1,-1", "512",
                                "1.5", "99999999999999999999", "0x10", "1;2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        CHECK(nosa_tokenizer_parse_ids(bad[i], 512, ids, 4, &n, err, sizeof(err)) == -EINVAL &&
                  err[0],
              "'%s' rejected", bad[i]);
    }
    CHECK(nosa_tokenizer_parse_ids("1,2,3,4,5", 512, ids, 4, &n, err, sizeof(err)) == -ENOSPC,
          "too many");
}

int main(void)
{
    test_round_trip();
    test_parse_ids();
    return test_report("test_tokenizer");
}
