// SPDX-License-Identifier: Apache-2.0
/* Unit tests of the .npy reader and writer (tools/clattn/npy.c): round trips of every dtype and kind of shape, the
 * header variants numpy writes, and a catalogue of malformed files that must each be rejected with a useful message
 * and without reading out of bounds (run under AddressSanitizer). */
#define _POSIX_C_SOURCE 200809L

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "npy.h"

static char tmp_dir[64];

static int setup_dir(void **state) {
    (void)state;
    strcpy(tmp_dir, "/tmp/clattn-test-npy-XXXXXX");
    return mkdtemp(tmp_dir) != NULL ? 0 : -1;
}

/* Removes the files the tests left in the temporary directory, then the directory. */
static int teardown_dir(void **state) {
    (void)state;
    DIR *d = opendir(tmp_dir);
    if (d != NULL) {
        struct dirent *e;
        char path[512];
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
            if (remove(path) != 0) rmdir(path);
        }
        closedir(d);
    }
    rmdir(tmp_dir);
    return 0;
}

static void tmp_path(char *out, size_t size, const char *name) {
    snprintf(out, size, "%s/%s", tmp_dir, name);
}

/* Builds a file image: magic, version major.0 (minor given), header length field, the header text as given (the
 * caller supplies padding and newline), then `data_len` bytes of data. */
typedef struct image {
    unsigned char *bytes;
    size_t size;
} image;

static image make_image_n(unsigned major, unsigned minor, const char *header, size_t hlen, const void *data,
                          size_t data_len) {
    size_t len_bytes = major == 1 ? 2 : 4;
    image im;
    im.size = 8 + len_bytes + hlen + data_len;
    im.bytes = malloc(im.size);
    assert_non_null(im.bytes);
    memcpy(im.bytes, "\x93NUMPY", 6);
    im.bytes[6] = (unsigned char)major;
    im.bytes[7] = (unsigned char)minor;
    for (size_t i = 0; i < len_bytes; i++) im.bytes[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(im.bytes + 8 + len_bytes, header, hlen);
    if (data_len > 0) memcpy(im.bytes + 8 + len_bytes + hlen, data, data_len);
    return im;
}

static image make_image(unsigned major, unsigned minor, const char *header, const void *data, size_t data_len) {
    return make_image_n(major, minor, header, strlen(header), data, data_len);
}

/* A header padded with spaces and a newline to a 64-byte boundary, as numpy writes it. */
static const char *padded(const char *dict, unsigned major) {
    static char buf[1024];
    size_t prefix = major == 1 ? 10 : 12;
    size_t n = strlen(dict);
    size_t total = (prefix + n + 1 + 63) / 64 * 64;
    memcpy(buf, dict, n);
    memset(buf + n, ' ', total - prefix - n - 1);
    buf[total - prefix - 1] = '\n';
    buf[total - prefix] = '\0';
    return buf;
}

static void test_parse_numpy_header(void **state) {
    (void)state;
    const float values[6] = {0, 1, 2, 3, 4, 5};
    image im = make_image(1, 0, padded("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 1), values,
                          sizeof values);
    assert_int_equal(im.size % 64, sizeof values % 64); /* data starts on a 64-byte boundary */
    npy_array a;
    char err[256] = "";
    assert_int_equal(npy_parse(im.bytes, im.size, &a, err, sizeof err), 0);
    assert_int_equal(a.dtype, NPY_F32);
    assert_int_equal(a.ndim, 2);
    assert_int_equal(a.shape[0], 2);
    assert_int_equal(a.shape[1], 3);
    assert_int_equal(a.count, 6);
    assert_memory_equal(a.data, values, sizeof values);
    npy_free(&a);
    assert_null(a.data);
    npy_free(&a); /* twice is harmless */
    npy_free(NULL);
    free(im.bytes);
}

/* Header spellings numpy (old and new) or Python's repr can produce, all of which must be accepted. */
static void test_parse_header_variants(void **state) {
    (void)state;
    static const struct {
        unsigned major;
        const char *dict;
        npy_dtype dtype;
        int ndim;
        size_t shape0;
        size_t bytes;
    } ok[] = {
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", NPY_F32, 1, 3, 12},
        {1, "{'shape': (3,), 'fortran_order': False, 'descr': '<f4'}", NPY_F32, 1, 3, 12},
        {1, "{\"descr\": \"<f4\", \"fortran_order\": False, \"shape\": (3,)}", NPY_F32, 1, 3, 12},
        {1, "{'descr':'<f4','fortran_order':False,'shape':(3,)}", NPY_F32, 1, 3, 12},
        {1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3L,), }", NPY_F32, 1, 3, 12},
        {1, "{'descr': '=f4', 'fortran_order': False, 'shape': (3,), }", NPY_F32, 1, 3, 12},
        {1, "{'descr': '|f4', 'fortran_order': False, 'shape': (3,), }", NPY_F32, 1, 3, 12},
        {1, "{'descr': '<u1', 'fortran_order': False, 'shape': (12,), }", NPY_U8, 1, 12, 12},
        {1, "{'descr': '>b1', 'fortran_order': False, 'shape': (12,), }", NPY_BOOL, 1, 12, 12},
        {1, "{'descr': '<f8', 'fortran_order': False, 'shape': ( 1 , 1 , ), }", NPY_F64, 2, 1, 8},
        {1, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 3), }", NPY_I32, 2, 1, 12},
        {2, "{'descr': '<f2', 'fortran_order': False, 'shape': (6,), }", NPY_F16, 1, 6, 12},
        {3, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 1, 1), }", NPY_I64, 3, 1, 8},
    };
    unsigned char data[12] = {0};
    for (size_t t = 0; t < sizeof ok / sizeof ok[0]; t++) {
        image im = make_image(ok[t].major, 0, padded(ok[t].dict, ok[t].major), data, ok[t].bytes);
        npy_array a;
        char err[256] = "";
        if (npy_parse(im.bytes, im.size, &a, err, sizeof err) != 0)
            fail_msg("case %zu (%s) rejected: %s", t, ok[t].dict, err);
        assert_int_equal(a.dtype, ok[t].dtype);
        assert_int_equal(a.ndim, ok[t].ndim);
        assert_int_equal(a.shape[0], ok[t].shape0);
        npy_free(&a);
        free(im.bytes);
    }
    /* A minimal header without padding is fine too. */
    image im = make_image(1, 0, "{'descr': '|u1', 'fortran_order': False, 'shape': ()}\n", "x", 1);
    npy_array a;
    assert_int_equal(npy_parse(im.bytes, im.size, &a, NULL, 0), 0);
    assert_int_equal(a.ndim, 0);
    assert_int_equal(a.count, 1);
    assert_int_equal(((unsigned char *)a.data)[0], 'x');
    npy_free(&a);
    free(im.bytes);
}

