// SPDX-License-Identifier: Apache-2.0
/* Tests of the tuner and the tuning database. `test_tuning --unit` runs the parts that need no device: the parser
 * (valid, malformed and hostile files), the writer's round trip, and the matcher's fallbacks (exact class, nearest
 * sequence bucket, device default, built-in; stale source hashes and entries that do not fit the device). Without
 * it, the device parts run too: a context reading a database of another device or a malformed one, and real runs
 * of `clattn tune` on the device (a short tune whose result a new context picks up, candidates that fail to build,
 * give a wrong answer, crash or hang, and a run interrupted and resumed). */
#include "test_util.h"

#include <ctype.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sdpa_internal.h" /* the argument lists of the kernels outside the families */
#include "tuning.h"

static const char *const hash_a = "0123456789abcdef0123456789abcdef";
static const char *const hash_b = "fedcba9876543210fedcba9876543210";

static clattn_device_info fake_cpu(void) {
    clattn_device_info d;
    memset(&d, 0, sizeof d);
    snprintf(d.platform_name, sizeof d.platform_name, "Fake Platform");
    snprintf(d.name, sizeof d.name, "fake cpu");
    snprintf(d.driver_version, sizeof d.driver_version, "1.0");
    d.type = CLATTN_DEVICE_TYPE_CPU;
    d.compute_units = 2;
    d.max_work_group_size = 4096;
    d.max_work_item_sizes[0] = 4096;
    d.local_mem_bytes = 32768;
    return d;
}

static cla_tune_problem problem(const char *cls) {
    cla_tune_class c;
    char why[128];
    assert_true(cla_tune_class_parse(cls, true, &c, why, sizeof why));
    return cla_tune_class_problem(&c);
}

static char *entry_json(const char *hash, const char *cls, const char *params) {
    char *s = malloc(1024);
    snprintf(s, 1024, "{\"op\":\"sdpa_fused\",\"source_hash\":\"%s\",\"class\":%s,\"params\":%s,\"ms\":1.5}", hash,
             cls, params);
    return s;
}

/* A database of the fake device with the given entries (JSON objects). */
static bool parse_db(cla_tuning_db *db, const char *entries, char *why, size_t why_size) {
    char text[8192];
    snprintf(text, sizeof text,
             "{\"format\":1,\"platform\":\"Fake Platform\",\"device\":\"fake cpu\",\"driver\":\"1.0\","
             "\"entries\":[%s]}",
             entries);
    memset(db, 0, sizeof *db);
    return cla_tuning_db_parse(text, strlen(text), db, why, why_size);
}

static const char *const prefill_256 = "{\"phase\":\"prefill\",\"head_dim\":64,\"seq\":256,\"dtype\":\"f32\","
                                       "\"causal\":false,\"mask\":\"none\"}";
static const char *const prefill_1024 = "{\"phase\":\"prefill\",\"head_dim\":64,\"seq\":1024,\"dtype\":\"f32\","
                                        "\"causal\":false,\"mask\":\"none\"}";

static void choose(const cla_tuning_db *db, const char *hash, const char *cls, cla_tune_choice *ch, char *params,
                   size_t size) {
    clattn_device_info d = fake_cpu();
    cla_tune_problem p = problem(cls);
    cla_tuning_match(NULL, db, hash, &d, &cla_tune_op_sdpa_fused, &p, ch);
    cla_tune_config_format(&cla_tune_op_sdpa_fused, &ch->config, params, size);
}

/* Four entries (JSON objects, freed here) as a database of the fake device. */
static bool parse_entries(cla_tuning_db *db, char *e1, char *e2, char *e3, char *e4, char *why, size_t why_size) {
    char entries[4096];
    snprintf(entries, sizeof entries, "%s,%s,%s,%s", e1, e2, e3, e4);
    free(e1);
    free(e2);
    free(e3);
    free(e4);
    return parse_db(db, entries, why, why_size);
}

/* One matcher query and what it must give: the source, then the formatted parameters (when `params` is set) or
 * one parameter's value (when `field` is not NO_FIELD). */
#define NO_FIELD (-1)
typedef struct {
    const char *hash, *cls;
    clattn_tuning_source source;
    const char *params;
    int field, value;
} match_case;
#define MATCH_PARAMS(hash, cls, source, params)                                                                    \
    { hash, cls, source, params, NO_FIELD, 0 }
#define MATCH_FIELD(hash, cls, source, field, value)                                                               \
    { hash, cls, source, NULL, field, value }
#define MATCH_SOURCE(hash, cls, source)                                                                            \
    { hash, cls, source, NULL, NO_FIELD, 0 }

typedef void (*choose_fn)(const cla_tuning_db *db, const char *hash, const char *cls, cla_tune_choice *ch,
                          char *params, size_t size);

static void expect_matches(const cla_tuning_db *db, choose_fn pick, const match_case *cases, size_t count) {
    for (size_t i = 0; i < count; ++i) {
        const match_case *c = &cases[i];
        cla_tune_choice ch;
        char params[256];
        pick(db, c->hash, c->cls, &ch, params, sizeof params);
        assert_int_equal(ch.source, c->source);
        if (c->params) assert_string_equal(params, c->params);
        if (c->field != NO_FIELD) assert_int_equal(ch.config.v[c->field], c->value);
    }
}

static void matcher_fallbacks(void **state) {
    (void)state;
    char *e1 = entry_json(hash_a, prefill_256, "{\"variant\":\"cpu\",\"rows\":8,\"block_n\":32}");
    char *e2 = entry_json(hash_a, prefill_1024, "{\"variant\":\"cpu\",\"rows\":16,\"block_n\":64}");
    char *e3 = entry_json(hash_a, "{\"phase\":\"prefill\"}", "{\"variant\":\"cpu\",\"rows\":32,\"block_n\":96}");
    char *e4 = entry_json(hash_b, "{\"phase\":\"decode\"}", "{\"variant\":\"cpu\",\"rows\":1,\"block_n\":128}");
    cla_tuning_db db;
    char why[256] = "";
    assert_true(parse_entries(&db, e1, e2, e3, e4, why, sizeof why));
    assert_int_equal(db.count, 4);
    static const match_case cases[] = {
        MATCH_PARAMS(hash_a, "prefill:d64:L256", CLATTN_TUNING_EXACT,
                     "variant=cpu,rows=8,block_n=32,wg=1,local=0,splits=0,gqa_pack=0"),
        /* A length inside a bucket is that bucket. */
        MATCH_FIELD(hash_a, "prefill:d64:L1000", CLATTN_TUNING_EXACT, CLA_FUSED_ROWS, 16),
        /* Nearest bucket in log2: 4096 is two steps from 1024, four from 256. */
        MATCH_FIELD(hash_a, "prefill:d64:L4096", CLATTN_TUNING_NEAREST, CLA_FUSED_ROWS, 16),
        MATCH_FIELD(hash_a, "prefill:d64:L128", CLATTN_TUNING_NEAREST, CLA_FUSED_ROWS, 8),
        /* Another head dim: no class of its own, so the device default of the phase. */
        MATCH_FIELD(hash_a, "prefill:d128:L256", CLATTN_TUNING_DEVICE_DEFAULT, CLA_FUSED_ROWS, 32),
        /* Causal is another class too. */
        MATCH_SOURCE(hash_a, "prefill:d64:L256:causal", CLATTN_TUNING_DEVICE_DEFAULT),
        /* Decode: its only entry has another source hash, so the built-in default. */
        MATCH_PARAMS(hash_a, "decode:d64:L2048", CLATTN_TUNING_BUILTIN,
                     "variant=cpu,rows=1,block_n=48,wg=1,local=0,splits=0,gqa_pack=1"),
        /* A stale hash for everything: never used. */
        MATCH_PARAMS("00000000000000000000000000000000", "prefill:d64:L256", CLATTN_TUNING_BUILTIN,
                     "variant=cpu,rows=24,block_n=48,wg=1,local=0,splits=0,gqa_pack=0"),
        MATCH_FIELD(hash_b, "decode:d64:L64", CLATTN_TUNING_DEVICE_DEFAULT, CLA_FUSED_BLOCK_N, 128),
    };
    expect_matches(&db, choose, cases, sizeof cases / sizeof cases[0]);
    /* No database at all. */
    static const match_case no_db[] = {MATCH_SOURCE(hash_a, "prefill:d64:L256", CLATTN_TUNING_BUILTIN)};
    expect_matches(NULL, choose, no_db, 1);
    cla_tuning_db_clear(&db);
}

/* The score modifiers are part of the class: "softcap", "sinks" and "alibi" in its text and "mods" in the file. An
 * entry tuned with modifiers serves exactly those calls, ahead of one tuned without them (stored with no "mods",
 * which serves calls with any); malformed "mods" are refused. */
static void matcher_score_modifiers(void **state) {
    (void)state;
    cla_tune_class c;
    char why[256] = "", text[128];
    assert_true(cla_tune_class_parse("prefill:d64:L1024:alibi:softcap", true, &c, why, sizeof why));
    assert_int_equal(c.mods, CLA_MODS_SOFTCAP | CLA_MODS_ALIBI);
    cla_tune_class_format(&c, text, sizeof text);
    assert_string_equal(text, "prefill:d64:L1024:f32:softcap:alibi");
    assert_true(cla_tune_class_parse("prefill:d64:L1024", true, &c, why, sizeof why));
    assert_int_equal(c.mods, -1); /* no modifiers: the class whose entries serve any */
    assert_false(cla_tune_class_parse("prefill:d64:L1024:tanh", true, &c, why, sizeof why));
    assert_non_null(strstr(why, "softcap"));
    const cla_tune_problem p = problem("decode:d64:L512:sinks");
    assert_int_equal(cla_tune_class_of(&p).mods, CLA_MODS_SINKS);
    /* Value head dims other than the query/key one are classes of their own (MLA's 576/512); equal ones are not. */
    const cla_tune_problem mla = problem("prefill:d576:v512:L1024");
    assert_int_equal(mla.head_dim, 576);
    assert_int_equal(mla.v_head_dim, 512);
    cla_tune_class mc = cla_tune_class_of(&mla);
    cla_tune_class_format(&mc, text, sizeof text);
    assert_string_equal(text, "prefill:d576:v512:L1024:f32");
    assert_true(cla_tune_class_parse("decode:d128:v128:L64", true, &c, why, sizeof why));
    assert_int_equal(c.v_dim, -1);

    char *e1 = entry_json(hash_a, prefill_1024, "{\"variant\":\"cpu\",\"rows\":16}");
    char *e2 = entry_json(hash_a,
                          "{\"phase\":\"prefill\",\"head_dim\":64,\"seq\":1024,\"dtype\":\"f32\","
                          "\"causal\":false,\"mask\":\"none\",\"mods\":[\"softcap\",\"alibi\"]}",
                          "{\"variant\":\"cpu\",\"rows\":8}");
    char *e3 =
        entry_json(hash_a, "{\"phase\":\"decode\",\"mods\":[\"sinks\"]}", "{\"variant\":\"cpu\",\"block_n\":16}");
    char *e4 = entry_json(hash_a, "{\"phase\":\"decode\"}", "{\"variant\":\"cpu\",\"block_n\":32}");
    cla_tuning_db db;
    assert_true(parse_entries(&db, e1, e2, e3, e4, why, sizeof why));
    static const match_case cases[] = {
        MATCH_FIELD(hash_a, "prefill:d64:L1024", CLATTN_TUNING_EXACT, CLA_FUSED_ROWS, 16),
        MATCH_FIELD(hash_a, "prefill:d64:L1024:softcap:alibi", CLATTN_TUNING_EXACT, CLA_FUSED_ROWS, 8),
        /* Other modifiers: the entry tuned without any. */
        MATCH_FIELD(hash_a, "prefill:d64:L1024:softcap", CLATTN_TUNING_EXACT, CLA_FUSED_ROWS, 16),
        MATCH_FIELD(hash_a, "decode:d64:L64:sinks", CLATTN_TUNING_DEVICE_DEFAULT, CLA_FUSED_BLOCK_N, 16),
        MATCH_FIELD(hash_a, "decode:d64:L64", CLATTN_TUNING_DEVICE_DEFAULT, CLA_FUSED_BLOCK_N, 32),
    };
    expect_matches(&db, choose, cases, sizeof cases / sizeof cases[0]);
    cla_tuning_db_clear(&db);
    char *b1 = entry_json(hash_a, "{\"mods\":[\"tanh\"]}", "{}");
    assert_false(parse_db(&db, b1, why, sizeof why));
    assert_non_null(strstr(why, "mods"));
    free(b1);
    cla_tuning_db_clear(&db);
}

