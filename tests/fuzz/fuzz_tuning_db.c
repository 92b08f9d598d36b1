// SPDX-License-Identifier: Apache-2.0
/* libFuzzer target for the tuning-database parser (cla_tuning_db_parse in src/tuning/tuning_db.c) and the matcher
 * behind it. A database file is untrusted input: a user may edit it, a disk may truncate it. Whatever its bytes,
 * the parser must either reject the whole file with a reason or give entries whose every field is in the range the
 * format comment states; such a database must survive a write and a re-read unchanged; and whatever the matcher
 * picks from it for a few problems must pass the kernel's own check on the device (or be the built-in default).
 *
 * Build and run: tools/scripts/fuzz.sh (see tests/fuzz/README.md). */
#define _POSIX_C_SOURCE 200809L /* strtok_r */
#include "tuning.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FUZZ_TARGET "fuzz_tuning_db"
#include "fuzz_check.h"

static bool token(const char *s, size_t max) {
    size_t n = strlen(s);
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; ++i)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return false;
    return true;
}

/* "name=value,..." with short lowercase names and values, at most CLA_TUNE_MAX_PARAMS pairs. */
static bool params_well_formed(const char *text) {
    if (!*text) return true;
    char copy[CLA_TUNE_PARAMS_TEXT];
    CHECK(strlen(text) < sizeof copy);
    strcpy(copy, text);
    int pairs = 0;
    for (char *save = NULL, *pair = strtok_r(copy, ",", &save); pair; pair = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(pair, '=');
        if (!eq) return false;
        *eq = '\0';
        if (!token(pair, 15) || !token(eq + 1, 15)) return false;
        ++pairs;
    }
    return pairs <= CLA_TUNE_MAX_PARAMS;
}

static void check_entry(const cla_tuning_entry *e) {
    CHECK(token(e->op, sizeof e->op - 1));
    CHECK(strlen(e->source_hash) == 32 && strspn(e->source_hash, "0123456789abcdef") == 32);
    const cla_tune_class *c = &e->cls;
    CHECK(c->head_dim == -1 || (c->head_dim >= 1 && c->head_dim <= 65536));
    CHECK(c->dtype >= -1 && c->dtype <= 2);
    CHECK(c->mask_kind >= -1 && c->mask_kind <= 2);
    CHECK(c->causal >= -1 && c->causal <= 1);
    CHECK(c->phase >= -1 && c->phase <= 1);
    CHECK(c->seq == -1 || (c->seq >= 1 && c->seq <= (1L << 30) && (c->seq & (c->seq - 1)) == 0));
    CHECK(params_well_formed(e->params));
    CHECK(isfinite(e->ms) && e->ms >= 0 && isfinite(e->default_ms) && e->default_ms >= 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cla_tuning_db db;
    memset(&db, 0, sizeof db);
    char why[256] = "";
    if (!cla_tuning_db_parse((const char *)data, size, &db, why, sizeof why)) {
        CHECK(why[0] != '\0');
        CHECK(db.count == 0 && db.entries == NULL);
        return 0;
    }
    for (size_t i = 0; i < db.count; ++i) check_entry(&db.entries[i]);

    /* Written and read back: the same database. */
    char *text = cla_tuning_db_to_json(&db);
    CHECK(text != NULL);
    cla_tuning_db back;
    memset(&back, 0, sizeof back);
    if (!cla_tuning_db_parse(text, strlen(text), &back, why, sizeof why)) {
        fprintf(stderr, "fuzz_tuning_db: the written database does not parse: %s\n%s\n", why, text);
        abort();
    }
    CHECK(back.count == db.count);
    CHECK(strcmp(back.platform, db.platform) == 0 && strcmp(back.device, db.device) == 0 &&
          strcmp(back.driver, db.driver) == 0);
    for (size_t i = 0; i < db.count; ++i) {
        const cla_tuning_entry *a = &db.entries[i], *b = &back.entries[i];
        CHECK(strcmp(a->op, b->op) == 0 && strcmp(a->source_hash, b->source_hash) == 0);
        CHECK(memcmp(&a->cls, &b->cls, sizeof a->cls) == 0);
        CHECK(strcmp(a->params, b->params) == 0);
        CHECK(a->ms == b->ms && a->default_ms == b->default_ms);
    }
    free(text);
    cla_tuning_db_clear(&back);

    /* Matching on a CPU and a GPU with small limits: whatever is picked fits. */
    clattn_device_info devices[2];
    memset(devices, 0, sizeof devices);
    devices[0].type = CLATTN_DEVICE_TYPE_CPU;
    devices[0].max_work_group_size = devices[0].max_work_item_sizes[0] = 4096;
    devices[0].local_mem_bytes = 32768;
    devices[1].type = CLATTN_DEVICE_TYPE_GPU;
    devices[1].max_work_group_size = devices[1].max_work_item_sizes[0] = 256;
    devices[1].local_mem_bytes = 16384;
    devices[1].local_mem_is_dedicated = 1;
    static const char *const problems[] = {"prefill:d64:L512", "decode:d128:L4096:f16:causal",
                                           "prefill:d32:L8:bool"};
    const char *hash = db.count ? db.entries[0].source_hash : "00000000000000000000000000000000";
    for (size_t d = 0; d < 2; ++d)
        for (size_t i = 0; i < sizeof problems / sizeof problems[0]; ++i) {
            cla_tune_class c;
            CHECK(cla_tune_class_parse(problems[i], true, &c, why, sizeof why));
            cla_tune_problem p = cla_tune_class_problem(&c);
            cla_tune_choice ch;
            cla_tuning_match(NULL, &db, hash, &devices[d], &cla_tune_op_sdpa_fused, &p, &ch);
            CHECK(cla_tune_op_sdpa_fused.check(&devices[d], &p, &ch.config) == NULL);
            CHECK((ch.source == CLATTN_TUNING_BUILTIN) == (ch.entry == NULL));
        }
    cla_tuning_db_clear(&db);
    return 0;
}