typedef struct bad_case {
    const char *what;
    unsigned major, minor;
    const char *header; /* raw header text (may hold a NUL: its length is sizeof - 1), NULL: `dict` padded */
    const char *dict;
    size_t data_len;
    const char *expect; /* a piece of the error message */
} bad_case;

#define NUL_HEADER "{'descr': '<f4',\0 'fortran_order': False, 'shape': (1,), }\n"

static void test_malformed_rejected(void **state) {
    (void)state;
    static const bad_case cases[] = {
        {"wrong version", 4, 0, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4,
         "version 4.0"},
        {"minor version", 1, 1, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4,
         "version 1.1"},
        {"truncated data", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 20,
         "truncated: expected 24 data bytes, found 20"},
        {"trailing bytes", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 25,
         "1 unexpected bytes after the data"},
        {"unknown descr", 1, 0, NULL, "{'descr': '<f3', 'fortran_order': False, 'shape': (1,), }", 4,
         "unsupported dtype '<f3'"},
        {"complex descr", 1, 0, NULL, "{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }", 8,
         "unsupported dtype"},
        {"long descr", 1, 0, NULL, "{'descr': '<f4aaaaaaaaaaaaaaaaaaaaaaa', 'fortran_order': False, 'shape': (1,)}",
         4, "too long"},
        {"big endian", 1, 0, NULL, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,), }", 4, "big-endian"},
        {"structured", 1, 0, NULL, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (1,), }", 4,
         "structured"},
        {"descr not a string", 1, 0, NULL, "{'descr': 5, 'fortran_order': False, 'shape': (1,), }", 4,
         "descr string"},
        {"fortran order", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16,
         "ascontiguousarray"},
        {"bad bool", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': Maybe, 'shape': (1,), }", 4, "True or False"},
        {"lower-case bool", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': false, 'shape': (1,), }", 4,
         "True or False"},
        {"count overflow", 1, 0, NULL,
         "{'descr': '<f4', 'fortran_order': False, 'shape': (1099511627776, 1099511627776), }", 0, "overflow"},
        {"overflow hidden by a zero", 1, 0, NULL,
         "{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4294967296, 4294967296, 4294967296), }", 0,
         "overflow"},
        {"byte overflow", 1, 0, NULL, "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904,), }",
         0, "overflow"},
        {"dimension beyond size_t", 1, 0, NULL,
         "{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,), }", 0, "does not fit"},
        {"negative dimension", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }", 0,
         "negative dimension"},
        {"negative later", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", 0,
         "negative dimension"},
        {"nine dimensions", 1, 0, NULL,
         "{'descr': '<f4', 'fortran_order': False, 'shape': (1, 1, 1, 1, 1, 1, 1, 1, 1), }", 4, "more than 8"},
        {"int, not tuple", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': (3), }", 12, "(N,)"},
        {"empty element", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': (,), }", 0, "dimension"},
        {"missing comma", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': (3 4), }", 48,
         "',' or ')'"},
        {"float dimension", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': (3.0,), }", 12,
         "',' or ')'"},
        {"shape list", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': [3], }", 12, "'('"},
        {"missing shape", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': False, }", 4, "missing the key 'shape'"},
        {"missing descr", 1, 0, NULL, "{'fortran_order': False, 'shape': (1,), }", 4, "missing the key 'descr'"},
        {"missing order", 1, 0, NULL, "{'descr': '<f4', 'shape': (1,), }", 4, "missing the key 'fortran_order'"},
        {"empty dict", 1, 0, NULL, "{}", 0, "missing the key"},
        {"unknown key", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}", 4,
         "unexpected key 'x'"},
        {"duplicate key", 1, 0, NULL, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (1,)}", 4,
         "duplicate key 'descr'"},
        {"dict not closed", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), ", 4,
         "not terminated"},
        {"tuple not closed", 1, 0, NULL, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,", 4,
         "not terminated"},
        {"string not closed", 1, 0, NULL, "{'descr': '<f4, 'fortran_order': False, 'shape': (1,)}", 4, "dtype"},
        {"string to the end", 1, 0, NULL, "{'descr", 4, "string is not terminated"},
        {"no newline", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }   ", NULL, 4,
         "not terminated by a newline"},
        {"garbage after newline", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\nxx", NULL, 4,
         "after the header's newline"},
        {"garbage after dict", 1, 0, "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), } x\n", NULL, 4,
         "after the header dict"},
        {"not a dict", 1, 0, "['descr', '<f4']\n", NULL, 4, "'{'"},
        {"leading newline", 1, 0, "\n{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }\n", NULL, 4, "'{'"},
        {"NUL in header", 1, 0, NUL_HEADER, NULL, 4, "0x00"},
        {"escape in string", 1, 0, NULL, "{'descr': '<f\\4', 'fortran_order': False, 'shape': (1,), }", 4,
         "unsupported character"},
        {"unicode key", 3, 0, NULL, "{'d\xc3\xa9scr': '<f4', 'fortran_order': False, 'shape': (1,), }", 4,
         "unsupported character"},
    };
    unsigned char data[64] = {0};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        const bad_case *c = &cases[t];
        const char *header = c->header != NULL ? c->header : padded(c->dict, c->major);
        /* The one header with an embedded NUL needs its length given. */
        size_t hlen = strcmp(c->what, "NUL in header") == 0 ? sizeof NUL_HEADER - 1 : strlen(header);
        image im = make_image_n(c->major, c->minor, header, hlen, data, c->data_len);
        npy_array a;
        memset(&a, 0xab, sizeof a);
        char err[256] = "";
        int rc = npy_parse(im.bytes, im.size, &a, err, sizeof err);
        if (rc != -1) fail_msg("case '%s' was accepted", c->what);
        if (strstr(err, c->expect) == NULL)
            fail_msg("case '%s': message \"%s\" lacks \"%s\"", c->what, err, c->expect);
        assert_null(a.data);
        free(im.bytes);
    }
}