/* The serving formats are part of the class too: "packed"/"paged" and "i8"/"fp8" in its text, "kv_layout" and
 * "kv_dtype" in the file. An entry tuned with one serves calls with exactly that one, ahead of the dense class's
 * entry, which still serves them when there is none (databases from before keep working); the fields survive the
 * writer; malformed ones are refused. */
static void matcher_serving_formats(void **state) {
    (void)state;
    cla_tune_class c;
    char why[256] = "", text[128];
    assert_true(cla_tune_class_parse("decode:d64:L1024:i8:paged:softcap", true, &c, why, sizeof why));
    assert_int_equal(c.kv_layout, CLATTN_TUNE_KV_PAGED);
    assert_int_equal(c.kv_dtype, CLATTN_DTYPE_I8);
    cla_tune_class_format(&c, text, sizeof text);
    assert_string_equal(text, "decode:d64:L1024:f32:softcap:paged:i8");
    /* The caller's mods are bits of the modifiers (which expression does not matter). */
    assert_true(cla_tune_class_parse("prefill:d64:L64:mask_mod:score_mod", true, &c, why, sizeof why));
    assert_int_equal(c.mods, CLA_MODS_SCORE_FN | CLA_MODS_MASK_FN);
    cla_tune_class_format(&c, text, sizeof text);
    assert_string_equal(text, "prefill:d64:L64:f32:score_mod:mask_mod");
    assert_true(cla_tune_class_parse("prefill:d64:L1024", true, &c, why, sizeof why));
    assert_int_equal(c.kv_layout, -1);
    assert_int_equal(c.kv_dtype, -1);
    const cla_tune_problem p = problem("prefill:d64:L512:packed:fp8");
    assert_int_equal(p.kv_layout, CLATTN_TUNE_KV_PACKED);
    assert_int_equal(p.kv_dtype, CLATTN_DTYPE_FP8_E4M3);
    assert_int_equal(cla_tune_class_of(&p).kv_dtype, CLATTN_DTYPE_FP8_E4M3);

    char *e1 = entry_json(hash_a,
                          "{\"phase\":\"decode\",\"head_dim\":64,\"seq\":1024,\"dtype\":\"f32\",\"causal\":false,"
                          "\"mask\":\"none\"}",
                          "{\"variant\":\"cpu\",\"block_n\":16}");
    char *e2 = entry_json(hash_a,
                          "{\"phase\":\"decode\",\"head_dim\":64,\"seq\":1024,\"dtype\":\"f32\",\"causal\":false,"
                          "\"mask\":\"none\",\"kv_layout\":\"paged\",\"kv_dtype\":\"i8\"}",
                          "{\"variant\":\"cpu\",\"block_n\":32}");
    char *e3 =
        entry_json(hash_a, "{\"phase\":\"prefill\",\"kv_layout\":\"packed\"}", "{\"variant\":\"cpu\",\"rows\":8}");
    char *e4 =
        entry_json(hash_a, "{\"phase\":\"decode\",\"kv_dtype\":\"fp8\"}", "{\"variant\":\"cpu\",\"block_n\":8}");
    cla_tuning_db db;
    assert_true(parse_entries(&db, e1, e2, e3, e4, why, sizeof why));
    static const match_case cases[] = {
        MATCH_FIELD(hash_a, "decode:d64:L1024", CLATTN_TUNING_EXACT, CLA_FUSED_BLOCK_N, 16),
        MATCH_FIELD(hash_a, "decode:d64:L1024:paged:i8", CLATTN_TUNING_EXACT, CLA_FUSED_BLOCK_N, 32),
        /* Paged alone, or int8 alone: the dense class's entry. */
        MATCH_FIELD(hash_a, "decode:d64:L1024:paged", CLATTN_TUNING_EXACT, CLA_FUSED_BLOCK_N, 16),
        MATCH_FIELD(hash_a, "decode:d64:L1024:i8", CLATTN_TUNING_EXACT, CLA_FUSED_BLOCK_N, 16),
        /* The fp8 device default serves fp8 decode of any size, never plain decode. */
        MATCH_FIELD(hash_a, "decode:d128:L64:fp8", CLATTN_TUNING_DEVICE_DEFAULT, CLA_FUSED_BLOCK_N, 8),
        MATCH_SOURCE(hash_a, "decode:d128:L64", CLATTN_TUNING_BUILTIN),
        MATCH_FIELD(hash_a, "prefill:d32:L64:packed", CLATTN_TUNING_DEVICE_DEFAULT, CLA_FUSED_ROWS, 8),
        MATCH_SOURCE(hash_a, "prefill:d32:L64", CLATTN_TUNING_BUILTIN),
    };
    expect_matches(&db, choose, cases, sizeof cases / sizeof cases[0]);
    /* The writer keeps them. */
    char *json = cla_tuning_db_to_json(&db);
    assert_non_null(json);
    cla_tuning_db back;
    memset(&back, 0, sizeof back); /* harmless: parse initialises it */
    assert_true(cla_tuning_db_parse(json, strlen(json), &back, why, sizeof why));
    assert_int_equal(back.count, 4);
    assert_int_equal(back.entries[1].cls.kv_layout, CLATTN_TUNE_KV_PAGED);
    assert_int_equal(back.entries[1].cls.kv_dtype, CLATTN_DTYPE_I8);
    assert_int_equal(back.entries[3].cls.kv_dtype, CLATTN_DTYPE_FP8_E4M3);
    free(json);
    cla_tuning_db_clear(&back);
    cla_tuning_db_clear(&db);
    static const char *const bad[] = {"{\"kv_layout\":\"dense\"}", "{\"kv_layout\":2}", "{\"kv_dtype\":\"i4\"}"};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(bad); ++i) {
        char *b = entry_json(hash_a, bad[i], "{}");
        assert_false(parse_db(&db, b, why, sizeof why));
        assert_non_null(strstr(why, "kv_"));
        free(b);
        cla_tuning_db_clear(&db);
    }
}

/* An entry the device cannot run (a work-group above its limit, the CPU kernel with rows 12) is skipped for the
 * next best. */
static void matcher_skips_entries_that_do_not_fit(void **state) {
    (void)state;
    char *e1 = entry_json(hash_a, prefill_256, "{\"variant\":\"tiled\",\"wg\":8192,\"local\":1}");
    char *e2 = entry_json(hash_a, prefill_1024, "{\"variant\":\"cpu\",\"rows\":12}");
    char *e3 = entry_json(hash_a, "{}", "{\"variant\":\"tiled\",\"rows\":2,\"block_n\":16,\"wg\":4,\"local\":0}");
    char *e4 = entry_json(hash_a, "{\"phase\":\"decode\"}", "{\"unknown_param\":3}");
    cla_tuning_db db;
    char why[256] = "";
    assert_true(parse_entries(&db, e1, e2, e3, e4, why, sizeof why));
    static const match_case cases[] = {
        MATCH_PARAMS(hash_a, "prefill:d64:L256", CLATTN_TUNING_DEVICE_DEFAULT,
                     "variant=tiled,rows=2,block_n=16,wg=4,local=0,splits=0,gqa_pack=0"),
        /* The decode default names a parameter the kernel does not have: the wildcard entry is next. */
        MATCH_FIELD(hash_a, "decode:d64:L256", CLATTN_TUNING_DEVICE_DEFAULT, CLA_FUSED_VARIANT, CLA_FUSED_TILED),
    };
    expect_matches(&db, choose, cases, sizeof cases / sizeof cases[0]);
    cla_tuning_db_clear(&db);
}

static void parser_rejects_malformed_files(void **state) {
    (void)state;
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "{}",
        "{\"format\":2,\"platform\":\"p\",\"device\":\"d\",\"driver\":\"v\",\"entries\":[]}",
        "{\"format\":1.5,\"platform\":\"p\",\"device\":\"d\",\"driver\":\"v\",\"entries\":[]}",
        "{\"format\":1,\"platform\":7,\"device\":\"d\",\"driver\":\"v\",\"entries\":[]}",
        "{\"format\":1,\"platform\":\"p\",\"device\":\"d\",\"driver\":\"v\",\"entries\":{}}",
        "{\"format\":1,\"platform\":\"p\",\"device\":\"d\",\"driver\":\"v\",\"entries\":[1]}",
        "{\"format\":1,\"platform\":\"p\",\"device\":\"d\",\"driver\":\"v\",\"entries\":[{\"op\":\"sdpa_fused\","
        "\"source_hash\":\"XYZ\",\"class\":{},\"params\":{}}]}",
        "{\"format\":1,\"platform\":\"p\",\"device\":\"d\",\"driver\":\"v\",\"entries\":[{\"op\":\"sdpa_fused\","
        "\"source_hash\":\"0123456789abcdef0123456789abcdef\",\"class\":{\"seq\":1000},\"params\":{}}]}",
        "{\"format\":1,\"platform\":\"p\",\"device\":\"d\",\"driver\":\"v\",\"entries\":[{\"op\":\"sdpa_fused\","
        "\"source_hash\":\"0123456789abcdef0123456789abcdef\",\"class\":{\"colour\":1},\"params\":{}}]}",
        "{\"format\":1,\"platform\":\"p\",\"device\":\"d\",\"driver\":\"v\",\"entries\":[{\"op\":\"sdpa_fused\","
        "\"source_hash\":\"0123456789abcdef0123456789abcdef\",\"class\":{},\"params\":{\"rows\":-1}}]}",
        "{\"format\":1,\"platform\":\"p\",\"device\":\"d\",\"driver\":\"v\",\"entries\":[{\"op\":\"sdpa_fused\","
        "\"source_hash\":\"0123456789abcdef0123456789abcdef\",\"class\":{},\"params\":{\"rows\":\"a,b=c\"}}]}",
        "{\"format\":1,\"platform\":\"p\",\"device\":\"d\",\"driver\":\"v\",\"entries\":[{\"op\":\"sdpa_fused\","
        "\"source_hash\":\"0123456789abcdef0123456789abcdef\",\"class\":{},\"params\":{},\"ms\":-3}]}",
        "{\"format\":1,\"platform\":\"p\",\"device\":\"d\",\"driver\":\"v\",\"entries\":[{\"op\":\"sdpa_fused\","
        "\"source_hash\":\"0123456789abcdef0123456789abcdef\",\"class\":{},\"params\":{}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
        cla_tuning_db db;
        memset(&db, 0, sizeof db);
        char why[256] = "";
        if (cla_tuning_db_parse(bad[i], strlen(bad[i]), &db, why, sizeof why)) fail_msg("accepted: %s", bad[i]);
        assert_true(why[0] != '\0');
        assert_int_equal(db.count, 0);
        cla_tuning_db_clear(&db);
    }
}

