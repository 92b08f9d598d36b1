// SPDX-License-Identifier: Apache-2.0
/* The tuning database: one JSON file per device, read when a context is created, matched for every operation that
 * has tuned parameters, written by `clattn tune`. Its bytes are untrusted (a user may edit or truncate the file),
 * so the parser checks every field and rejects the whole file on the first problem: a half-read database could
 * give parameters nobody measured. Format (version 1):
 *
 *   {"format": 1, "platform": "...", "device": "...", "driver": "...",
 *    "entries": [{"op": "sdpa_fused", "source_hash": "<32 hex digits>",
 *                 "class": {"phase": "prefill", "head_dim": 64, "seq": 1024, "dtype": "f32", "causal": false,
 *                           "mask": "none"},
 *                 "params": {"variant": "cpu", "rows": 24, "block_n": 48, ...},
 *                 "ms": 1.23, "default_ms": 1.61}]}
 *
 * A class field left out is a wildcard: an entry whose class has no "seq" is a device default. Classes of the
 * seq2seq_additive kernel also key the value width, "v_dim" (and their "head_dim" is the attention width). */
#define _POSIX_C_SOURCE 200809L
#include "tuning.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ENTRIES 100000
#define MAX_FILE    (64u << 20)
/* The numbers a parameter may hold in a file: the reader takes 0 .. PARAM_MAX, the writer writes no other. */
#define PARAM_MAX (1L << 20)

/* ---- parsing ---- */

static bool copy_string(const cJSON *item, char *out, size_t size) {
    if (!cJSON_IsString(item) || !item->valuestring) return false;
    size_t n = strlen(item->valuestring);
    if (n >= size) return false;
    memcpy(out, item->valuestring, n + 1);
    return true;
}

static bool get_int(const cJSON *item, long lo, long hi, long *out) {
    if (!cJSON_IsNumber(item)) return false;
    double v = item->valuedouble;
    if (!isfinite(v) || v < (double)lo || v > (double)hi || v != floor(v)) return false;
    *out = (long)v;
    return true;
}

static bool is_token(const char *s, size_t max) {
    size_t n = strlen(s);
    if (n == 0 || n > max) return false;
    for (size_t i = 0; i < n; ++i)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_')) return false;
    return true;
}

static int index_of(const char *s, const char *const *names, int count) {
    for (int i = 0; i < count; ++i)
        if (strcmp(s, names[i]) == 0) return i;
    return -1;
}

static const char *const phase_names[] = {"prefill", "decode"};
static const char *const dtype_names[] = {"f32", "f16", "bf16"};
static const char *const mask_names[] = {"none", "additive", "bool"};
static const char *const mods_names[CLATTN_TUNE_MODS_COUNT] = {"softcap", "sinks", "alibi", "score_mod",
                                                               "mask_mod"}; /* bits 1 to 16 of a class's mods */
static const char *const kv_layout_names[] = {"dense", "packed", "paged"};  /* CLATTN_TUNE_KV_* */
static const char *const kv_dtype_names[] = {"i8", "fp8"};                  /* CLATTN_DTYPE_I8 + index */

static const char *parse_class(const cJSON *o, cla_tune_class *c) {
    c->head_dim = c->dtype = c->mask_kind = c->causal = c->phase = c->v_dim = -1;
    c->seq = c->mods = c->kv_layout = c->kv_dtype = -1;
    if (!cJSON_IsObject(o)) return "'class' is not an object";
    const cJSON *it;
    cJSON_ArrayForEach(it, o) {
        const char *k = it->string ? it->string : "";
        long n = 0;
        if (strcmp(k, "phase") == 0) {
            if (!cJSON_IsString(it) || (c->phase = index_of(it->valuestring, phase_names, 2)) < 0)
                return "class 'phase' must be \"prefill\" or \"decode\"";
        } else if (strcmp(k, "head_dim") == 0) {
            if (!get_int(it, 1, 65536, &n)) return "class 'head_dim' must be a whole number from 1 to 65536";
            c->head_dim = (int)n;
        } else if (strcmp(k, "v_dim") == 0) {
            if (!get_int(it, 1, 65536, &n)) return "class 'v_dim' must be a whole number from 1 to 65536";
            c->v_dim = (int)n;
        } else if (strcmp(k, "seq") == 0) {
            if (!get_int(it, 1, 1L << 30, &n) || (n & (n - 1)) != 0)
                return "class 'seq' must be a power of two up to 2^30";
            c->seq = n;
        } else if (strcmp(k, "dtype") == 0) {
            if (!cJSON_IsString(it) || (c->dtype = index_of(it->valuestring, dtype_names, 3)) < 0)
                return "class 'dtype' must be \"f32\", \"f16\" or \"bf16\"";
        } else if (strcmp(k, "mask") == 0) {
            if (!cJSON_IsString(it) || (c->mask_kind = index_of(it->valuestring, mask_names, 3)) < 0)
                return "class 'mask' must be \"none\", \"additive\" or \"bool\"";
        } else if (strcmp(k, "causal") == 0) {
            if (!cJSON_IsBool(it)) return "class 'causal' must be true or false";
            c->causal = cJSON_IsTrue(it) ? 1 : 0;
        } else if (strcmp(k, "mods") == 0) {
            const char *bad =
                "class 'mods' must be a list of \"softcap\", \"sinks\", \"alibi\", \"score_mod\" and \"mask_mod\"";
            if (!cJSON_IsArray(it)) return bad;
            c->mods = 0;
            const cJSON *m;
            cJSON_ArrayForEach(m, it) {
                const int b = cJSON_IsString(m) ? index_of(m->valuestring, mods_names, CLATTN_TUNE_MODS_COUNT) : -1;
                if (b < 0) return bad;
                c->mods |= 1 << b;
            }
        } else if (strcmp(k, "kv_layout") == 0) {
            if (!cJSON_IsString(it) || (c->kv_layout = index_of(it->valuestring, kv_layout_names, 3)) <= 0)
                return "class 'kv_layout' must be \"packed\" or \"paged\"";
        } else if (strcmp(k, "kv_dtype") == 0) {
            const int i = cJSON_IsString(it) ? index_of(it->valuestring, kv_dtype_names, 2) : -1;
            if (i < 0) return "class 'kv_dtype' must be \"i8\" or \"fp8\"";
            c->kv_dtype = CLATTN_DTYPE_I8 + i;
        } else {
            return "unknown field in 'class'";
        }
    }
    return NULL;
}