static void test_bad_prefix(void **state) {
    (void)state;
    char err[256];
    npy_array a;
    /* Bad magic, at full length and shorter than the magic itself. */
    assert_int_equal(npy_parse("\x93NUMPX\x01\x00\x10\x00", 10, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "bad magic"));
    assert_int_equal(npy_parse("PK\x03\x04", 4, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "bad magic"));
    /* Empty input, and input that stops inside the prefix. */
    assert_int_equal(npy_parse("", 0, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "truncated"));
    assert_int_equal(npy_parse(NULL, 0, &a, err, sizeof err), -1);
    assert_int_equal(npy_parse("\x93NUM", 4, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "truncated"));
    assert_int_equal(npy_parse("\x93NUMPY\x01\x00\x10", 9, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "truncated"));
    assert_int_equal(npy_parse("\x93NUMPY\x02\x00\x10\x00\x00", 11, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "truncated"));
    /* A header length of zero, and one past the end of the input. */
    assert_int_equal(npy_parse("\x93NUMPY\x01\x00\x00\x00", 10, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "empty header"));
    assert_int_equal(npy_parse("\x93NUMPY\x01\x00\x76\x00{'descr'", 17, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "truncated header: expected 118 header bytes, found 7"));
    /* A hostile v2 header length near 4 GiB. */
    assert_int_equal(npy_parse("\x93NUMPY\x02\x00\xff\xff\xff\xff{", 13, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "header length"));
    /* A NULL or zero-sized error buffer is allowed. */
    assert_int_equal(npy_parse("", 0, &a, NULL, 0), -1);
    assert_int_equal(npy_parse("", 0, &a, err, 0), -1);
}