/* The parser initialises its output: a struct full of garbage (as a sanitizer build's stack holds) is neither freed
 * nor kept, whether the text is good or not. */
static void parser_initialises_its_output(void **state) {
    (void)state;
    const char *good = "{\"format\":1,\"platform\":\"p\",\"device\":\"d\",\"driver\":\"v\",\"entries\":[]}";
    const char *texts[] = {good, "{\"format\":1}", "not json"};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; ++i) {
        cla_tuning_db db;
        memset(&db, 0xA5, sizeof db);
        char why[256] = "";
        assert_int_equal(cla_tuning_db_parse(texts[i], strlen(texts[i]), &db, why, sizeof why), i == 0);
        assert_int_equal(db.count, 0);
        assert_null(db.path);
        assert_null(db.clblast);
        if (i == 0) assert_string_equal(db.device, "d");
        cla_tuning_db_clear(&db);
    }
}

static void writer_round_trip(void **state) {
    (void)state;
    cla_tuning_db db;
    memset(&db, 0, sizeof db);
    snprintf(db.platform, sizeof db.platform, "Plat \"quoted\"");
    snprintf(db.device, sizeof db.device, "dev\\ice");
    snprintf(db.driver, sizeof db.driver, "1.2.3");
    cla_tuning_entry e;
    memset(&e, 0, sizeof e);
    snprintf(e.op, sizeof e.op, "sdpa_fused");
    snprintf(e.source_hash, sizeof e.source_hash, "%s", hash_a);
    char why[256] = "";
    assert_true(cla_tune_class_parse("decode:d128:L3000:bf16:causal:bool", true, &e.cls, why, sizeof why));
    assert_int_equal(e.cls.seq, 4096);
    snprintf(e.params, sizeof e.params, "variant=cpu,rows=1,block_n=96");
    e.ms = 0.25;
    e.default_ms = 0.5;
    assert_true(cla_tuning_db_put(&db, &e));
    e.cls.seq = -1;
    e.cls.head_dim = -1;
    assert_true(cla_tuning_db_put(&db, &e));
    assert_true(cla_tuning_db_put(&db, &e)); /* the same key replaces */
    assert_int_equal(db.count, 2);
    char *text = cla_tuning_db_to_json(&db);
    assert_non_null(text);
    cla_tuning_db back;
    memset(&back, 0, sizeof back);
    assert_true(cla_tuning_db_parse(text, strlen(text), &back, why, sizeof why));
    assert_string_equal(back.platform, db.platform);
    assert_string_equal(back.device, db.device);
    assert_int_equal(back.count, 2);
    for (size_t i = 0; i < 2; ++i) {
        assert_memory_equal(&back.entries[i].cls, &db.entries[i].cls, sizeof(cla_tune_class));
        assert_string_equal(back.entries[i].params, db.entries[i].params);
        assert_true(back.entries[i].ms == db.entries[i].ms);
    }
    char cls[CLA_TUNE_CLASS_TEXT];
    cla_tune_class_format(&back.entries[0].cls, cls, sizeof cls);
    assert_string_equal(cls, "decode:d128:L4096:bf16:causal:bool");
    cla_tune_class_format(&back.entries[1].cls, cls, sizeof cls);
    assert_string_equal(cls, "decode:bf16:causal:bool");
    free(text);
    cla_tuning_db_clear(&db);
    cla_tuning_db_clear(&back);
}

static void space_and_configs(void **state) {
    (void)state;
    const cla_tune_op *op = cla_tune_op_find("sdpa_fused");
    assert_ptr_equal(op, &cla_tune_op_sdpa_fused);
    assert_null(cla_tune_op_find("no_such_op"));
    cla_tune_config c;
    char why[128], text[256];
    memset(&c, 0, sizeof c);
    assert_true(cla_tune_config_parse(op, "variant=tiled,rows=4,block_n=16,wg=8,local=1,splits=0,gqa_pack=0", &c,
                                      why, sizeof why));
    cla_tune_config_format(op, &c, text, sizeof text);
    assert_string_equal(text, "variant=tiled,rows=4,block_n=16,wg=8,local=1,splits=0,gqa_pack=0");
    assert_false(cla_tune_config_parse(op, "rows=4,", &c, why, sizeof why));
    assert_false(cla_tune_config_parse(op, "cols=4", &c, why, sizeof why));
    assert_false(cla_tune_config_parse(op, "variant=gpu", &c, why, sizeof why));
    assert_false(cla_tune_config_parse(op, "rows", &c, why, sizeof why));
    /* Every point the check passes on a CPU, for a prefill class, keeps the constraints the kernels state. */
    clattn_device_info d = fake_cpu();
    cla_tune_problem p = problem("prefill:d64:L512");
    size_t valid = 0;
    for (size_t i = 0; i < cla_tune_space_size(op); ++i) {
        cla_tune_space_point(op, i, &c);
        if (op->check(&d, &p, &c)) continue;
        ++valid;
        assert_int_equal(c.v[CLA_FUSED_SPLITS], 0);
        if (c.v[CLA_FUSED_VARIANT] == CLA_FUSED_CPU) {
            assert_true(c.v[CLA_FUSED_ROWS] == 1 || c.v[CLA_FUSED_ROWS] % 8 == 0);
            assert_int_equal(c.v[CLA_FUSED_WG], 1);
        }
    }
    assert_true(valid > 50);
    /* The built-in default passes its own check. */
    op->builtin(&d, &p, &c);
    assert_null(op->check(&d, &p, &c));
    d.type = CLATTN_DEVICE_TYPE_GPU;
    d.compiler_available = 1;
    op->builtin(&d, &p, &c);
    assert_null(op->check(&d, &p, &c));
    assert_int_equal(c.v[CLA_FUSED_VARIANT], CLA_FUSED_FLASH);
    assert_int_equal(c.v[CLA_FUSED_LOCAL], 1);
    /* More packed rows (query rows times query heads per key/value head) than the flash kernel's int index takes:
     * the tiled kernel by default, and the flash kernel's check says why. */
    cla_tune_problem huge = p;
    huge.q_len = (size_t)1 << 28;
    huge.group = 8;
    op->builtin(&d, &huge, &c);
    assert_int_equal(c.v[CLA_FUSED_VARIANT], CLA_FUSED_TILED);
    op->builtin(&d, &p, &c);
    assert_int_equal(c.v[CLA_FUSED_VARIANT], CLA_FUSED_FLASH);
    assert_non_null(strstr(op->check(&d, &huge, &c), "at most 2^30 rows"));
    /* Decode on a GPU: the decode kernel up to 16 packed rows (here 1 query times 16 heads of a group), with
     * exactly the call's rows and checked by its own rules; past them the flash kernel, also when decode is asked
     * for with no shape of its own; a decode shape given for them is refused with the reason. */
    cla_tune_problem dec = problem("decode:d128:L2048");
    dec.q_len = 1;
    dec.group = 16;
    op->builtin(&d, &dec, &c);
    assert_int_equal(c.v[CLA_FUSED_VARIANT], CLA_FUSED_DECODE);
    assert_int_equal(c.v[CLA_FUSED_ROWS], 16);
    assert_null(op->check(&d, &dec, &c));
    c.v[CLA_FUSED_ROWS] = 8;
    assert_non_null(strstr(op->check(&d, &dec, &c), "rows from the packed rows"));
    dec.group = 17;
    op->builtin(&d, &dec, &c);
    assert_int_equal(c.v[CLA_FUSED_VARIANT], CLA_FUSED_FLASH);
    for (int i = 0; i < CLA_TUNE_MAX_PARAMS; ++i) c.v[i] = -1;
    c.v[CLA_FUSED_VARIANT] = CLA_FUSED_DECODE;
    cla_sdpa_fused_complete(&d, &dec, &c);
    assert_int_equal(c.v[CLA_FUSED_VARIANT], CLA_FUSED_FLASH);
    c.v[CLA_FUSED_VARIANT] = CLA_FUSED_DECODE;
    c.v[CLA_FUSED_ROWS] = 16;
    assert_non_null(strstr(op->check(&d, &dec, &c), "at most 16 packed rows"));
    /* A call with a score_mod, mask_mod or block mask: flash by the rules (by default, and where decode is asked
     * for, keeping the splits; even with a decode shape given), and the decode check refuses it (a tuning entry).
     */
    dec.group = 4;
    const int needs_flash[] = {CLA_MODS_SCORE_FN, CLA_MODS_MASK_FN, 0};
    for (size_t k = 0; k < sizeof needs_flash / sizeof needs_flash[0]; ++k) {
        cla_tune_problem fl = dec;
        fl.mods = needs_flash[k];
        fl.block_mask = needs_flash[k] == 0;
        op->builtin(&d, &fl, &c);
        assert_int_equal(c.v[CLA_FUSED_VARIANT], CLA_FUSED_FLASH);
        for (int i = 0; i < CLA_TUNE_MAX_PARAMS; ++i) c.v[i] = -1;
        c.v[CLA_FUSED_VARIANT] = CLA_FUSED_DECODE;
        c.v[CLA_FUSED_SPLITS] = 4;
        c.v[CLA_FUSED_ROWS] = 4;
        cla_sdpa_fused_complete(&d, &fl, &c);
        assert_int_equal(c.v[CLA_FUSED_VARIANT], CLA_FUSED_FLASH);
        assert_int_equal(c.v[CLA_FUSED_SPLITS], 4);
        op->builtin(&d, &dec, &c);
        assert_int_equal(c.v[CLA_FUSED_VARIANT], CLA_FUSED_DECODE);
        assert_non_null(strstr(op->check(&d, &fl, &c), "no score_mod, mask_mod or block mask"));
    }
    /* A device that cannot compile at run time (an FPGA's offline toolchain) keeps the tiled kernel. */
    d.compiler_available = 0;
    op->builtin(&d, &p, &c);
    assert_null(op->check(&d, &p, &c));
    assert_int_equal(c.v[CLA_FUSED_VARIANT], CLA_FUSED_TILED);
    assert_int_equal(c.v[CLA_FUSED_LOCAL], 1);
    assert_false(cla_tune_class_parse("prefill:d64", true, (cla_tune_class[1]){0}, why, sizeof why));
    assert_false(cla_tune_class_parse("prefill:d64:L64:f8", true, (cla_tune_class[1]){0}, why, sizeof why));
}