/* The parameters as "name=value,..." text; each name and value a short token, so that the text parses back. */
static const char *parse_params(const cJSON *o, char *out, size_t size) {
    if (!cJSON_IsObject(o)) return "'params' is not an object";
    size_t used = 0;
    out[0] = '\0';
    const cJSON *it;
    int count = 0;
    cJSON_ArrayForEach(it, o) {
        if (++count > CLA_TUNE_MAX_PARAMS) return "too many parameters";
        if (!it->string || !is_token(it->string, 15)) return "a parameter name that is not a short lowercase word";
        char value[24];
        long n = 0;
        if (get_int(it, 0, PARAM_MAX, &n))
            snprintf(value, sizeof value, "%ld", n);
        else if (cJSON_IsString(it) && is_token(it->valuestring, 15))
            snprintf(value, sizeof value, "%s", it->valuestring);
        else
            return "a parameter value that is neither a whole number from 0 to 2^20 nor a short word";
        int w = snprintf(out + used, size - used, "%s%s=%s", used ? "," : "", it->string, value);
        if (w < 0 || (size_t)w >= size - used) return "parameters too long";
        used += (size_t)w;
    }
    return NULL;
}

static const char *parse_entry(const cJSON *o, cla_tuning_entry *e) {
    memset(e, 0, sizeof *e);
    if (!cJSON_IsObject(o)) return "not an object";
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(o, "op");
    if (!copy_string(op, e->op, sizeof e->op) || !is_token(e->op, sizeof e->op - 1))
        return "'op' missing or not a short lowercase name";
    const cJSON *h = cJSON_GetObjectItemCaseSensitive(o, "source_hash");
    if (!copy_string(h, e->source_hash, sizeof e->source_hash) || strlen(e->source_hash) != 32 ||
        strspn(e->source_hash, "0123456789abcdef") != 32)
        return "'source_hash' missing or not 32 lowercase hex digits";
    const char *why = parse_class(cJSON_GetObjectItemCaseSensitive(o, "class"), &e->cls);
    if (why) return why;
    if ((why = parse_params(cJSON_GetObjectItemCaseSensitive(o, "params"), e->params, sizeof e->params)))
        return why;
    const char *times[2] = {"ms", "default_ms"};
    double *dst[2] = {&e->ms, &e->default_ms};
    for (int i = 0; i < 2; ++i) {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, times[i]);
        if (!t) continue;
        if (!cJSON_IsNumber(t) || !isfinite(t->valuedouble) || t->valuedouble < 0 || t->valuedouble > 1e12)
            return "'ms' or 'default_ms' not a time in milliseconds";
        *dst[i] = t->valuedouble;
    }
    return NULL;
}

void cla_tuning_db_clear(cla_tuning_db *db) {
    free(db->entries);
    free(db->clblast);
    free(db->path);
    memset(db, 0, sizeof *db);
}

/* Field by field (the struct has padding); no modifiers (0) and any (-1) are one class, as the file stores them. */
static bool same_class(const cla_tune_class *a, const cla_tune_class *b) {
    return a->head_dim == b->head_dim && a->dtype == b->dtype && a->mask_kind == b->mask_kind &&
           a->causal == b->causal && a->phase == b->phase && a->v_dim == b->v_dim && a->seq == b->seq &&
           (a->mods > 0 ? a->mods : -1) == (b->mods > 0 ? b->mods : -1) &&
           (a->kv_layout > 0 ? a->kv_layout : -1) == (b->kv_layout > 0 ? b->kv_layout : -1) &&
           (a->kv_dtype > 0 ? a->kv_dtype : -1) == (b->kv_dtype > 0 ? b->kv_dtype : -1);
}