/* Every prefix of a valid file is rejected, and every single-byte corruption of its header either parses to a
 * consistent array or is rejected: never a crash or an out-of-bounds read (AddressSanitizer watches). */
static void test_truncations_and_corruptions(void **state) {
    (void)state;
    const double values[3] = {1, 2, 3};
    image im = make_image(1, 0, padded("{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }", 1), values,
                          sizeof values);
    npy_array a;
    char err[256];
    for (size_t n = 0; n < im.size; n++) {
        /* A copy of exactly n bytes, so that ASan catches any read past the end. */
        unsigned char *cut = malloc(n > 0 ? n : 1);
        memcpy(cut, im.bytes, n);
        if (npy_parse(cut, n, &a, err, sizeof err) != -1)
            fail_msg("a file cut to %zu of %zu bytes was accepted", n, im.size);
        free(cut);
    }
    const unsigned char flips[] = {0x00, ' ', '\n', '\'', '"', '(', ')', ',', '-', '9', '}', '{', 0x80, 0xff};
    size_t header_end = im.size - sizeof values;
    for (size_t pos = 0; pos < header_end; pos++) {
        for (size_t f = 0; f < sizeof flips; f++) {
            unsigned char *copy = malloc(im.size);
            memcpy(copy, im.bytes, im.size);
            copy[pos] = flips[f];
            if (npy_parse(copy, im.size, &a, err, sizeof err) == 0) {
                size_t item = npy_dtype_size(a.dtype);
                assert_int_equal(a.count * item, im.size - header_end);
                npy_free(&a);
            }
            free(copy);
        }
    }
    free(im.bytes);
}

static void fill_pattern(unsigned char *p, size_t n, npy_dtype dtype) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(dtype == NPY_BOOL ? (i * 7 + 1) % 2 : i * 37 + 11);
}