/* ---- the additive (seq2seq) attention kernel: a second operation in the same database ---- */

static char *s2s_entry_json(const char *hash, const char *cls, const char *params) {
    char *s = malloc(1024);
    snprintf(s, 1024, "{\"op\":\"seq2seq_additive\",\"source_hash\":\"%s\",\"class\":%s,\"params\":%s,\"ms\":2}",
             hash, cls, params);
    return s;
}

static cla_tune_problem s2s_problem(const char *shape) {
    const cla_tune_op *op = NULL;
    cla_tune_class c;
    char why[256];
    if (!cla_tune_shape_parse(shape, &op, &c, why, sizeof why)) fail_msg("%s: %s", shape, why);
    assert_ptr_equal(op, &cla_tune_op_seq2seq);
    return cla_tune_op_class_problem(op, &c);
}

/* The flash kernel's default rows per work-item follow the GPU class's register budget (flash_private_budget in
 * tuning.c): 2 on NVIDIA, AMD, Apple and unknown vendors at head dims 64 and 128; Intel and Adreno 1 at head dim
 * 128; Mali 1 at both. A shape given by an override keeps its rows wherever the check allows them. */
static void gpu_class_defaults(void **state) {
    (void)state;
    const cla_tune_op *op = &cla_tune_op_sdpa_fused;
    static const struct {
        const char *vendor;
        int rows64, rows128;
    } classes[] = {
        {"NVIDIA Corporation", 2, 2},
        {"Advanced Micro Devices, Inc.", 2, 2},
        {"Apple", 2, 2},
        {"Intel(R) Corporation", 2, 1},
        {"QUALCOMM", 2, 1},
        {"ARM", 1, 1},
        {"Some Vendor", 2, 2},
        /* A word inside another is not the vendor. */
        {"Warmth Graphics", 2, 2},
    };
    for (size_t i = 0; i < sizeof classes / sizeof classes[0]; ++i) {
        clattn_device_info d = fake_cpu();
        d.type = CLATTN_DEVICE_TYPE_GPU;
        d.compiler_available = 1;
        d.max_work_group_size = d.max_work_item_sizes[0] = 1024;
        d.local_mem_bytes = 65536;
        snprintf(d.vendor, sizeof d.vendor, "%s", classes[i].vendor);
        const char *const cls[] = {"prefill:d64:L512", "prefill:d128:L512"};
        const int want[] = {classes[i].rows64, classes[i].rows128};
        for (int k = 0; k < 2; ++k) {
            cla_tune_problem p = problem(cls[k]);
            cla_tune_config c;
            op->builtin(&d, &p, &c);
            assert_int_equal(c.v[CLA_FUSED_VARIANT], CLA_FUSED_FLASH);
            if (c.v[CLA_FUSED_ROWS] != want[k])
                fail_msg("%s, %s: rows %d, expected %d", classes[i].vendor, cls[k], c.v[CLA_FUSED_ROWS], want[k]);
            assert_null(op->check(&d, &p, &c));
            /* rows=2 given explicitly stays (the check allows it on every class). */
            cla_tune_config given;
            for (int v = 0; v < CLA_TUNE_MAX_PARAMS; ++v) given.v[v] = -1;
            given.v[CLA_FUSED_VARIANT] = CLA_FUSED_FLASH;
            given.v[CLA_FUSED_ROWS] = 2;
            cla_sdpa_fused_complete(&d, &p, &given);
            assert_int_equal(given.v[CLA_FUSED_ROWS], 2);
            assert_null(op->check(&d, &p, &given));
        }
    }
}

static void s2s_choose(const cla_tuning_db *db, const char *hash, const char *shape, cla_tune_choice *ch,
                       char *params, size_t size) {
    clattn_device_info d = fake_cpu();
    cla_tune_problem p = s2s_problem(shape);
    cla_tuning_match(NULL, db, hash, &d, &cla_tune_op_seq2seq, &p, ch);
    cla_tune_config_format(&cla_tune_op_seq2seq, &ch->config, params, size);
}

static void seq2seq_shapes_and_defaults(void **state) {
    (void)state;
    const cla_tune_op *op = NULL;
    cla_tune_class c;
    char why[256], text[CLA_TUNE_CLASS_TEXT];
    assert_ptr_equal(cla_tune_op_find("seq2seq_additive"), &cla_tune_op_seq2seq);
    /* The prefixed form: prefill unless it says decode, the value width that of attention unless given. */
    assert_true(cla_tune_shape_parse("additive:a256:L512", &op, &c, why, sizeof why));
    assert_ptr_equal(op, &cla_tune_op_seq2seq);
    cla_tune_op_class_format(op, &c, text, sizeof text);
    assert_string_equal(text, "additive:prefill:a256:v256:L512:f32");
    assert_true(cla_tune_shape_parse("additive:decode:a128:v64:L1500:f16:bool", &op, &c, why, sizeof why));
    cla_tune_op_class_format(op, &c, text, sizeof text);
    assert_string_equal(text, "additive:decode:a128:v64:L2048:f16:bool");
    cla_tune_problem p = cla_tune_op_class_problem(op, &c);
    assert_int_equal(p.head_dim, 128);
    assert_int_equal(p.v_head_dim, 64);
    assert_int_equal(p.q_len, 1);
    assert_int_equal(p.kv_len, 2048);
    /* The round trip through the text the worker is given. */
    cla_tune_class back;
    assert_true(cla_tune_shape_parse(text, &op, &back, why, sizeof why));
    assert_memory_equal(&back, &c, sizeof c);
    /* "additive" first is still the mask of an attention class when the rest is one. */
    assert_true(cla_tune_shape_parse("additive:prefill:d64:L512", &op, &c, why, sizeof why));
    assert_ptr_equal(op, &cla_tune_op_sdpa_fused);
    assert_int_equal(c.mask_kind, 1);
    assert_true(cla_tune_shape_parse("prefill:d64:L512", &op, &c, why, sizeof why));
    assert_ptr_equal(op, &cla_tune_op_sdpa_fused);
    assert_int_equal(c.v_dim, -1);
    /* No causal flag, no head dim, and a width is needed. */
    assert_false(cla_tune_shape_parse("additive:a64:L512:causal", &op, &c, why, sizeof why));
    assert_false(cla_tune_shape_parse("additive:L512", &op, &c, why, sizeof why));
    assert_non_null(strstr(why, "aN"));
    /* The built-in defaults are the kernel's from before the tuner: CPU one work-item groups, 4 rows (1 for a
     * decoder step), 32-key tiles, float8 scores; GPU groups of 64, 64-key tiles, float4. */
    clattn_device_info d = fake_cpu();
    cla_tune_config cfg;
    p = s2s_problem("additive:a256:L512");
    cla_tune_op_seq2seq.builtin(&d, &p, &cfg);
    cla_tune_config_format(&cla_tune_op_seq2seq, &cfg, text, sizeof text);
    assert_string_equal(text, "wg=1,block_n=32,rows=4,vec=8");
    assert_null(cla_tune_op_seq2seq.check(&d, &p, &cfg));
    p = s2s_problem("additive:decode:a256:L512");
    cla_tune_op_seq2seq.builtin(&d, &p, &cfg);
    assert_int_equal(cfg.v[CLA_S2S_ROWS], 1);
    d.type = CLATTN_DEVICE_TYPE_GPU;
    d.max_work_group_size = d.max_work_item_sizes[0] = 256;
    cla_tune_op_seq2seq.builtin(&d, &p, &cfg);
    cla_tune_config_format(&cla_tune_op_seq2seq, &cfg, text, sizeof text);
    assert_string_equal(text, "wg=64,block_n=64,rows=1,vec=4");
    /* Small local memory shrinks rows, then tiles; the check refuses what does not fit. */
    d.local_mem_bytes = 4096;
    p = s2s_problem("additive:a256:L512");
    cla_tune_op_seq2seq.builtin(&d, &p, &cfg);
    assert_true(cla_seq2seq_local_bytes(&p, &cfg) <= 4096 - 1024);
    assert_null(cla_tune_op_seq2seq.check(&d, &p, &cfg));
    assert_int_equal(cfg.v[CLA_S2S_ROWS], 1);
    cfg.v[CLA_S2S_ROWS] = 8;
    assert_non_null(cla_tune_op_seq2seq.check(&d, &p, &cfg));
    /* A width the device cannot hold at all: the defaults shrink as far as they go, and the check says no. */
    p = s2s_problem("additive:a1024:L512");
    cla_tune_op_seq2seq.builtin(&d, &p, &cfg);
    assert_non_null(cla_tune_op_seq2seq.check(&d, &p, &cfg));
    /* The tuner's space on the CPU: every point it keeps passes the kernel's own limits. */
    d = fake_cpu();
    p = s2s_problem("additive:decode:a256:L2048");
    size_t valid = 0;
    for (size_t i = 0; i < cla_tune_space_size(&cla_tune_op_seq2seq); ++i) {
        cla_tune_space_point(&cla_tune_op_seq2seq, i, &cfg);
        if (cla_tune_op_seq2seq.check(&d, &p, &cfg)) continue;
        ++valid;
        assert_int_equal(cfg.v[CLA_S2S_ROWS], 1); /* one query row: more rows per group are copies */
    }
    assert_true(valid > 50);
}