bool cla_tuning_db_put(cla_tuning_db *db, const cla_tuning_entry *e) {
    for (size_t i = 0; i < db->count; ++i) {
        cla_tuning_entry *x = &db->entries[i];
        if (strcmp(x->op, e->op) == 0 && strcmp(x->source_hash, e->source_hash) == 0 &&
            same_class(&x->cls, &e->cls)) {
            *x = *e;
            return true;
        }
    }
    cla_tuning_entry *grown = cla_grow(db->entries, &db->capacity, db->count, sizeof *grown, 16);
    if (!grown) return false;
    db->entries = grown;
    db->entries[db->count++] = *e;
    return true;
}

bool cla_tuning_db_parse(const char *text, size_t size, cla_tuning_db *db, char *why, size_t why_size) {
    /* An output: whatever it holds is overwritten, never freed, so that an uninitialised struct is safe. */
    memset(db, 0, sizeof *db);
    cJSON *root = cJSON_ParseWithLength(text, size);
    if (!root) {
        cla_write_message(why, why_size, "not valid JSON");
        return false;
    }
    const char *err = NULL;
    long format = 0;
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(root, "entries");
    if (!cJSON_IsObject(root))
        err = "the top level is not an object";
    else if (!get_int(cJSON_GetObjectItemCaseSensitive(root, "format"), 0, 1L << 20, &format))
        err = "no 'format' number";
    else if (format != CLA_TUNING_FORMAT)
        err = "a format version this library does not read";
    else if (!copy_string(cJSON_GetObjectItemCaseSensitive(root, "platform"), db->platform, sizeof db->platform) ||
             !copy_string(cJSON_GetObjectItemCaseSensitive(root, "device"), db->device, sizeof db->device) ||
             !copy_string(cJSON_GetObjectItemCaseSensitive(root, "driver"), db->driver, sizeof db->driver))
        err = "'platform', 'device' or 'driver' missing, not a string or longer than 127 bytes";
    else if (!cJSON_IsArray(entries))
        err = "no 'entries' array";
    else if (cJSON_GetArraySize(entries) > MAX_ENTRIES)
        err = "more than 100000 entries";
    if (err) {
        cla_write_message(why, why_size, "%s", err);
        cJSON_Delete(root);
        cla_tuning_db_clear(db);
        return false;
    }
    /* CLBlast's section is kept as text and checked when applied: a bad one must not cost the kernel entries. */
    const cJSON *clblast = cJSON_GetObjectItemCaseSensitive(root, "clblast");
    if (clblast && !(db->clblast = cJSON_PrintUnformatted(clblast))) {
        cla_write_message(why, why_size, "out of host memory");
        cJSON_Delete(root);
        cla_tuning_db_clear(db);
        return false;
    }
    const cJSON *it;
    size_t index = 0;
    cJSON_ArrayForEach(it, entries) {
        cla_tuning_entry e;
        const char *bad = parse_entry(it, &e);
        if (!bad && !cla_tuning_db_put(db, &e)) bad = "out of host memory";
        if (bad) {
            cla_write_message(why, why_size, "entry %zu: %s", index, bad);
            cJSON_Delete(root);
            cla_tuning_db_clear(db);
            return false;
        }
        ++index;
    }
    cJSON_Delete(root);
    return true;
}

/* ---- writing ---- */

static cJSON *class_json(const cla_tune_class *c) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (c->phase >= 0 && c->phase < 2) cJSON_AddStringToObject(o, "phase", phase_names[c->phase]);
    if (c->head_dim >= 0) cJSON_AddNumberToObject(o, "head_dim", c->head_dim);
    if (c->v_dim >= 0) cJSON_AddNumberToObject(o, "v_dim", c->v_dim);
    if (c->seq >= 0) cJSON_AddNumberToObject(o, "seq", (double)c->seq);
    if (c->dtype >= 0 && c->dtype < 3) cJSON_AddStringToObject(o, "dtype", dtype_names[c->dtype]);
    if (c->causal >= 0) cJSON_AddBoolToObject(o, "causal", c->causal != 0);
    if (c->mask_kind >= 0 && c->mask_kind < 3) cJSON_AddStringToObject(o, "mask", mask_names[c->mask_kind]);
    /* Without modifiers nothing is written: such an entry serves calls with any modifiers. */
    if (c->mods > 0) {
        cJSON *m = cJSON_AddArrayToObject(o, "mods");
        for (int b = 0; m && b < CLATTN_TUNE_MODS_COUNT; ++b)
            if (c->mods & (1 << b)) cJSON_AddItemToArray(m, cJSON_CreateString(mods_names[b]));
    }
    if (c->kv_layout > 0 && c->kv_layout < 3)
        cJSON_AddStringToObject(o, "kv_layout", kv_layout_names[c->kv_layout]);
    if (c->kv_dtype == CLATTN_DTYPE_I8 || c->kv_dtype == CLATTN_DTYPE_FP8_E4M3)
        cJSON_AddStringToObject(o, "kv_dtype", kv_dtype_names[c->kv_dtype - CLATTN_DTYPE_I8]);
    return o;
}