static void test_round_trip(void **state) {
    (void)state;
    static const npy_dtype dtypes[] = {NPY_F32, NPY_F16, NPY_F64, NPY_BOOL, NPY_U8, NPY_I32, NPY_I64};
    static const struct {
        int ndim;
        size_t shape[8];
    } shapes[] = {
        {0, {0}}, {1, {3}}, {2, {2, 3}}, {1, {0}}, {3, {2, 0, 3}}, {4, {2, 3, 5, 7}}, {8, {1, 2, 1, 2, 1, 2, 1, 2}},
    };
    char path[256];
    tmp_path(path, sizeof path, "round.npy");
    for (size_t t = 0; t < sizeof dtypes / sizeof dtypes[0]; t++) {
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
            size_t count = 1;
            for (int d = 0; d < shapes[s].ndim; d++) count *= shapes[s].shape[d];
            size_t bytes = count * npy_dtype_size(dtypes[t]);
            unsigned char *data = malloc(bytes + 1);
            fill_pattern(data, bytes, dtypes[t]);
            char err[256] = "";
            if (npy_write(path, dtypes[t], shapes[s].ndim, shapes[s].shape, data, err, sizeof err) != 0)
                fail_msg("write %s ndim %d: %s", npy_dtype_name(dtypes[t]), shapes[s].ndim, err);
            npy_array a;
            if (npy_read(path, &a, err, sizeof err) != 0)
                fail_msg("read %s ndim %d: %s", npy_dtype_name(dtypes[t]), shapes[s].ndim, err);
            assert_int_equal(a.dtype, dtypes[t]);
            assert_int_equal(a.ndim, shapes[s].ndim);
            for (int d = 0; d < a.ndim; d++) assert_int_equal(a.shape[d], shapes[s].shape[d]);
            assert_int_equal(a.count, count);
            assert_non_null(a.data);
            if (bytes > 0) assert_memory_equal(a.data, data, bytes);

            /* The file itself: data on a 64-byte boundary, and the same result through npy_parse. */
            FILE *f = fopen(path, "rb");
            assert_non_null(f);
            unsigned char buf[1024];
            size_t n = fread(buf, 1, sizeof buf, f);
            fclose(f);
            if (bytes + 128 <= sizeof buf) {
                assert_int_equal((n - bytes) % 64, 0);
                npy_array b;
                assert_int_equal(npy_parse(buf, n, &b, err, sizeof err), 0);
                assert_int_equal(b.count, count);
                npy_free(&b);
            }
            npy_free(&a);
            free(data);
        }
    }
}

static void test_written_header_text(void **state) {
    (void)state;
    /* The exact text numpy writes, so that other readers (and numpy's strict one) accept our files. */
    static const struct {
        npy_dtype dtype;
        int ndim;
        size_t shape[3];
        const char *dict;
    } cases[] = {
        {NPY_F32, 0, {0}, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }"},
        {NPY_F16, 1, {3}, "{'descr': '<f2', 'fortran_order': False, 'shape': (3,), }"},
        {NPY_BOOL, 2, {2, 3}, "{'descr': '|b1', 'fortran_order': False, 'shape': (2, 3), }"},
        {NPY_I64, 3, {1, 0, 2}, "{'descr': '<i8', 'fortran_order': False, 'shape': (1, 0, 2), }"},
    };
    char path[256];
    tmp_path(path, sizeof path, "header.npy");
    unsigned char zeros[64] = {0};
    for (size_t t = 0; t < sizeof cases / sizeof cases[0]; t++) {
        assert_int_equal(npy_write(path, cases[t].dtype, cases[t].ndim, cases[t].shape, zeros, NULL, 0), 0);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        unsigned char buf[256];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        const char *want = padded(cases[t].dict, 1);
        size_t hlen = strlen(want);
        assert_true(n >= 10 + hlen);
        assert_memory_equal(buf, "\x93NUMPY\x01\x00", 8);
        assert_int_equal(buf[8] | buf[9] << 8, hlen);
        assert_memory_equal(buf + 10, want, hlen);
    }
}