static void seq2seq_matcher_fallbacks(void **state) {
    (void)state;
    const char *a256_512 = "{\"phase\":\"prefill\",\"head_dim\":256,\"v_dim\":256,\"seq\":512,\"dtype\":\"f32\","
                           "\"causal\":false,\"mask\":\"none\"}";
    char *e1 = s2s_entry_json(hash_a, a256_512, "{\"wg\":4,\"block_n\":64,\"rows\":8,\"vec\":4}");
    char *e2 = s2s_entry_json(hash_a, "{\"phase\":\"prefill\"}", "{\"wg\":2,\"block_n\":16,\"rows\":2,\"vec\":1}");
    char *e3 = s2s_entry_json(hash_a, "{\"phase\":\"decode\"}", "{\"wg\":8192,\"rows\":1}"); /* too large */
    /* An attention entry of the same class fields: another operation's, never used for this one. */
    char *e4 = entry_json(hash_a, "{\"phase\":\"decode\"}", "{\"variant\":\"cpu\",\"rows\":1}");
    cla_tuning_db db;
    char why[256] = "";
    if (!parse_entries(&db, e1, e2, e3, e4, why, sizeof why)) fail_msg("%s", why);
    static const match_case cases[] = {
        MATCH_PARAMS(hash_a, "additive:a256:L512", CLATTN_TUNING_EXACT, "wg=4,block_n=64,rows=8,vec=4"),
        /* Another length: the nearest bucket of the same widths. */
        MATCH_PARAMS(hash_a, "additive:a256:L4096", CLATTN_TUNING_NEAREST, "wg=4,block_n=64,rows=8,vec=4"),
        /* Another value width is another class: the phase's device default. */
        MATCH_PARAMS(hash_a, "additive:a256:v128:L512", CLATTN_TUNING_DEVICE_DEFAULT,
                     "wg=2,block_n=16,rows=2,vec=1"),
        /* Decode: its default does not fit the device, so the built-in default. */
        MATCH_PARAMS(hash_a, "additive:decode:a256:L512", CLATTN_TUNING_BUILTIN, "wg=1,block_n=32,rows=1,vec=8"),
        /* A stale source hash: built-in. */
        MATCH_PARAMS(hash_b, "additive:a256:L512", CLATTN_TUNING_BUILTIN, "wg=1,block_n=32,rows=4,vec=8"),
    };
    expect_matches(&db, s2s_choose, cases, sizeof cases / sizeof cases[0]);
    /* And the attention kernel does not see the seq2seq entries. */
    static const match_case attention[] = {MATCH_SOURCE(hash_a, "prefill:d256:L512", CLATTN_TUNING_BUILTIN)};
    expect_matches(&db, choose, attention, 1);
    /* The writer keeps the value width. */
    char *text = cla_tuning_db_to_json(&db);
    assert_non_null(strstr(text, "\"v_dim\""));
    cla_tuning_db back;
    memset(&back, 0, sizeof back);
    assert_true(cla_tuning_db_parse(text, strlen(text), &back, why, sizeof why));
    assert_memory_equal(&back.entries[0].cls, &db.entries[0].cls, sizeof(cla_tune_class));
    free(text);
    cla_tuning_db_clear(&back);
    cla_tuning_db_clear(&db);
}

/* ---- device tests: a context reading databases, and the tuner itself ---- */

static char basedir[256]; /* scratch */
static char tmpdir[300];  /* the tuning directory inside it, which the tuner creates */

static clattn_tuning_choice lookup(clattn_context *ctx, const char *cls) {
    cla_tune_problem p = problem(cls);
    clattn_tuning_query q;
    clattn_tuning_query_init(&q);
    q.head_dim = p.head_dim;
    q.q_len = p.q_len;
    q.kv_len = p.kv_len;
    q.causal = p.causal ? CLATTN_CAUSAL_BOTTOM_RIGHT : CLATTN_CAUSAL_NONE;
    clattn_tuning_choice ch;
    assert_int_equal(clattn_tuning_lookup(ctx, &q, &ch), CLATTN_SUCCESS);
    return ch;
}

static char *db_file(clattn_context *ctx) {
    clattn_device_info info;
    assert_int_equal(clattn_context_device_info(ctx, &info), CLATTN_SUCCESS);
    return cla_tuning_file(tmpdir, &info);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void context_ignores_bad_databases(void **state) {
    (void)state;
    assert_true(cla_tuning_make_dir(tmpdir));
    clattn_context *ctx = test_logged_context();
    char *path = db_file(ctx);
    clattn_device_info info;
    clattn_context_device_info(ctx, &info);
    char hash[33];
    assert_true(cla_tuning_source_hash(ctx, &cla_tune_op_sdpa_fused, hash));
    clattn_context_free(ctx);
    char text[4096];

    /* Malformed: a clear message, built-in defaults. */
    write_text(path, "{\"format\":1,\"platform\":");
    ctx = test_logged_context();
    assert_non_null(strstr(test_log_messages, "malformed"));
    assert_int_equal(lookup(ctx, "prefill:d64:L256").source, CLATTN_TUNING_BUILTIN);
    clattn_context_free(ctx);

    /* Another device's file under this device's name. */
    snprintf(text, sizeof text,
             "{\"format\":1,\"platform\":\"%s\",\"device\":\"some other device\",\"driver\":\"%s\",\"entries\":["
             "{\"op\":\"sdpa_fused\",\"source_hash\":\"%s\",\"class\":{},\"params\":{\"variant\":\"cpu\","
             "\"rows\":8,\"block_n\":16}}]}",
             info.platform_name, info.driver_version, hash);
    write_text(path, text);
    ctx = test_logged_context();
    assert_non_null(strstr(test_log_messages, "not this one"));
    assert_int_equal(lookup(ctx, "prefill:d64:L256").source, CLATTN_TUNING_BUILTIN);
    clattn_context_free(ctx);

    /* This device, a stale source hash: ignored with a message. */
    snprintf(text, sizeof text,
             "{\"format\":1,\"platform\":\"%s\",\"device\":\"%s\",\"driver\":\"%s\",\"entries\":["
             "{\"op\":\"sdpa_fused\",\"source_hash\":\"00000000000000000000000000000000\",\"class\":{},"
             "\"params\":{\"variant\":\"tiled\",\"rows\":2,\"block_n\":16,\"wg\":4,\"local\":0}}]}",
             info.platform_name, info.name, info.driver_version);
    write_text(path, text);
    ctx = test_logged_context();
    assert_non_null(strstr(test_log_messages, "another version of its kernels"));
    assert_int_equal(lookup(ctx, "prefill:d64:L256").source, CLATTN_TUNING_BUILTIN);
    clattn_context_free(ctx);

    /* The current hash: used, and the fused path runs with it (tiled kernel on this device). */
    char *at = strstr(text, "00000000000000000000000000000000");
    memcpy(at, hash, 32);
    write_text(path, text);
    ctx = test_logged_context();
    clattn_tuning_choice ch = lookup(ctx, "prefill:d64:L256");
    assert_int_equal(ch.source, CLATTN_TUNING_DEVICE_DEFAULT);
    assert_string_equal(ch.params, "variant=tiled,rows=2,block_n=16,wg=4,local=0,splits=0,gqa_pack=0");
    assert_string_equal(ch.database, path);
    /* The context's override (CLATTN_FUSED_PARAMS at creation) still overrides it. */
    assert_int_equal(clattn_context_set_kernel_params(ctx, "sdpa_fused", "rows=16"), CLATTN_SUCCESS);
    ch = lookup(ctx, "prefill:d64:L256");
    assert_int_equal(clattn_context_set_kernel_params(ctx, "sdpa_fused", NULL), CLATTN_SUCCESS);
    assert_int_equal(ch.source, CLATTN_TUNING_OVERRIDE);
    clattn_context_free(ctx);
    /* So does CLATTN_FUSED_PARAMS, read when a context is created. */
    setenv("CLATTN_FUSED_PARAMS", "rows=16", 1);
    ctx = test_logged_context();
    unsetenv("CLATTN_FUSED_PARAMS");
    ch = lookup(ctx, "prefill:d64:L256");
    assert_int_equal(ch.source, CLATTN_TUNING_OVERRIDE);
    clattn_context_free(ctx);
    /* A malformed one refuses the context, naming the variable: a typo must not test the defaults. */
    setenv("CLATTN_FUSED_PARAMS", "rows=16,bogus=1", 1);
    char msg[512] = "";
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.error_message = msg;
    o.error_message_size = sizeof msg;
    ctx = NULL;
    assert_int_equal(clattn_context_create_with_options(&o, &ctx), CLATTN_ERROR_INVALID_ARGUMENT);
    unsetenv("CLATTN_FUSED_PARAMS");
    assert_null(ctx);
    /* No context to hold the error: the options' buffer gets it, led by the creating call as the idiom leads. */
    const char *lead = "clattn_context_create_with_options: CLATTN_FUSED_PARAMS: ";
    if (strncmp(msg, lead, strlen(lead)) != 0) fail_msg("%s", msg);
    assert_non_null(strstr(msg, "bogus"));
    remove(path);
    free(path);
}

/* Runs the clattn program with `args`; returns its exit status, its stdout in `out`. */
static int run_cli(const char *args, char *out, size_t size) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s 2>%s/stderr.txt", CLATTN_CLI, args, basedir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The results log of this device: the lines, and how many have `needle`. */
static size_t log_count(clattn_context *ctx, const char *needle) {
    char *path = db_file(ctx);
    char *log = malloc(strlen(path) + 16);
    strcpy(log, path);
    strcpy(log + strlen(log) - 5, ".log.jsonl");
    FILE *f = fopen(log, "r");
    size_t n = 0;
    char line[4096];
    while (f && fgets(line, sizeof line, f)) n += !needle || strstr(line, needle) != NULL;
    if (f) fclose(f);
    free(log);
    free(path);
    return n;
}

static void clear_tuning_dir(clattn_context *ctx) {
    char *path = db_file(ctx);
    remove(path);
    char *log = malloc(strlen(path) + 16);
    strcpy(log, path);
    strcpy(log + strlen(log) - 5, ".log.jsonl");
    remove(log);
    free(log);
    free(path);
}

/* The small space every tuner test searches: the CPU kernel, two row counts and two tile widths (the built-in
 * default rows=24, block_n=48 among them), on a short prefill. */
#define SPACE    "--shapes prefill:d64:L64 --space variant=cpu,rows=8:24,block_n=32:48 --repeat 1 --warmup 0"
#define BROKEN   "variant=cpu,rows=8,block_n=32,wg=1,local=0,splits=0,gqa_pack=0"
#define WRONG    "variant=cpu,rows=8,block_n=48,wg=1,local=0,splits=0,gqa_pack=0"
#define FASTEST  "variant=cpu,rows=24,block_n=32,wg=1,local=0,splits=0,gqa_pack=0"
#define BUILT_IN "variant=cpu,rows=24,block_n=48,wg=1,local=0,splits=0,gqa_pack=0"

static void tune_result_is_picked_up(void **state) {
    (void)state;
    clattn_context *ctx = test_logged_context();
    clear_tuning_dir(ctx);
    assert_int_equal(lookup(ctx, "prefill:d64:L64").source, CLATTN_TUNING_BUILTIN);
    clattn_context_free(ctx);
    char out[16384];
    int rc = run_cli("tune " SPACE " --strategy random --budget 3 --quiet", out, sizeof out);
    if (rc != 0) fail_msg("clattn tune exited %d:\n%s", rc, out);
    assert_non_null(strstr(out, "prefill:d64:L64:f32"));
    ctx = test_logged_context();
    assert_int_equal(log_count(ctx, NULL), 3);
    clattn_tuning_choice ch = lookup(ctx, "prefill:d64:L64");
    assert_int_equal(ch.source, CLATTN_TUNING_EXACT);
    assert_true(ch.tuned_ms > 0);
    assert_non_null(strstr(out, ch.params)); /* the table's best is what the context uses */
    /* The neighbouring bucket falls back to it; --show says so. */
    assert_int_equal(lookup(ctx, "prefill:d64:L128").source, CLATTN_TUNING_NEAREST);
    clattn_context_free(ctx);
    rc = run_cli("tune --show --shapes prefill:d64:L64,prefill:d64:L128,decode:d64:L64", out, sizeof out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "exact"));
    assert_non_null(strstr(out, "nearest"));
    assert_non_null(strstr(out, "builtin"));
}