/* "a=1,b=cpu" as a JSON object, numbers as numbers. */
static cJSON *params_json(const char *text) {
    cJSON *o = cJSON_CreateObject();
    const char *p = text;
    while (o && *p) {
        size_t len = strcspn(p, ",");
        char pair[64];
        if (len >= sizeof pair) break;
        memcpy(pair, p, len);
        pair[len] = '\0';
        char *eq = strchr(pair, '=');
        if (eq) {
            *eq = '\0';
            /* A number only when that reads back as the same text ("012" stays a string) and lies in 0 ..
             * PARAM_MAX; other digit strings stay strings, which parse_params reads as words. */
            char *end = NULL, canonical[24];
            long n = strtol(eq + 1, &end, 10);
            snprintf(canonical, sizeof canonical, "%ld", n);
            if (*end == '\0' && end != eq + 1 && strcmp(canonical, eq + 1) == 0 && n >= 0 && n <= PARAM_MAX)
                cJSON_AddNumberToObject(o, pair, (double)n);
            else
                cJSON_AddStringToObject(o, pair, eq + 1);
        }
        p += len;
        if (*p == ',') ++p;
    }
    return o;
}

char *cla_tuning_db_to_json(const cla_tuning_db *db) {
    cJSON *root = cJSON_CreateObject();
    if (!root) return NULL;
    cJSON_AddNumberToObject(root, "format", CLA_TUNING_FORMAT);
    cJSON_AddStringToObject(root, "platform", db->platform);
    cJSON_AddStringToObject(root, "device", db->device);
    cJSON_AddStringToObject(root, "driver", db->driver);
    cJSON *arr = cJSON_AddArrayToObject(root, "entries");
    for (size_t i = 0; arr && i < db->count; ++i) {
        const cla_tuning_entry *e = &db->entries[i];
        cJSON *o = cJSON_CreateObject();
        if (!o) break;
        cJSON_AddStringToObject(o, "op", e->op);
        cJSON_AddStringToObject(o, "source_hash", e->source_hash);
        cJSON *c = class_json(&e->cls), *pj = params_json(e->params);
        if (c) cJSON_AddItemToObject(o, "class", c);
        if (pj) cJSON_AddItemToObject(o, "params", pj);
        if (e->ms > 0) cJSON_AddNumberToObject(o, "ms", e->ms);
        if (e->default_ms > 0) cJSON_AddNumberToObject(o, "default_ms", e->default_ms);
        cJSON_AddItemToArray(arr, o);
    }
    cJSON *clblast = db->clblast ? cJSON_Parse(db->clblast) : NULL;
    if (clblast) cJSON_AddItemToObject(root, "clblast", clblast);
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    return text;
}

/* mkdir -p, mode 0700 for the directories it creates. */
static bool make_dirs(const char *path) {
    char *p = cla_strdup(path);
    if (!p) return false;
    for (char *s = p + 1; *s; ++s) {
        if (*s != '/') continue;
        *s = '\0';
        if (mkdir(p, 0700) != 0 && errno != EEXIST) {
            free(p);
            return false;
        }
        *s = '/';
    }
    bool ok = mkdir(p, 0700) == 0 || errno == EEXIST;
    free(p);
    return ok;
}