static void test_write_errors(void **state) {
    (void)state;
    char path[256], err[256];
    const size_t shape[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    const float x[1] = {1};
    tmp_path(path, sizeof path, "errors.npy");
    assert_int_equal(npy_write(path, NPY_F32, 9, shape, x, err, sizeof err), -1);
    assert_int_equal(npy_write(path, NPY_F32, -1, shape, x, err, sizeof err), -1);
    assert_int_equal(npy_write(path, (npy_dtype)42, 1, shape, x, err, sizeof err), -1);
    assert_int_equal(npy_write(path, NPY_F32, 1, shape, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "no data"));
    assert_int_equal(npy_write(path, NPY_F32, 1, NULL, x, err, sizeof err), -1);
    assert_int_equal(npy_write(NULL, NPY_F32, 1, shape, x, err, sizeof err), -1);
    const size_t huge[2] = {SIZE_MAX / 2, 3};
    assert_int_equal(npy_write(path, NPY_F32, 2, huge, x, err, sizeof err), -1);
    assert_non_null(strstr(err, "overflow"));
    /* None of these created the file. */
    struct stat st;
    assert_int_not_equal(stat(path, &st), 0);

    /* A missing directory: an error naming the path, and nothing created. */
    char missing[300];
    snprintf(missing, sizeof missing, "%s/no/such/dir.npy", tmp_dir);
    assert_int_equal(npy_write(missing, NPY_F32, 1, shape, x, err, sizeof err), -1);
    assert_non_null(strstr(err, missing));

    /* The target is a directory: rename fails, and the temporary file is removed. */
    char sub[300];
    snprintf(sub, sizeof sub, "%s/adir", tmp_dir);
    assert_int_equal(mkdir(sub, 0700), 0);
    assert_int_equal(npy_write(sub, NPY_F32, 1, shape, x, err, sizeof err), -1);
    assert_non_null(strstr(err, "rename"));
    DIR *d = opendir(tmp_dir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp") != NULL) fail_msg("temporary file %s left behind", e->d_name);
    closedir(d);
    rmdir(sub);

    /* An existing file is replaced whole. */
    const float two[2] = {5, 6};
    const size_t s2[1] = {2};
    assert_int_equal(npy_write(path, NPY_F32, 1, shape, x, err, sizeof err), 0);
    assert_int_equal(npy_write(path, NPY_F32, 1, s2, two, err, sizeof err), 0);
    npy_array a;
    assert_int_equal(npy_read(path, &a, err, sizeof err), 0);
    assert_int_equal(a.count, 2);
    assert_memory_equal(a.data, two, sizeof two);
    npy_free(&a);
}

static void write_bytes(const char *path, const void *bytes, size_t n) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void test_read_errors(void **state) {
    (void)state;
    char path[256], err[512];
    npy_array a;
    tmp_path(path, sizeof path, "does-not-exist.npy");
    assert_int_equal(npy_read(path, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, path));
    assert_non_null(strstr(err, "cannot open"));

    assert_int_equal(npy_read(tmp_dir, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "directory"));

    /* A header length shorter than the prefix already read (found by fuzz_npy: it overflowed the heap). */
    static const unsigned char tiny_header[] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, 1, 0, '\n', 'X'};
    tmp_path(path, sizeof path, "tiny-header.npy");
    write_bytes(path, tiny_header, sizeof tiny_header);
    assert_int_equal(npy_read(path, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "too short"));

    /* Files on disk that are truncated in the header, in the data, or too long. */
    const float values[6] = {0};
    image im = make_image(1, 0, padded("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", 1), values,
                          sizeof values);
    tmp_path(path, sizeof path, "cut.npy");
    write_bytes(path, im.bytes, 40);
    assert_int_equal(npy_read(path, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "truncated header"));
    write_bytes(path, im.bytes, 5);
    assert_int_equal(npy_read(path, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "truncated"));
    write_bytes(path, im.bytes, im.size - 3);
    assert_int_equal(npy_read(path, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "truncated: expected 24 data bytes, found 21"));
    assert_null(a.data);
    unsigned char *longer = malloc(im.size + 1);
    memcpy(longer, im.bytes, im.size);
    longer[im.size] = 0;
    write_bytes(path, longer, im.size + 1);
    assert_int_equal(npy_read(path, &a, err, sizeof err), -1);
    assert_non_null(strstr(err, "unexpected bytes after the data"));
    write_bytes(path, im.bytes, im.size);
    assert_int_equal(npy_read(path, &a, err, sizeof err), 0);
    npy_free(&a);
    write_bytes(path, "", 0);
    assert_int_equal(npy_read(path, &a, err, sizeof err), -1);
    free(longer);
    free(im.bytes);
}

/* A pipe has no size up front; the reader takes the streaming path. */
static void test_read_from_pipe(void **state) {
    (void)state;
    const float values[3] = {1.5f, -2.0f, 3.25f};
    image im = make_image(1, 0, padded("{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }", 1), values,
                          sizeof values);
    char path[256], err[256];
    tmp_path(path, sizeof path, "fifo");
    assert_int_equal(mkfifo(path, 0600), 0);
    for (int variant = 0; variant < 2; variant++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            FILE *f = fopen(path, "wb");
            size_t n = variant == 0 ? im.size : im.size - 1; /* the second time, one byte short */
            _exit(f != NULL && fwrite(im.bytes, 1, n, f) == n && fclose(f) == 0 ? 0 : 1);
        }
        npy_array a;
        int rc = npy_read(path, &a, err, sizeof err);
        int status = 0;
        waitpid(pid, &status, 0);
        assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        if (variant == 0) {
            assert_int_equal(rc, 0);
            assert_int_equal(a.count, 3);
            assert_memory_equal(a.data, values, sizeof values);
            npy_free(&a);
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(strstr(err, "truncated"));
        }
    }
    unlink(path);
    free(im.bytes);
}