static void failing_candidates_are_recorded_and_skipped(void **state) {
    (void)state;
    clattn_context *ctx = test_logged_context();
    clear_tuning_dir(ctx);
    char out[16384];
    setenv("CLATTN_TUNE_TEST_FAIL", "build@" BROKEN ";wrong@" WRONG ";crash@" FASTEST, 1);
    int rc = run_cli("tune " SPACE " --strategy exhaustive --quiet", out, sizeof out);
    unsetenv("CLATTN_TUNE_TEST_FAIL");
    if (rc != 0) fail_msg("clattn tune exited %d:\n%s", rc, out);
    assert_int_equal(log_count(ctx, NULL), 4);
    assert_int_equal(log_count(ctx, "\"status\":\"build\""), 1);
    assert_int_equal(log_count(ctx, "\"status\":\"wrong\""), 1);
    assert_int_equal(log_count(ctx, "\"status\":\"crash\""), 1);
    assert_int_equal(log_count(ctx, "\"status\":\"ok\""), 1);
    clattn_context_free(ctx);
    /* Only the built-in default worked, so it is the one stored. */
    ctx = test_logged_context();
    clattn_tuning_choice ch = lookup(ctx, "prefill:d64:L64");
    assert_int_equal(ch.source, CLATTN_TUNING_EXACT);
    assert_string_equal(ch.params, BUILT_IN);
    clattn_context_free(ctx);
}

static void hanging_candidate_times_out(void **state) {
    (void)state;
    clattn_context *ctx = test_logged_context();
    clear_tuning_dir(ctx);
    char out[16384];
    setenv("CLATTN_TUNE_TEST_FAIL", "hang@" BROKEN, 1);
    int rc = run_cli("tune --shapes prefill:d64:L64 --space variant=cpu,rows=8,block_n=32 --repeat 1 --warmup 0 "
                     "--candidate-timeout 3 --quiet",
                     out, sizeof out);
    unsetenv("CLATTN_TUNE_TEST_FAIL");
    if (rc != 0) fail_msg("clattn tune exited %d:\n%s", rc, out);
    assert_int_equal(log_count(ctx, "\"status\":\"timeout\""), 1);
    assert_int_equal(log_count(ctx, "\"status\":\"ok\""), 1);
    clattn_context_free(ctx);
}

static void interrupted_run_resumes(void **state) {
    (void)state;
    clattn_context *ctx = test_logged_context();
    clear_tuning_dir(ctx);
    char out[16384];
    setenv("CLATTN_TUNE_TEST_STOP_AFTER", "2", 1);
    int rc = run_cli("tune " SPACE " --strategy exhaustive --quiet", out, sizeof out);
    unsetenv("CLATTN_TUNE_TEST_STOP_AFTER");
    assert_int_equal(rc, 3);
    assert_int_equal(log_count(ctx, NULL), 2);
    char *path = db_file(ctx);
    assert_int_not_equal(access(path, F_OK), 0); /* interrupted before anything was stored */
    rc = run_cli("tune " SPACE " --strategy exhaustive --quiet", out, sizeof out);
    if (rc != 0) fail_msg("clattn tune exited %d:\n%s", rc, out);
    assert_non_null(strstr(out, "2 new evaluations"));
    assert_int_equal(log_count(ctx, NULL), 4); /* the first two were not run again */
    assert_int_equal(access(path, F_OK), 0);
    free(path);
    clattn_context_free(ctx);
    /* The directory is private. */
    struct stat st;
    assert_int_equal(stat(tmpdir, &st), 0);
    assert_int_equal(st.st_mode & 077, 0);
}

/* A tiny real tune of an additive class: one candidate gives a wrong answer and is recorded and skipped, the best
 * of the others is what a new context's lookup (the one clattn_seq2seq_attention makes) then uses, and a call runs
 * with it. */
#define S2S_SHAPE "additive:a32:v16:L64"
#define S2S_WRONG "wg=1,block_n=16,rows=4,vec=8"

static void seq2seq_tune_is_picked_up(void **state) {
    (void)state;
    clattn_context *ctx = test_logged_context();
    clear_tuning_dir(ctx);
    clattn_tuning_query q;
    clattn_tuning_query_init(&q);
    q.operation = "seq2seq_additive";
    q.head_dim = 32;
    q.v_head_dim = 16;
    q.q_len = q.kv_len = 64;
    clattn_tuning_choice ch;
    assert_int_equal(clattn_tuning_lookup(ctx, &q, &ch), CLATTN_SUCCESS);
    assert_int_equal(ch.source, CLATTN_TUNING_BUILTIN);
    clattn_context_free(ctx);
    char out[16384];
    setenv("CLATTN_TUNE_TEST_FAIL", "wrong@" S2S_WRONG, 1);
    int rc = run_cli("tune --shapes " S2S_SHAPE " --space wg=1:2,block_n=16:32,rows=4,vec=8 --strategy exhaustive "
                     "--repeat 1 --warmup 0 --quiet",
                     out, sizeof out);
    unsetenv("CLATTN_TUNE_TEST_FAIL");
    if (rc != 0) fail_msg("clattn tune exited %d:\n%s", rc, out);
    assert_non_null(strstr(out, "additive:prefill:a32:v16:L64:f32"));
    ctx = test_logged_context();
    assert_int_equal(log_count(ctx, "\"op\":\"seq2seq_additive\""), 4);
    assert_int_equal(log_count(ctx, "\"status\":\"wrong\""), 1);
    assert_int_equal(log_count(ctx, "\"status\":\"ok\""), 3);
    assert_int_equal(clattn_tuning_lookup(ctx, &q, &ch), CLATTN_SUCCESS);
    assert_int_equal(ch.source, CLATTN_TUNING_EXACT);
    assert_string_equal(ch.entry_class, "additive:prefill:a32:v16:L64:f32");
    assert_true(ch.tuned_ms > 0);
    assert_non_null(strstr(out, ch.params)); /* the table's best is what the context uses */
    assert_string_not_equal(ch.params, S2S_WRONG);
    /* Another value width falls back to the phase's device default, which the run also stored. */
    q.v_head_dim = 32;
    assert_int_equal(clattn_tuning_lookup(ctx, &q, &ch), CLATTN_SUCCESS);
    assert_int_equal(ch.source, CLATTN_TUNING_DEVICE_DEFAULT);
    /* The context's override still overrides it. */
    assert_int_equal(clattn_context_set_kernel_params(ctx, "seq2seq_additive", "block_n=8"), CLATTN_SUCCESS);
    assert_int_equal(clattn_tuning_lookup(ctx, &q, &ch), CLATTN_SUCCESS);
    assert_int_equal(ch.source, CLATTN_TUNING_OVERRIDE);
    assert_string_equal(ch.params, "wg=1,block_n=8,rows=4,vec=8");
    clattn_context_free(ctx);
    rc = run_cli("tune --show --shapes " S2S_SHAPE ",additive:decode:a32:L64", out, sizeof out);
    assert_int_equal(rc, 0);
    assert_non_null(strstr(out, "exact"));
    assert_non_null(strstr(out, "builtin"));
}

/* The build options of the fused program one attention call of a class's problem (batch 1, 8 heads, d 64, f32, lq
 * queries over lk keys) builds, with a softcap or without, on dense keys and values or a paged int8 cache (pages of
 * 16), recorded rather than run; malloc'd. */
static char *recorded_options(clattn_context *ctx, size_t lq, size_t lk, bool softcap, bool paged_i8,
                              bool user_mods) {
    enum { H = 8, D = 64, PAGE = 16 };
    const size_t len = lq > lk ? lq : lk, pages = (lk + PAGE - 1) / PAGE;
    cl_mem buf = test_filled_buffer(ctx, H * len * D * sizeof(float), 0);
    cl_mem out = test_filled_buffer(ctx, H * len * D * sizeof(float), 0);
    cl_mem scales = test_filled_buffer(ctx, H * sizeof(float), 0);
    const clattn_tensor q = clattn_tensor_bhld(buf, CLATTN_DTYPE_F32, 1, H, lq, D);
    const clattn_tensor o = clattn_tensor_bhld(out, CLATTN_DTYPE_F32, 1, H, lq, D);
    clattn_tensor kv = clattn_tensor_bhld(buf, CLATTN_DTYPE_F32, 1, H, lk, D);
    clattn_sdpa_desc desc;
    clattn_sdpa_desc_init(&desc);
    desc.softcap = softcap ? 50.0f : 0.0f;
    if (user_mods) { /* which expressions does not matter to the class */
        desc.score_mod = "score * 0.5f";
        desc.mask_mod = "kv_idx != q_idx + 1";
    }
    int32_t table[64], seqlens[1] = {(int32_t)lk};
    assert_true(pages <= 64);
    if (paged_i8) {
        kv = clattn_tensor_bhld(buf, CLATTN_DTYPE_I8, pages, H, PAGE, D);
        for (size_t i = 0; i < pages; ++i) table[i] = (int32_t)i;
        desc.seq_count = 1;
        desc.block_table = table;
        desc.block_table_stride = pages;
        desc.seqlens_k = seqlens;
        desc.k_scale = desc.v_scale = clattn_tensor_bhld(scales, CLATTN_DTYPE_F32, 1, H, 1, 1);
    }
    assert_int_equal(clattn_program_record_begin(ctx), CLATTN_SUCCESS);
    const clattn_status st = clattn_sdpa(ctx, &desc, &q, &kv, &kv, &o, NULL, 0, NULL, NULL);
    if (clattn_program_record_count(ctx) < 1) /* the call ends at its first device operation, not before */
        fail_msg("recorded nothing: %s: %s", clattn_status_string(st), clattn_context_last_error(ctx));
    const char *source = NULL, *options = NULL;
    assert_int_equal(clattn_program_recorded(ctx, 0, &source, &options), CLATTN_SUCCESS);
    char *copy = strdup(options);
    clattn_program_record_end(ctx);
    clReleaseMemObject(buf);
    clReleaseMemObject(out);
    clReleaseMemObject(scales);
    return copy;
}