bool cla_tuning_db_save(const cla_tuning_db *db, char *why, size_t why_size) {
    if (!db->path) {
        cla_write_message(why, why_size, "no file to write the tuning database to");
        return false;
    }
    char *dir = cla_strdup(db->path);
    char *slash = dir ? strrchr(dir, '/') : NULL;
    if (slash && slash != dir) *slash = '\0';
    if (!dir || !make_dirs(dir)) {
        cla_write_message(why, why_size, "cannot create the tuning directory for %s: %s", db->path,
                          strerror(errno));
        free(dir);
        return false;
    }
    free(dir);
    char *text = cla_tuning_db_to_json(db);
    size_t n = strlen(db->path) + 32;
    char *tmp = malloc(n);
    if (!text || !tmp) {
        free(text);
        free(tmp);
        cla_write_message(why, why_size, "out of host memory");
        return false;
    }
    snprintf(tmp, n, "%s.tmp.%ld", db->path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    bool ok = f && fwrite(text, 1, strlen(text), f) == strlen(text);
    if (f && fclose(f) != 0) ok = false;
    if (ok && rename(tmp, db->path) != 0) ok = false;
    if (!ok) {
        cla_write_message(why, why_size, "writing %s failed: %s", db->path, strerror(errno));
        remove(tmp);
    }
    free(text);
    free(tmp);
    return ok;
}

/* ---- files ---- */

bool cla_tuning_make_dir(const char *dir) {
    return make_dirs(dir);
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

char *cla_tuning_dir(const cla_env *e) {
    if (e->tuning_dir) return cla_strdup(e->tuning_dir);
    if (e->xdg_data_home && *e->xdg_data_home == '/') return join(e->xdg_data_home, "clattn/tuning");
    if (e->home) return join(e->home, ".local/share/clattn/tuning");
    return NULL;
}

char *cla_tuning_file(const char *dir, const clattn_device_info *info) {
    char name[96];
    size_t n = 0;
    /* A readable name, then a hash of what the entries are keyed by, so two drivers never share a file. */
    for (const char *s = info->name; *s && n < 48; ++s) {
        char ch = *s;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        if (ok)
            name[n++] = ch;
        else if (n && name[n - 1] != '-')
            name[n++] = '-';
    }
    while (n && name[n - 1] == '-') --n;
    if (!n) name[n++] = 'd';
    cla_hash h;
    cla_hash_init(&h);
    cla_hash_string(&h, info->platform_name);
    cla_hash_string(&h, info->name);
    cla_hash_string(&h, info->driver_version);
    char hex[33];
    cla_hash_hex(&h, hex);
    snprintf(name + n, sizeof name - n, "-%.12s.json", hex);
    return join(dir, name);
}

bool cla_tuning_source_hash(clattn_context *ctx, const cla_tune_op *op, char out[33]) {
    cla_hash h;
    cla_hash_init(&h);
    for (size_t i = 0; op->sources[i]; ++i) {
        char *text = NULL;
        size_t len = 0;
        if (cla_source_load(ctx, op->sources[i], &text, &len) != CLATTN_SUCCESS) return false;
        cla_hash_bytes(&h, text, len);
        free(text);
    }
    cla_hash_hex(&h, out);
    return true;
}

static char *read_small_file(const char *path, size_t *size, bool *missing) {
    *missing = false;
    FILE *f = fopen(path, "rb");
    if (!f) {
        *missing = errno == ENOENT;
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *n = cap > MAX_FILE + 8192 ? NULL : realloc(buf, cap);
            if (!n) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = n;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    fclose(f);
    *size = len;
    return buf;
}

int cla_tune_op_slot(const cla_tune_op *op) {
    const cla_tune_op *const *ops = cla_tune_ops();
    for (int i = 0; ops[i] && i < CLA_MAX_TUNE_OPS; ++i)
        if (ops[i] == op) return i;
    return -1;
}

/* The source hash of an operation, computed once per context. */
static const char *op_hash(clattn_context *ctx, const cla_tune_op *op) {
    int slot = cla_tune_op_slot(op);
    if (!ctx->tuning || slot < 0) return NULL;
    char *h = ctx->tuning->hashes[slot];
    if (!h[0] && !cla_tuning_source_hash(ctx, op, h)) h[0] = '\0';
    return h[0] ? h : NULL;
}

void cla_tuning_load(clattn_context *ctx, const cla_env *env) {
    ctx->tuning = calloc(1, sizeof *ctx->tuning);
    if (!ctx->tuning) return;
    cla_tuning_state *t = ctx->tuning;
    /* The file is named even when it is not read, for the tuner (clattn_tuning_database_file). */
    char *dir = cla_tuning_dir(env);
    t->file = dir ? cla_tuning_file(dir, &ctx->info) : NULL;
    free(dir);
    const char *off = env->tuning;
    if (off && (strcmp(off, "0") == 0 || strcmp(off, "off") == 0)) return;
    if (!t->file) return;
    size_t size = 0;
    bool missing = false;
    char *text = read_small_file(t->file, &size, &missing);
    if (!text) {
        if (!missing)
            cla_log(ctx, CLATTN_LOG_WARNING, "tuning database %s cannot be read (%s); using built-in defaults",
                    t->file, strerror(errno));
        else
            cla_log(ctx, CLATTN_LOG_DEBUG, "no tuning database at %s; using built-in defaults", t->file);
        return;
    }
    char why[256] = "";
    bool ok = cla_tuning_db_parse(text, size, &t->db, why, sizeof why);
    free(text);
    if (!ok) {
        cla_log(ctx, CLATTN_LOG_WARNING,
                "tuning database %s is malformed (%s); it is ignored and built-in defaults are used. Rerun `clattn "
                "tune` to rewrite it.",
                t->file, why);
        return;
    }
    if (strcmp(t->db.platform, ctx->info.platform_name) != 0 || strcmp(t->db.device, ctx->info.name) != 0 ||
        strcmp(t->db.driver, ctx->info.driver_version) != 0) {
        cla_log(ctx, CLATTN_LOG_WARNING,
                "tuning database %s is for device '%s' (%s, driver %s), not this one; it is ignored", t->file,
                t->db.device, t->db.platform, t->db.driver);
        cla_tuning_db_clear(&t->db);
        return;
    }
    t->found = true;
    /* Entries tuned with another version of a kernel are never used; say so once, here. */
    for (size_t i = 0; i < t->db.count; ++i) {
        const cla_tune_op *op = cla_tune_op_find(t->db.entries[i].op);
        if (!op) continue;
        const char *h = op_hash(ctx, op);
        if (h && strcmp(h, t->db.entries[i].source_hash) != 0) {
            size_t stale = 0;
            for (size_t j = 0; j < t->db.count; ++j)
                stale += strcmp(t->db.entries[j].op, op->name) == 0 && strcmp(t->db.entries[j].source_hash, h) != 0;
            cla_log(ctx, CLATTN_LOG_WARNING,
                    "tuning database %s: %zu entries of %s were tuned with another version of its kernels (source "
                    "hash %s, now %s); they are ignored. Rerun `clattn tune`.",
                    t->file, stale, op->name, t->db.entries[i].source_hash, h);
            break;
        }
    }
    cla_log(ctx, CLATTN_LOG_INFO, "tuning database %s: %zu entries", t->file, t->db.count);
    cla_clblast_apply(ctx);
}

void cla_tuning_free(clattn_context *ctx) {
    if (!ctx->tuning) return;
    cla_tuning_db_clear(&ctx->tuning->db);
    free(ctx->tuning->file);
    free(ctx->tuning);
    ctx->tuning = NULL;
}

/* ---- matching ---- */

static int log2_of(long x) {
    int n = 0;
    while (x > 1) x >>= 1, ++n;
    return n;
}

void cla_tuning_match(const clattn_context *log_ctx, const cla_tuning_db *db, const char *source_hash,
                      const clattn_device_info *d, const cla_tune_op *op, const cla_tune_problem *p,
                      cla_tune_choice *out) {
    memset(out, 0, sizeof *out);
    out->source = CLATTN_TUNING_BUILTIN;
    op->builtin(d, p, &out->config);
    if (!db || !source_hash) return;
    const cla_tune_class q = cla_tune_op_class_of(op, p);
    /* The fields a class of this operation has: an entry that gives all of them is the class of a problem. */
    const int full = 5 + (q.v_dim >= 0);
    /* Rank: exact class, then nearest bucket (closest in log2), then device defaults (most fields given). */
    long best_rank = -1;
    for (size_t i = 0; i < db->count; ++i) {
        const cla_tuning_entry *e = &db->entries[i];
        if (strcmp(e->op, op->name) != 0 || strcmp(e->source_hash, source_hash) != 0) continue;
        const cla_tune_class *c = &e->cls;
        if ((c->head_dim >= 0 && c->head_dim != q.head_dim) || (c->dtype >= 0 && c->dtype != q.dtype) ||
            (c->mask_kind >= 0 && c->mask_kind != q.mask_kind) || (c->causal >= 0 && c->causal != q.causal) ||
            (c->phase >= 0 && c->phase != q.phase) || (c->v_dim >= 0 && c->v_dim != q.v_dim) ||
            (c->mods > 0 && c->mods != q.mods) || (c->kv_layout > 0 && c->kv_layout != q.kv_layout) ||
            (c->kv_dtype > 0 && c->kv_dtype != q.kv_dtype))
            continue;
        const int given = (c->head_dim >= 0) + (c->dtype >= 0) + (c->mask_kind >= 0) + (c->causal >= 0) +
                          (c->phase >= 0) + (c->v_dim >= 0);
        const int distance = c->seq >= 0 ? abs(log2_of(c->seq) - log2_of(q.seq)) : 31;
        clattn_tuning_source source;
        long rank;
        if (given == full && distance == 0)
            source = CLATTN_TUNING_EXACT, rank = 3000000;
        else if (given == full && c->seq >= 0)
            source = CLATTN_TUNING_NEAREST, rank = 2000000 - distance;
        else
            source = CLATTN_TUNING_DEVICE_DEFAULT, rank = 1000000 + given * 100 - distance;
        /* An entry tuned with the call's modifiers or serving format beats one tuned without them. */
        rank += (c->mods > 0) + (c->kv_layout > 0) + (c->kv_dtype > 0);
        if (rank <= best_rank) continue;
        cla_tune_config cfg;
        op->builtin(d, p, &cfg);
        char why[160] = "";
        const char *bad = NULL;
        if (!cla_tune_config_parse(op, e->params, &cfg, why, sizeof why))
            bad = why;
        else
            bad = op->check(d, p, &cfg);
        if (bad) {
            char cls[CLA_TUNE_CLASS_TEXT];
            cla_tune_op_class_format(op, c, cls, sizeof cls);
            if (log_ctx)
                cla_log(log_ctx, CLATTN_LOG_WARNING, "tuning entry %s [%s] '%s' cannot be used here: %s", op->name,
                        cls, e->params, bad);
            continue;
        }
        best_rank = rank;
        out->source = source;
        out->config = cfg;
        out->entry = e;
    }
}

clattn_status cla_tuning_choose(clattn_context *ctx, const cla_tune_op *op, const cla_tune_problem *p,
                                cla_tune_choice *out) {
    memset(out, 0, sizeof *out);
    if (op->override) {
        bool given = false;
        clattn_status st = op->override(ctx, p, &out->config, &given);
        if (st != CLATTN_SUCCESS) return st;
        if (given) {
            out->source = CLATTN_TUNING_OVERRIDE;
            return CLATTN_SUCCESS;
        }
    }
    const bool have = ctx->tuning && ctx->tuning->found && ctx->tuning->db.count;
    cla_tuning_match(ctx, have ? &ctx->tuning->db : NULL, have ? op_hash(ctx, op) : NULL, &ctx->info, op, p, out);
    return CLATTN_SUCCESS;
}

/* ---- public API ---- */

void clattn_tuning_query_init(clattn_tuning_query *q) {
    if (!q) return;
    memset(q, 0, sizeof *q);
    q->operation = "sdpa_fused";
    q->head_dim = 64;
    q->dtype = CLATTN_DTYPE_F32;
    q->q_len = q->kv_len = 1024;
    q->batch = 1;
    q->heads = 8;
}

const char *clattn_tuning_source_name(clattn_tuning_source source) {
    static const char *const names[] = {"builtin", "device-default", "nearest", "exact", "override"};
    return (unsigned)source < sizeof names / sizeof names[0] ? names[source] : "unknown";
}

/* "clblast:Xgemm" and the other CLBlast kernels: what cla_clblast_apply gave CLBlast on this context's device. */
static clattn_status clblast_lookup(clattn_context *ctx, const char *operation, clattn_tuning_choice *choice) {
    int kernel = -1;
    for (int k = 0; k < CLA_CLBLAST_KERNEL_COUNT; ++k)
        if (strcmp(operation + 8, cla_clblast_kernels[k].name) == 0) kernel = k;
    if (kernel < 0)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "unknown operation '%s' (CLBlast kernels are clblast:Xgemm, "
                        "clblast:XgemmDirect and clblast:GemmRoutine)",
                        operation);
    memset(choice, 0, sizeof *choice);
    choice->source = CLATTN_TUNING_BUILTIN; /* CLBlast's own database */
    snprintf(choice->query_class, sizeof choice->query_class, "%s:f32", operation);
    const cla_tuning_state *t = ctx->tuning;
    if (t && t->clblast_applied[kernel][0]) {
        choice->source = CLATTN_TUNING_EXACT;
        cla_strlcpy(choice->params, t->clblast_applied[kernel], sizeof choice->params);
        cla_strlcpy(choice->entry_class, "clblast", sizeof choice->entry_class);
        choice->tuned_ms = t->clblast_ms;
        choice->default_ms = t->clblast_default_ms;
    }
    if (t && t->found && t->file) cla_strlcpy(choice->database, t->file, sizeof choice->database);
    return CLATTN_SUCCESS;
}

cla_tune_problem cla_tune_problem_of_query(const clattn_tuning_query *q) {
    cla_tune_problem p;
    memset(&p, 0, sizeof p);
    p.head_dim = q->head_dim;
    p.v_head_dim = q->v_head_dim ? q->v_head_dim : q->head_dim;
    p.dtype = q->dtype;
    p.mask_kind = (int)q->mask;
    p.causal = q->causal != CLATTN_CAUSAL_NONE;
    p.batch = q->batch;
    p.heads = q->heads;
    p.q_len = q->q_len;
    p.kv_len = q->kv_len;
    return p;
}

clattn_status clattn_tuning_lookup(clattn_context *ctx, const clattn_tuning_query *q,
                                   clattn_tuning_choice *choice) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    CLA_FAIL_ON(!q || !choice, ctx, CLATTN_ERROR_NULL_POINTER, "%s is NULL", !q ? "query" : "choice");
    if (q->operation && strncmp(q->operation, "clblast:", 8) == 0) return clblast_lookup(ctx, q->operation, choice);
    const cla_tune_op *op = cla_tune_op_find(q->operation ? q->operation : "sdpa_fused");
    if (!op) return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "unknown operation '%s'", q->operation);
    if (q->head_dim == 0 || q->head_dim > 65536 || q->v_head_dim > 65536 ||
        (unsigned)q->dtype > CLATTN_DTYPE_BF16 || (unsigned)q->mask > CLATTN_MASK_BOOL ||
        (unsigned)q->causal > CLATTN_CAUSAL_BOTTOM_RIGHT)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT,
                        "query: head dim (%zu, 1..65536), v head dim (%zu), dtype (%d), mask (%d) or causal (%d) "
                        "out of range",
                        q->head_dim, q->v_head_dim, (int)q->dtype, (int)q->mask, (int)q->causal);
    const cla_tune_problem p = cla_tune_problem_of_query(q);
    cla_tune_choice ch;
    clattn_status st = cla_tuning_choose(ctx, op, &p, &ch);
    if (st != CLATTN_SUCCESS) return st;
    memset(choice, 0, sizeof *choice);
    choice->source = ch.source;
    cla_tune_config_format(op, &ch.config, choice->params, sizeof choice->params);
    cla_tune_class qc = cla_tune_op_class_of(op, &p);
    cla_tune_op_class_format(op, &qc, choice->query_class, sizeof choice->query_class);
    if (ch.entry) {
        cla_tune_op_class_format(op, &ch.entry->cls, choice->entry_class, sizeof choice->entry_class);
        choice->tuned_ms = ch.entry->ms;
        choice->default_ms = ch.entry->default_ms;
    }
    if (ctx->tuning && ctx->tuning->found && ctx->tuning->file)
        cla_strlcpy(choice->database, ctx->tuning->file, sizeof choice->database);
    return CLATTN_SUCCESS;
}

