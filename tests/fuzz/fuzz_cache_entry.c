// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the on-disk program cache's entry check (cla_disk_cache_check_entry in src/disk_cache.c).
 * A cache file is untrusted input: another process, a full disk or an attacker may have written it. Whatever its
 * bytes, the check must either reject it or hand back a binary that lies inside the file, whose header says exactly
 * what the format comment in disk_cache.c says, and whose checksum matches.
 *
 * Every input is checked twice: whole, against a fixed key; and split at its first NUL byte into a key and an
 * entry, so that the fuzzer also controls the key (empty keys, keys longer than the entry, keys with high bytes).
 * Then an entry built here from the format description, holding the input as its binary, must be accepted.
 *
 * Build and run: tools/scripts/fuzz.sh (see tests/fuzz/README.md). */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The key the seed corpus's whole-input entries are written for (tests/fuzz/make_seeds.py uses the same text). */
#define FIXED_KEY "clattn-fuzz-key sdpa_fused -DHEAD_DIM=64 platform=Portable Computing Language device=cpu"

#define FUZZ_TARGET "fuzz_cache_entry"
#include "fuzz_check.h"

static uint64_t le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; --i) v = v << 8 | p[i];
    return v;
}

/* The checksum the format stores, recomputed from the hash functions (the one thing not re-derived here). */
static uint64_t entry_checksum(const uint8_t *p, size_t n) {
    cla_hash h;
    cla_hash_init(&h);
    cla_hash_bytes(&h, p, n);
    return h.a ^ (h.b << 1);
}

/* Checks one entry against one key; when accepted, re-reads the header by the layout in the format comment:
 * "CLATTNPC", u32 version, u32 key length, key, u64 binary length, u64 checksum, binary. */
static bool check_one(const uint8_t *data, size_t size, const char *key) {
    const unsigned char *binary = NULL;
    size_t binary_size = 0;
    const char *problem = cla_disk_cache_check_entry(data, size, key, &binary, &binary_size);
    if (problem) {
        CHECK(*problem != '\0');
        return false;
    }
    size_t key_len = strlen(key);
    CHECK(binary != NULL && binary_size > 0);
    /* Inside the input, and ending exactly at its end (pointer comparisons as integers: no UB if it is wild). */
    uintptr_t lo = (uintptr_t)data, hi = lo + size, b = (uintptr_t)binary;
    CHECK(b >= lo && b <= hi && binary_size <= hi - b && b + binary_size == hi);
    CHECK(size >= 32 + key_len && b - lo == 32 + key_len);
    CHECK(memcmp(data, "CLATTNPC", 8) == 0);
    CHECK(le(data + 8, 4) == 1);
    CHECK(le(data + 12, 4) == key_len);
    CHECK(memcmp(data + 16, key, key_len) == 0);
    CHECK(le(data + 16 + key_len, 8) == binary_size);
    CHECK(le(data + 24 + key_len, 8) == entry_checksum(binary, binary_size));
    return true;
}

static void put_le(uint8_t *p, uint64_t v, int n) {
    for (int i = 0; i < n; ++i) p[i] = (uint8_t)(v >> (8 * i));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* 1. The whole input against the fixed key. libFuzzer's buffer holds exactly `size` bytes, so ASan catches any
     * read past the end. */
    check_one(data, size, FIXED_KEY);

    /* 2. Key from the input: the bytes before the first NUL; the entry is everything after it, copied into a buffer
     * of its own size for the same reason. */
    const uint8_t *nul = memchr(data, 0, size);
    if (nul) {
        size_t key_len = (size_t)(nul - data);
        char *key = malloc(key_len + 1);
        size_t entry_size = size - key_len - 1;
        uint8_t *entry = malloc(entry_size ? entry_size : 1);
        if (!key || !entry) abort();
        memcpy(key, data, key_len + 1);
        memcpy(entry, nul + 1, entry_size);
        check_one(entry, entry_size, key);
        /* The same entry against the key less its last byte: a stored key that merely starts with the asked-for
         * one must not match (check_one verifies the stored key length on acceptance). */
        if (key_len > 0) {
            key[key_len - 1] = '\0';
            check_one(entry, entry_size, key);
        }
        free(key);
        free(entry);
    }

    /* 3. A well-formed entry holding the input as its binary must be accepted, and truncating it by one byte must
     * not be. */
    if (size > 0) {
        size_t key_len = strlen(FIXED_KEY), total = 32 + key_len + size;
        uint8_t *entry = malloc(total);
        if (!entry) abort();
        memcpy(entry, "CLATTNPC", 8);
        put_le(entry + 8, 1, 4);
        put_le(entry + 12, key_len, 4);
        memcpy(entry + 16, FIXED_KEY, key_len);
        put_le(entry + 16 + key_len, size, 8);
        put_le(entry + 24 + key_len, entry_checksum(data, size), 8);
        memcpy(entry + 32 + key_len, data, size);
        CHECK(check_one(entry, total, FIXED_KEY));
        CHECK(!check_one(entry, total - 1, FIXED_KEY));
        free(entry);
    }
    return 0;
}