/* Runs `clattn tune` exhaustively over `space` for the classes `shapes`, once per candidate, with the built-in
 * default `failed` made a wrong answer by the test hook, so that a candidate of the space is what gets stored and
 * its parameters tell which entry a call took; fails the test unless the run succeeds. */
static void tune_without_default(const char *shapes, const char *space, const char *failed, char *out,
                                 size_t size) {
    char args[512], hook[256];
    snprintf(args, sizeof args, "tune --shapes %s --space %s --strategy exhaustive --repeat 1 --warmup 0 --quiet",
             shapes, space);
    snprintf(hook, sizeof hook, "wrong@%s", failed);
    setenv("CLATTN_TUNE_TEST_FAIL", hook, 1);
    const int rc = run_cli(args, out, size);
    unsetenv("CLATTN_TUNE_TEST_FAIL");
    if (rc != 0) fail_msg("clattn tune exited %d:\n%s", rc, out);
}

/* A class with a score modifier is timed with the modifier compiled in (the worker's call builds it: --programs
 * shows what the library builds for it), and the entry it stores, with the phase default it also stores, serves
 * calls with that modifier and not plain calls, which keep the built-in default. The one candidate is not the
 * built-in default (which the test hook fails), so the parameters tell which entry a call took. */
static void modifier_class_is_tuned_with_it(void **state) {
    (void)state;
    clattn_context *ctx = test_logged_context();
    clear_tuning_dir(ctx);
    clattn_context_free(ctx);
    char out[16384];
    assert_int_equal(run_cli("tune --worker --class prefill:d64:L64:softcap:sinks --programs", out, sizeof out), 0);
    if (!strstr(out, "program sdpa_fused") || !strstr(out, "-DHAS_SOFTCAP=1") || !strstr(out, "-DHAS_SINKS=1") ||
        strstr(out, "-DHAS_ALIBI"))
        fail_msg("the worker's call of a softcap and sinks class builds:\n%s", out);
    assert_int_equal(run_cli("tune --worker --class decode:d64:L64:alibi --programs", out, sizeof out), 0);
    if (!strstr(out, "-DHAS_ALIBI=1") || strstr(out, "-DHAS_SOFTCAP")) fail_msg("an ALiBi class builds:\n%s", out);
    assert_int_equal(run_cli("tune --worker --class prefill:d64:L64 --programs", out, sizeof out), 0);
    if (!strstr(out, "program ") || strstr(out, "HAS_SOFTCAP") || strstr(out, "HAS_SINKS"))
        fail_msg("a plain class builds:\n%s", out);

    /* The built-in default fails by the test hook, so that the candidate is what gets stored. */
    tune_without_default("prefill:d64:L64:softcap", "variant=cpu,rows=8,block_n=32", BUILT_IN, out, sizeof out);
    ctx = test_logged_context();
    assert_int_equal(log_count(ctx, "\"status\":\"ok\""), 1); /* the candidate, verified with the softcap */
    char *with = recorded_options(ctx, 64, 64, true, false, false);
    char *plain = recorded_options(ctx, 64, 64, false, false, false);
    char *with_far = recorded_options(ctx, 512, 512, true, false, false); /* another bucket: the phase default */
    if (!strstr(with, "-DHAS_SOFTCAP=1 -DROWS=8 -DBLOCK_N=32 ") || !strstr(with_far, "-DROWS=8 -DBLOCK_N=32 "))
        fail_msg("softcap calls do not use the softcap class's entry: %s / %s", with, with_far);
    if (strstr(plain, "-DROWS=8 -DBLOCK_N=32 ")) fail_msg("a plain call uses the softcap class's entry: %s", plain);
    free(with);
    free(plain);
    free(with_far);
    clattn_context_free(ctx);
}

/* The built-in default of the decode classes below, which the test hook fails (as a wrong answer) so that a
 * candidate of the narrowed space is stored and its parameters tell which entry a call took. */
#define DECODE_BUILT_IN "variant=cpu,rows=1,block_n=48,wg=1,local=0,splits=0,gqa_pack=1"

/* The same for a serving format: a paged int8 decode class is timed on a paged int8 cache (the worker's call builds
 * that program, and verifies against the reference of the values the codes stand for), and its entry serves paged
 * int8 calls, not dense ones. */
static void serving_class_is_tuned_with_it(void **state) {
    (void)state;
    clattn_context *ctx = test_logged_context();
    clear_tuning_dir(ctx);
    clattn_context_free(ctx);
    char out[16384];
    static const char *const classes[] = {"decode:d64:L64:paged:i8", "prefill:d64:L64:packed:fp8"};
    static const char *const wanted[][2] = {{"-DKV_LAYOUT=2 -DPAGE_SIZE=16", "-DK_DTYPE=4 -DV_DTYPE=4"},
                                            {"-DVARLEN_Q=1 -DKV_LAYOUT=1", "-DK_DTYPE=5 -DV_DTYPE=5"}};
    for (size_t i = 0; i < CLA_ARRAY_SIZE(classes); ++i) {
        char args[256];
        snprintf(args, sizeof args, "tune --worker --class %s --programs", classes[i]);
        assert_int_equal(run_cli(args, out, sizeof out), 0);
        if (!strstr(out, wanted[i][0]) || !strstr(out, wanted[i][1]))
            fail_msg("the worker's call of %s builds:\n%s", classes[i], out);
    }
    tune_without_default("decode:d64:L64:paged:i8,prefill:d64:L64:packed:fp8", "variant=cpu,rows=1,block_n=32",
                         DECODE_BUILT_IN, out, sizeof out);
    ctx = test_logged_context();
    assert_int_equal(log_count(ctx, "\"status\":\"wrong\""), 1); /* the hook's alone: the others verified */
    char *paged = recorded_options(ctx, 1, 64, false, true, false);
    char *dense = recorded_options(ctx, 1, 64, false, false, false);
    if (!strstr(paged, "-DK_DTYPE=4") || !strstr(paged, "-DBLOCK_N=32 "))
        fail_msg("a paged int8 decode call does not use its class's entry: %s", paged);
    if (strstr(dense, "-DBLOCK_N=32 "))
        fail_msg("a dense decode call uses the paged int8 class's entry: %s", dense);
    free(paged);
    free(dense);
    clattn_context_free(ctx);
}

/* The same for the caller's mods: a class with a score_mod and a mask_mod is timed with representative ones (which
 * the worker checks against the reference of the built-ins they equal), and its entry serves calls with mods, not
 * plain ones. */
static void user_mods_class_is_tuned_with_them(void **state) {
    (void)state;
    clattn_context *ctx = test_logged_context();
    clear_tuning_dir(ctx);
    clattn_context_free(ctx);
    char out[16384];
    assert_int_equal(run_cli("tune --worker --class decode:d64:L64:score_mod:mask_mod --programs", out, sizeof out),
                     0);
    if (!strstr(out, "+HAS_SCORE_FN +HAS_MASK_FN")) fail_msg("the worker's call of a mods class builds:\n%s", out);
    tune_without_default("decode:d64:L64:score_mod:mask_mod", "variant=cpu,rows=1,block_n=32", DECODE_BUILT_IN, out,
                         sizeof out);
    ctx = test_logged_context();
    assert_int_equal(log_count(ctx, "\"status\":\"wrong\""), 1);
    assert_true(log_count(ctx, "\"status\":\"ok\"") >= 2);
    char *with = recorded_options(ctx, 1, 64, false, false, true);
    char *plain = recorded_options(ctx, 1, 64, false, false, false);
    if (!strstr(with, "-DBLOCK_N=32 ")) fail_msg("a call with mods does not use its class's entry: %s", with);
    if (strstr(plain, "-DBLOCK_N=32 ")) fail_msg("a plain call uses the mods class's entry: %s", plain);
    free(with);
    free(plain);
    clattn_context_free(ctx);
}

/* Classes that no call looks up are usage errors that evaluate nothing: fused heads past 256 (they run unfused)
 * and additive values past the slice width (they run as slices, looked up by the slice's width). */
static void classes_no_call_uses_are_refused(void **state) {
    (void)state;
    clattn_context *ctx = test_logged_context();
    clear_tuning_dir(ctx);
    char out[4096];
    assert_int_equal(run_cli("tune --shapes prefill:d640:L64 --quiet", out, sizeof out), 2);
    assert_int_equal(run_cli("tune --shapes prefill:d64:v600:L64 --quiet", out, sizeof out), 2);
    assert_int_equal(run_cli("tune --shapes additive:a32:v2048:L64 --quiet", out, sizeof out), 2);
    assert_int_equal(log_count(ctx, NULL), 0);
    clattn_context_free(ctx);
}

/* The names of a kernel's arguments in kernels_cl, in order: the last identifier of each comma-separated piece of
 * its parameter list, read through a macro that holds the whole list (SDPA_FUSED_ARGS). Returns the count. */
static int kernel_arg_names(const char *source, const char *kernel, char names[][32], int most) {
    char call[64];
    snprintf(call, sizeof call, "void\n%s(", kernel);
    const char *at = strstr(source, call);
    if (!at) {
        snprintf(call, sizeof call, "void %s(", kernel);
        at = strstr(source, call);
    }
    assert_non_null(at);
    const char *list = at + strlen(call), *end = list;
    for (int open = 1; *end && (*end != ')' || --open > 0); ++end)
        if (*end == '(') ++open;
    assert_int_equal(*end, ')');
    char macro[64];
    if (sscanf(list, "%63[A-Z_]", macro) == 1 && list + strlen(macro) == end) {
        char define[80];
        snprintf(define, sizeof define, "#define %s", macro);
        list = strstr(source, define);
        assert_non_null(list);
        list += strlen(define);
        end = list;
        while (*end && !(*end == '\n' && end[-1] != '\\')) ++end;
    }
    int n = 0, depth = 0;
    const char *last = NULL;
    size_t last_len = 0;
    for (const char *c = list; c <= end; ++c) {
        if (*c == '(') ++depth;
        if (*c == ')' && c != end) --depth;
        if ((*c == ',' && depth == 0) || c == end) {
            assert_true(n < most && last && last_len < 32);
            memcpy(names[n], last, last_len);
            names[n++][last_len] = '\0';
            last = NULL;
        } else if (isalpha((unsigned char)*c) || *c == '_') {
            const char *w = c;
            while (isalnum((unsigned char)*c) || *c == '_') ++c;
            last = w;
            last_len = (size_t)(c - w);
            --c;
        }
    }
    return n;
}

/* Kernel `kernel` of kernels_cl/<source>.cl takes the arguments `expected` names (NULL-terminated), in order. */
static void expect_kernel_args(const char *source, const char *kernel, const char *const *expected) {
    clattn_context ctx; /* only the embedded sources are read */
    memset(&ctx, 0, sizeof ctx);
    char *text = NULL;
    size_t length = 0;
    assert_int_equal(cla_source_load(&ctx, source, &text, &length), CLATTN_SUCCESS);
    char names[48][32]; /* the fused kernels take 35 */
    const int n = kernel_arg_names(text, kernel, names, 48);
    int count = 0;
    while (expected[count]) ++count;
    if (n != count) fail_msg("%s takes %d arguments; its list names %d", kernel, n, count);
    for (int a = 0; a < n; ++a) assert_string_equal(names[a], expected[a]);
    free(text);
}