static void test_to_f32(void **state) {
    (void)state;
    char err[256];
    uint16_t halves[3] = {0x3c00, 0xc000, 0x7c00};
    npy_array a = {NPY_F16, 1, {3}, 3, halves};
    float *f = npy_to_f32(&a, err, sizeof err);
    assert_non_null(f);
    assert_true(f[0] == 1.0f && f[1] == -2.0f && isinf(f[2]));
    free(f);

    double doubles[4] = {0.1, 1e300, -1e300, NAN};
    a = (npy_array){NPY_F64, 1, {4}, 4, doubles};
    f = npy_to_f32(&a, err, sizeof err);
    assert_non_null(f);
    assert_true(f[0] == 0.1f && isinf(f[1]) && f[1] > 0 && isinf(f[2]) && f[2] < 0 && isnan(f[3]));
    free(f);

    float floats[2] = {1.25f, -0.5f};
    a = (npy_array){NPY_F32, 1, {2}, 2, floats};
    f = npy_to_f32(&a, err, sizeof err);
    assert_non_null(f);
    assert_memory_equal(f, floats, sizeof floats);
    free(f);

    /* Empty arrays give a valid (non-NULL) empty buffer. */
    a = (npy_array){NPY_F32, 1, {0}, 0, floats};
    f = npy_to_f32(&a, err, sizeof err);
    assert_non_null(f);
    free(f);

    int32_t ints[1] = {3};
    a = (npy_array){NPY_I32, 1, {1}, 1, ints};
    assert_null(npy_to_f32(&a, err, sizeof err));
    assert_non_null(strstr(err, "int32"));
    assert_null(npy_to_f32(NULL, err, sizeof err));
}

static void test_dtype_names(void **state) {
    (void)state;
    assert_string_equal(npy_dtype_name(NPY_F32), "float32");
    assert_string_equal(npy_dtype_name(NPY_F16), "float16");
    assert_string_equal(npy_dtype_name(NPY_F64), "float64");
    assert_string_equal(npy_dtype_name(NPY_BOOL), "bool");
    assert_string_equal(npy_dtype_name(NPY_U8), "uint8");
    assert_string_equal(npy_dtype_name(NPY_I32), "int32");
    assert_string_equal(npy_dtype_name(NPY_I64), "int64");
    assert_string_equal(npy_dtype_name((npy_dtype)99), "unknown");
    assert_int_equal(npy_dtype_size(NPY_F16), 2);
    assert_int_equal(npy_dtype_size(NPY_I64), 8);
    assert_int_equal(npy_dtype_size((npy_dtype)99), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_numpy_header),
        cmocka_unit_test(test_parse_header_variants),
        cmocka_unit_test(test_malformed_rejected),
        cmocka_unit_test(test_bad_prefix),
        cmocka_unit_test(test_truncations_and_corruptions),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_written_header_text),
        cmocka_unit_test(test_write_errors),
        cmocka_unit_test(test_read_errors),
        cmocka_unit_test(test_read_from_pipe),
        cmocka_unit_test(test_to_f32),
        cmocka_unit_test(test_dtype_names),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