/* ---- storing results (the advanced API: `clattn tune`) ---- */

/* The database at `path` as it is now, for adding to it: a missing file is an empty database; a malformed one, or
 * one of another device or driver (whose entries do not apply here), starts afresh, and `message` says which. */
static bool read_for_update(const char *path, const clattn_device_info *d, cla_tuning_db *db, char *message,
                            size_t message_size) {
    memset(db, 0, sizeof *db);
    size_t size = 0;
    bool missing = false;
    char *text = read_small_file(path, &size, &missing);
    char why[256] = "";
    if (text && !cla_tuning_db_parse(text, size, db, why, sizeof why))
        cla_write_message(message, message_size, "the existing database %s is malformed (%s); it is rewritten",
                          path, why);
    free(text);
    if (strcmp(db->platform, d->platform_name) != 0 || strcmp(db->device, d->name) != 0 ||
        strcmp(db->driver, d->driver_version) != 0) {
        cla_tuning_db_clear(db);
        cla_strlcpy(db->platform, d->platform_name, sizeof db->platform);
        cla_strlcpy(db->device, d->name, sizeof db->device);
        cla_strlcpy(db->driver, d->driver_version, sizeof db->driver);
    }
    db->path = cla_strdup(path);
    return db->path != NULL;
}

static clattn_status save_and_clear(cla_tuning_db *db, char *message, size_t message_size) {
    char why[512];
    bool ok = cla_tuning_db_save(db, why, sizeof why);
    if (!ok) cla_write_message(message, message_size, "%s", why);
    cla_tuning_db_clear(db);
    return ok ? CLATTN_SUCCESS : CLATTN_ERROR_IO;
}