/* Every kernel of every family takes the arguments its description names, in that order: the host sets them by
 * those names. */
static void descriptions_name_the_kernels_arguments(void **state) {
    (void)state;
    const cla_tune_op *const *ops = cla_tune_ops();
    for (size_t i = 0; ops[i]; ++i) {
        const int variants = ops[i]->params[0].labels ? ops[i]->params[0].label_count : 1;
        for (int v = 0; v < variants; ++v)
            expect_kernel_args(ops[i]->kernels[v].source, ops[i]->kernels[v].kernel, ops[i]->args);
    }
}

/* The kernels outside the families likewise take the arguments of their lists (kernel_args.c), in that order. */
static void kernels_take_their_listed_arguments(void **state) {
    (void)state;
    const cla_kernel_args *const *all = cla_kernel_args_all();
    for (size_t i = 0; all[i]; ++i) expect_kernel_args(all[i]->source, all[i]->declared, all[i]->names);
}

/* The build options a configuration becomes: its variant's parameters, in parameter order. */
static void descriptions_give_build_options(void **state) {
    (void)state;
    const cla_tune_op *op = &cla_tune_op_sdpa_fused;
    cla_tune_config c;
    char why[128], text[128];
    assert_true(cla_tune_config_parse(op, "variant=tiled,rows=4,block_n=16,wg=8,local=1,splits=3,gqa_pack=0", &c,
                                      why, sizeof why));
    cla_tune_defines(op, &c, text, sizeof text);
    assert_string_equal(text, " -DROWS=4 -DBLOCK_N=16 -DWG_SIZE=8 -DUSE_LOCAL=1");
    assert_string_equal(cla_tune_kernel_of(op, &c)->kernel, "sdpa_fused");
    assert_true(cla_tune_config_parse(op, "variant=cpu,rows=24,block_n=48,wg=1,local=0,splits=0,gqa_pack=0", &c,
                                      why, sizeof why));
    cla_tune_defines(op, &c, text, sizeof text);
    assert_string_equal(text, " -DROWS=24 -DBLOCK_N=48 -DGQA_PACK=0");
    assert_string_equal(cla_tune_kernel_of(op, &c)->source, "sdpa_fused_cpu");
    op = &cla_tune_op_seq2seq;
    assert_true(cla_tune_config_parse(op, "wg=64,block_n=32,rows=4,vec=8", &c, why, sizeof why));
    cla_tune_defines(op, &c, text, sizeof text);
    assert_string_equal(text, " -DWG_SIZE=64 -DBLOCK_N=32 -DROWS=4 -DVEC=8");
    /* The values each parameter accepts, as the overrides always took them. */
    assert_false(cla_tune_config_parse(op, "vec=2", &c, why, sizeof why));
    assert_non_null(strstr(why, "1|4|8"));
    assert_false(cla_tune_config_parse(op, "wg=0", &c, why, sizeof why));
    assert_false(cla_tune_config_parse(op, "rows=4097", &c, why, sizeof why));
    op = &cla_tune_op_sdpa_fused;
    assert_false(cla_tune_config_parse(op, "rows=0", &c, why, sizeof why));
    assert_true(cla_tune_config_parse(op, "splits=0,local=0", &c, why, sizeof why));
}

/* The local memory the host budgets for the flash and decode kernels (cla_flash_local_bytes,
 * cla_decode_local_bytes: what decides whether a shape fits a device) against what the device's compiler reports
 * for the built kernel (CL_KERNEL_LOCAL_MEM_SIZE), over shapes that take each branch of the kernels' layouts: split
 * and unsplit scores, Q in registers and in local memory, reductions in the K tile or apart; decode with one or
 * several key slices and row groups. An estimate below the kernel's would let a call fail to launch on a device
 * with little local memory; one far above would refuse shapes that fit. */
typedef struct {
    const char *variant;
    size_t head_dim, v_head_dim, rows, block_n, wg, packed_rows;
} lds_case;

static void local_memory_estimates_match_kernels(void **state) {
    (void)state;
    static const lds_case cases[] = {
        {"flash", 64, 64, 2, 16, 256, 0},   {"flash", 128, 128, 2, 16, 256, 0},  {"flash", 256, 256, 1, 8, 64, 0},
        {"flash", 40, 24, 1, 8, 32, 0},     {"flash", 4, 4, 2, 16, 64, 0},       {"flash", 8, 8, 1, 12, 24, 0},
        {"flash", 160, 96, 1, 16, 128, 0},  {"decode", 64, 64, 1, 64, 64, 1},    {"decode", 64, 64, 16, 64, 64, 16},
        {"decode", 128, 128, 8, 64, 64, 8}, {"decode", 80, 80, 3, 64, 64, 3},    {"decode", 128, 128, 2, 32, 32, 2},
        {"decode", 256, 256, 4, 64, 64, 4}, {"decode", 16, 16, 12, 128, 64, 12},
    };
    clattn_context *ctx = test_context();
    for (size_t i = 0; i < CLA_ARRAY_SIZE(cases); ++i) {
        const lds_case *t = &cases[i];
        const bool decode = strcmp(t->variant, "decode") == 0;
        cla_tune_problem p;
        memset(&p, 0, sizeof p);
        p.head_dim = t->head_dim;
        p.v_head_dim = t->v_head_dim;
        p.q_len = decode ? 1 : 256;
        p.group = decode ? t->packed_rows : 1;
        cla_tune_config c;
        for (int k = 0; k < CLA_TUNE_MAX_PARAMS; ++k) c.v[k] = -1;
        c.v[CLA_FUSED_ROWS] = (int)t->rows;
        c.v[CLA_FUSED_BLOCK_N] = (int)t->block_n;
        c.v[CLA_FUSED_WG] = (int)t->wg;
        const size_t estimate = decode ? cla_decode_local_bytes(&p, &c) : cla_flash_local_bytes(&p, &c);
        char options[512];
        snprintf(
            options, sizeof options,
            "-DHEAD_DIM=%zu -DV_HEAD_DIM=%zu -DQ_DTYPE=0 -DK_DTYPE=0 -DV_DTYPE=0 -DO_DTYPE=0 -DMASK_KIND=0 "
            "-DMASK_DTYPE=0 -DCAUSAL=0 -DHAS_WINDOW=0 -DHAS_KEY_LENGTHS=0 -DHAS_LSE=0 -DUNIT_DSTRIDE=1 -DROWS=%zu "
            "-DBLOCK_N=%zu -DWG_SIZE=%zu -DSPLIT_KV=0 -DPACK_ROWS=1",
            t->head_dim, t->v_head_dim, t->rows, t->block_n, t->wg);
        const char *source = decode ? "sdpa_decode" : "sdpa_flash";
        cl_kernel kernel = NULL;
        assert_int_equal(cla_kernel_get(ctx, source, options, source, &kernel), CLATTN_SUCCESS);
        cl_ulong used = 0;
        assert_int_equal(
            clGetKernelWorkGroupInfo(kernel, ctx->device, CL_KERNEL_LOCAL_MEM_SIZE, sizeof used, &used, NULL),
            CL_SUCCESS);
        printf("%s d%zu/%zu rows %zu block_n %zu wg %zu: kernel %llu B, estimate %zu B\n", t->variant, t->head_dim,
               t->v_head_dim, t->rows, t->block_n, t->wg, (unsigned long long)used, estimate);
        if (used > estimate || estimate - used > 64 + used / 16)
            fail_msg(
                "%s d%zu/%zu rows %zu block_n %zu wg %zu: the kernel takes %llu bytes of local memory, the host "
                "budgets %zu",
                t->variant, t->head_dim, t->v_head_dim, t->rows, t->block_n, t->wg, (unsigned long long)used,
                estimate);
    }
    clattn_context_free(ctx);
}

int main(int argc, char **argv) {
    /* CLATTN_TEST_FILTER (a cmocka pattern) runs some of the tests. */
    if (getenv("CLATTN_TEST_FILTER")) cmocka_set_test_filter(getenv("CLATTN_TEST_FILTER"));
    const struct CMUnitTest unit[] = {
        cmocka_unit_test(matcher_fallbacks),
        cmocka_unit_test(matcher_score_modifiers),
        cmocka_unit_test(matcher_serving_formats),
        cmocka_unit_test(matcher_skips_entries_that_do_not_fit),
        cmocka_unit_test(parser_rejects_malformed_files),
        cmocka_unit_test(parser_initialises_its_output),
        cmocka_unit_test(writer_round_trip),
        cmocka_unit_test(space_and_configs),
        cmocka_unit_test(gpu_class_defaults),
        cmocka_unit_test(seq2seq_shapes_and_defaults),
        cmocka_unit_test(seq2seq_matcher_fallbacks),
        cmocka_unit_test(descriptions_name_the_kernels_arguments),
        cmocka_unit_test(kernels_take_their_listed_arguments),
        cmocka_unit_test(descriptions_give_build_options),
    };
    int failed = cmocka_run_group_tests_name("tuning (unit)", unit, NULL, NULL);
    if (argc > 1 && strcmp(argv[1], "--unit") == 0) return failed;
    /* A fresh private tuning directory (made by the tuner itself) and the fused kernels' defaults. */
    snprintf(basedir, sizeof basedir, "/tmp/clattn-test-tuning-XXXXXX");
    if (!mkdtemp(basedir)) return 1;
    snprintf(tmpdir, sizeof tmpdir, "%s/tuning", basedir);
    setenv("CLATTN_TUNING_DIR", tmpdir, 1);
    unsetenv("CLATTN_FUSED_PARAMS");
    unsetenv("CLATTN_SEQ2SEQ_PARAMS");
    unsetenv("CLATTN_TUNING");
    const struct CMUnitTest device[] = {
        cmocka_unit_test(tune_result_is_picked_up),
        cmocka_unit_test(failing_candidates_are_recorded_and_skipped),
        cmocka_unit_test(hanging_candidate_times_out),
        cmocka_unit_test(interrupted_run_resumes),
        cmocka_unit_test(seq2seq_tune_is_picked_up),
        cmocka_unit_test(modifier_class_is_tuned_with_it),
        cmocka_unit_test(serving_class_is_tuned_with_it),
        cmocka_unit_test(user_mods_class_is_tuned_with_them),
        cmocka_unit_test(classes_no_call_uses_are_refused),
        cmocka_unit_test(context_ignores_bad_databases),
        cmocka_unit_test(local_memory_estimates_match_kernels),
    };
    failed += cmocka_run_group_tests_name("tuning (device)", device, NULL, NULL);
    test_remove_tree(basedir);
    return failed;
}
