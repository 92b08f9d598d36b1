// SPDX-License-Identifier: Apache-2.0
/* A 128-bit non-cryptographic hash (two FNV-1a lanes with different offsets) for program-cache keys and
 * kernel-source fingerprints. Cache entries also store their full key text and are checked against it, so a
 * collision can only cost a rebuild, never a wrong program. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define FNV_PRIME 0x100000001b3ULL

void cla_hash_init(cla_hash *h) {
    h->a = 0xcbf29ce484222325ULL;
    h->b = 0x84222325cbf29ce4ULL;
}

void cla_hash_bytes(cla_hash *h, const void *data, size_t size) {
    const unsigned char *p = data;
    uint64_t a = h->a, b = h->b;
    for (size_t i = 0; i < size; ++i) {
        a = (a ^ p[i]) * FNV_PRIME;
        /* The second lane sees each byte rotated so the lanes do not stay correlated. */
        b = (b ^ (unsigned char)((p[i] << 3) | (p[i] >> 5))) * FNV_PRIME;
        b ^= b >> 29;
    }
    h->a = a;
    h->b = b;
}

void cla_hash_string(cla_hash *h, const char *s) {
    cla_hash_bytes(h, s, strlen(s) + 1);
}

void cla_hash_hex(const cla_hash *h, char out[33]) {
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h->a, (unsigned long long)h->b);
}