clattn_status clattn_tuning_database_store(const char *path, const clattn_device_info *device,
                                           const clattn_tuning_record *r, int phase_default, char *message,
                                           size_t message_size) {
    cla_write_message(message, message_size, "%s", "");
    if (!path || !device || !r || !r->op || !r->source_hash || !r->params) {
        cla_write_message(message, message_size, "a NULL argument");
        return CLATTN_ERROR_NULL_POINTER;
    }
    cla_tuning_db db;
    if (!read_for_update(path, device, &db, message, message_size)) return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    cla_tuning_entry e;
    memset(&e, 0, sizeof e);
    cla_strlcpy(e.op, r->op->name, sizeof e.op);
    cla_strlcpy(e.source_hash, r->source_hash, sizeof e.source_hash);
    e.cls = r->cls;
    cla_strlcpy(e.params, r->params, sizeof e.params);
    e.ms = r->ms;
    e.default_ms = r->default_ms;
    bool ok = cla_tuning_db_put(&db, &e);
    if (ok && phase_default) {
        /* The same parameters for every class of the family and phase: what a class without an entry falls back
         * to before the built-in defaults. It keeps the class's score modifiers and serving format, which change
         * the kernel: tuned with a softcap, it serves the calls with a softcap, and plain calls keep their own. */
        cla_tuning_entry d = e;
        d.cls.head_dim = d.cls.dtype = d.cls.mask_kind = d.cls.causal = d.cls.v_dim = -1;
        d.cls.seq = -1;
        d.ms = d.default_ms = 0;
        ok = cla_tuning_db_put(&db, &d);
    }
    if (!ok) {
        cla_tuning_db_clear(&db);
        cla_write_message(message, message_size, "out of host memory adding to %s", path);
        return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    }
    return save_and_clear(&db, message, message_size);
}

clattn_status clattn_tuning_database_store_clblast(const char *path, const clattn_device_info *device,
                                                   const clattn_clblast_params *params, char *message,
                                                   size_t message_size) {
    cla_write_message(message, message_size, "%s", "");
    if (!path || !device || !params) {
        cla_write_message(message, message_size, "a NULL argument");
        return CLATTN_ERROR_NULL_POINTER;
    }
    cla_tuning_db db;
    if (!read_for_update(path, device, &db, message, message_size)) return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    char *text = cla_clblast_section_to_json(params);
    if (!text) {
        cla_tuning_db_clear(&db);
        cla_write_message(message, message_size, "out of host memory writing the clblast section");
        return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    }
    free(db.clblast);
    db.clblast = text; /* the kernel entries stay as they were read */
    return save_and_clear(&db, message, message_size);
}

clattn_status clattn_tuning_database_file(clattn_context *ctx, int create_directory, char *path, size_t size) {
    if (!ctx) return CLATTN_ERROR_NULL_POINTER;
    CLA_ENTER(ctx);
    CLA_FAIL_ON(!path, ctx, CLATTN_ERROR_NULL_POINTER, "path is NULL");
    const char *file = ctx->tuning ? ctx->tuning->file : NULL;
    if (!file)
        return cla_fail(ctx, CLATTN_ERROR_IO,
                        "no tuning directory can be named: set CLATTN_TUNING_DIR, XDG_DATA_HOME or HOME");
    if (strlen(file) >= size)
        return cla_fail(ctx, CLATTN_ERROR_INVALID_ARGUMENT, "size is %zu bytes but the path %s needs %zu", size,
                        file, strlen(file) + 1);
    cla_strlcpy(path, file, size);
    if (create_directory) {
        char *dir = cla_strdup(file);
        char *slash = dir ? strrchr(dir, '/') : NULL;
        if (slash && slash != dir) *slash = '\0';
        bool ok = dir && make_dirs(dir);
        if (!ok) {
            clattn_status st = cla_fail(ctx, CLATTN_ERROR_IO, "cannot create the tuning directory %s (%s)",
                                        dir ? dir : file, strerror(errno));
            free(dir);
            return st;
        }
        free(dir);
    }
    return CLATTN_SUCCESS;
}
