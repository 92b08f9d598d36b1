// SPDX-License-Identifier: Apache-2.0
/* NumPy .npy reader and writer for the command-line tool. The format is a magic string, a version, a header length
 * and a Python dict literal describing the array, followed by the raw C-order data. The files come from users, so
 * the header parser accepts only the small grammar numpy writes and checks every size before it is used. */
#define _POSIX_C_SOURCE 200809L

#include "npy.h"

#include "clattn.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* numpy itself refuses headers over 10000 bytes by default; allow far more, but not enough to exhaust memory. */
#define NPY_MAX_HEADER_BYTES ((size_t)1 << 20)

static const unsigned char npy_magic[6] = {0x93, 'N', 'U', 'M', 'P', 'Y'};

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void
set_error(char *err, size_t err_size, const char *fmt, ...) {
    if (err == NULL || err_size == 0) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

/* The data is stored and returned little-endian; on a big-endian host memcpy would silently swap every value. */
static bool host_is_little_endian(void) {
    const uint16_t one = 1;
    unsigned char first;
    memcpy(&first, &one, 1);
    return first == 1;
}

static bool mul_overflows(size_t a, size_t b, size_t *result) {
    if (a != 0 && b > SIZE_MAX / a) return true;
    *result = a * b;
    return false;
}

size_t npy_dtype_size(npy_dtype dtype) {
    switch (dtype) {
    case NPY_F32:
    case NPY_I32:
        return 4;
    case NPY_F16:
        return 2;
    case NPY_F64:
    case NPY_I64:
        return 8;
    case NPY_BOOL:
    case NPY_U8:
        return 1;
    }
    return 0;
}

const char *npy_dtype_name(npy_dtype dtype) {
    static const char *const names[] = {"float32", "float16", "float64", "bool", "uint8", "int32", "int64"};
    return (unsigned)dtype < sizeof names / sizeof names[0] ? names[dtype] : "unknown"; /* in npy_dtype's order */
}

/* The descr string numpy writes for each dtype. */
static const char *dtype_descr(npy_dtype dtype) {
    switch (dtype) {
    case NPY_F32:
        return "<f4";
    case NPY_F16:
        return "<f2";
    case NPY_F64:
        return "<f8";
    case NPY_BOOL:
        return "|b1";
    case NPY_U8:
        return "|u1";
    case NPY_I32:
        return "<i4";
    case NPY_I64:
        return "<i8";
    }
    return NULL;
}

/* Element count and byte count of a shape, refusing any product that overflows size_t. The product of the nonzero
 * dimensions is checked too, so that an empty array cannot smuggle in dimensions whose partial products overflow
 * in code that later multiplies a few of them. */
static int shape_bytes(int ndim, const size_t *shape, size_t item, size_t *count, size_t *bytes, char *err,
                       size_t err_size) {
    size_t nonzero = 1;
    bool empty = false;
    for (int d = 0; d < ndim; d++) {
        if (shape[d] == 0) {
            empty = true;
            continue;
        }
        if (mul_overflows(nonzero, shape[d], &nonzero)) {
            set_error(err, err_size, "shape too large: the element count overflows at dimension %d (%zu)", d,
                      shape[d]);
            return -1;
        }
    }
    size_t n = empty ? 0 : nonzero;
    size_t b;
    if (mul_overflows(n, item, &b) || mul_overflows(nonzero, item, &b)) {
        set_error(err, err_size, "shape too large: %zu elements of %zu bytes overflow the address space", nonzero,
                  item);
        return -1;
    }
    *count = n;
    *bytes = n * item;
    return 0;
}

/* -------------------------------------------------------------------------------------------------------------- */
/* Header                                                                                                         */

typedef struct npy_header {
    npy_dtype dtype;
    int ndim;
    size_t shape[NPY_MAX_DIMS];
    size_t count;
    size_t data_offset; /* bytes from the start of the file to the first data byte */
    size_t data_bytes;
} npy_header;

/* Reads the fixed-size prefix: magic, version and header length, and checks that the header ends within the
 * `file_size` bytes of the file. `avail` may be less than the whole file; on success `*header_start` and
 * `*header_end` bound the dict text. */
static int parse_prefix(const unsigned char *b, size_t avail, size_t file_size, size_t *header_start,
                        size_t *header_end, char *err, size_t err_size) {
    size_t magic_len = avail < sizeof npy_magic ? avail : sizeof npy_magic;
    if (memcmp(b, npy_magic, magic_len) != 0) {
        set_error(err, err_size, "not a .npy file: bad magic string (expected \\x93NUMPY)");
        return -1;
    }
    if (avail < 8) {
        set_error(err, err_size, "truncated header: the file is only %zu bytes", avail);
        return -1;
    }
    unsigned major = b[6], minor = b[7];
    if ((major != 1 && major != 2 && major != 3) || minor != 0) {
        set_error(err, err_size, "unsupported .npy format version %u.%u (supported: 1.0, 2.0, 3.0)", major, minor);
        return -1;
    }
    /* Version 1.0 has a 2-byte header length, 2.0 and 3.0 (UTF-8 header) a 4-byte one; both little-endian. */
    size_t len_bytes = major == 1 ? 2 : 4;
    if (avail < 8 + len_bytes) {
        set_error(err, err_size, "truncated header: the file ends inside the header length field");
        return -1;
    }
    size_t header_len = 0;
    for (size_t i = len_bytes; i-- > 0;) header_len = header_len << 8 | b[8 + i];
    if (header_len == 0) {
        set_error(err, err_size, "empty header (header length 0)");
        return -1;
    }
    if (header_len > NPY_MAX_HEADER_BYTES) {
        set_error(err, err_size, "header length %zu is larger than the %zu bytes this reader accepts", header_len,
                  NPY_MAX_HEADER_BYTES);
        return -1;
    }
    *header_start = 8 + len_bytes;
    *header_end = *header_start + header_len;
    if (file_size < *header_end) {
        set_error(err, err_size, "truncated header: expected %zu header bytes, found %zu", header_len,
                  file_size - *header_start);
        return -1;
    }
    return 0;
}

/* A cursor over the dict text; offsets in messages are from the start of the file. */
typedef struct cursor {
    const unsigned char *text;
    size_t pos, end;
    size_t base; /* file offset of text[0] */
    char *err;
    size_t err_size;
} cursor;

static void skip_spaces(cursor *c) {
    while (c->pos < c->end && (c->text[c->pos] == ' ' || c->text[c->pos] == '\t')) c->pos++;
}

static bool at_end(const cursor *c) {
    /* The newline may only end the header, so reaching it inside the dict means the dict was never closed. */
    return c->pos >= c->end || c->text[c->pos] == '\n';
}

static int syntax_error(cursor *c, const char *expected) {
    if (at_end(c))
        set_error(c->err, c->err_size, "header is not terminated: the dict ends at byte %zu while expecting %s",
                  c->base + c->pos, expected);
    else {
        unsigned char ch = c->text[c->pos];
        if (ch >= 0x20 && ch < 0x7f)
            set_error(c->err, c->err_size, "header byte %zu: expected %s, found '%c'", c->base + c->pos, expected,
                      ch);
        else
            set_error(c->err, c->err_size, "header byte %zu: expected %s, found byte 0x%02x", c->base + c->pos,
                      expected, ch);
    }
    return -1;
}

static int expect_char(cursor *c, char ch, const char *what) {
    skip_spaces(c);
    if (at_end(c) || c->text[c->pos] != (unsigned char)ch) return syntax_error(c, what);
    c->pos++;
    return 0;
}

/* A short Python string literal in single or double quotes, without escapes (numpy never writes any here). */
static int parse_string(cursor *c, char *out, size_t out_size, const char *what) {
    skip_spaces(c);
    if (at_end(c) || (c->text[c->pos] != '\'' && c->text[c->pos] != '"')) return syntax_error(c, what);
    unsigned char quote = c->text[c->pos++];
    size_t start = c->pos, n = 0;
    while (!at_end(c) && c->text[c->pos] != quote) {
        unsigned char ch = c->text[c->pos];
        if (ch == '\\' || ch < 0x20 || ch >= 0x7f) {
            set_error(c->err, c->err_size, "header byte %zu: unsupported character in a string", c->base + c->pos);
            return -1;
        }
        if (n + 1 < out_size) out[n] = (char)ch;
        n++;
        c->pos++;
    }
    if (at_end(c)) {
        set_error(c->err, c->err_size, "header byte %zu: string is not terminated", c->base + start - 1);
        return -1;
    }
    c->pos++;
    if (n + 1 > out_size) {
        set_error(c->err, c->err_size, "header byte %zu: string of %zu characters is too long for %s",
                  c->base + start, n, what);
        return -1;
    }
    out[n] = '\0';
    return 0;
}

static int parse_descr(cursor *c, npy_dtype *dtype) {
    skip_spaces(c);
    if (!at_end(c) && (c->text[c->pos] == '[' || c->text[c->pos] == '{')) {
        set_error(c->err, c->err_size, "header byte %zu: structured dtypes are not supported", c->base + c->pos);
        return -1;
    }
    size_t at = c->base + c->pos;
    char descr[16];
    if (parse_string(c, descr, sizeof descr, "the descr string") != 0) return -1;
    static const struct {
        const char *code;
        npy_dtype dtype;
    } types[] = {{"f4", NPY_F32}, {"f2", NPY_F16}, {"f8", NPY_F64}, {"b1", NPY_BOOL},
                 {"u1", NPY_U8},  {"i4", NPY_I32}, {"i8", NPY_I64}};
    if (strlen(descr) == 3 && strchr("<>=|", descr[0]) != NULL) {
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
            if (strcmp(descr + 1, types[i].code) != 0) continue;
            /* Byte order matters only for multi-byte types; '=' and '|' mean native, little-endian here. */
            if (descr[0] == '>' && npy_dtype_size(types[i].dtype) > 1) {
                set_error(c->err, c->err_size,
                          "header byte %zu: big-endian data ('%s') is not supported; convert it with "
                          "a.astype('<%s')",
                          at, descr, types[i].code);
                return -1;
            }
            *dtype = types[i].dtype;
            return 0;
        }
    }
    set_error(c->err, c->err_size,
              "header byte %zu: unsupported dtype '%s' (supported: <f4 <f2 <f8 |b1 |u1 <i4 <i8)", at, descr);
    return -1;
}

static int parse_bool(cursor *c, bool *value) {
    skip_spaces(c);
    size_t start = c->pos;
    while (c->pos < c->end && ((c->text[c->pos] >= 'a' && c->text[c->pos] <= 'z') ||
                               (c->text[c->pos] >= 'A' && c->text[c->pos] <= 'Z')))
        c->pos++;
    size_t n = c->pos - start;
    if (n == 4 && memcmp(c->text + start, "True", 4) == 0)
        *value = true;
    else if (n == 5 && memcmp(c->text + start, "False", 5) == 0)
        *value = false;
    else {
        c->pos = start;
        return syntax_error(c, "True or False for fortran_order");
    }
    return 0;
}

static int parse_shape(cursor *c, npy_header *h) {
    if (expect_char(c, '(', "'(' starting the shape tuple") != 0) return -1;
    int ndim = 0;
    bool trailing_comma = false;
    for (;;) {
        skip_spaces(c);
        if (!at_end(c) && c->text[c->pos] == ')') {
            c->pos++;
            break;
        }
        if (ndim > 0 && !trailing_comma) return syntax_error(c, "',' or ')' in the shape tuple");
        if (!at_end(c) && c->text[c->pos] == '-') {
            set_error(c->err, c->err_size, "header byte %zu: negative dimension in the shape", c->base + c->pos);
            return -1;
        }
        if (at_end(c) || c->text[c->pos] < '0' || c->text[c->pos] > '9')
            return syntax_error(c, "a dimension (a non-negative integer) in the shape tuple");
        if (ndim == NPY_MAX_DIMS) {
            set_error(c->err, c->err_size, "header byte %zu: more than %d dimensions", c->base + c->pos,
                      NPY_MAX_DIMS);
            return -1;
        }
        size_t at = c->base + c->pos;
        size_t value = 0;
        while (c->pos < c->end && c->text[c->pos] >= '0' && c->text[c->pos] <= '9') {
            size_t digit = (size_t)(c->text[c->pos] - '0');
            if (value > (SIZE_MAX - digit) / 10) {
                set_error(c->err, c->err_size, "header byte %zu: dimension does not fit in size_t", at);
                return -1;
            }
            value = value * 10 + digit;
            c->pos++;
        }
        /* Python 2 era numpy wrote long integers as 3L. */
        if (c->pos < c->end && c->text[c->pos] == 'L') c->pos++;
        h->shape[ndim++] = value;
        skip_spaces(c);
        trailing_comma = !at_end(c) && c->text[c->pos] == ',';
        if (trailing_comma) c->pos++;
    }
    /* (3) is the integer 3 to Python, not a tuple; numpy would refuse it too. */
    if (ndim == 1 && !trailing_comma) {
        set_error(c->err, c->err_size, "header byte %zu: a one-dimensional shape must be written (N,)",
                  c->base + c->pos - 1);
        return -1;
    }
    h->ndim = ndim;
    return 0;
}

/* Parses the dict: exactly the keys descr, fortran_order and shape, in any order, optional trailing comma, then
 * padding spaces and the final newline. */
static int parse_dict(cursor *c, npy_header *h) {
    bool have_descr = false, have_order = false, have_shape = false, fortran = false;
    if (c->pos >= c->end || c->text[c->pos] != '{') return syntax_error(c, "'{' starting the header dict");
    c->pos++;
    for (;;) {
        skip_spaces(c);
        if (!at_end(c) && c->text[c->pos] == '}') {
            c->pos++;
            break;
        }
        size_t key_at = c->base + c->pos;
        char key[32];
        if (parse_string(c, key, sizeof key, "a quoted key or '}'") != 0) return -1;
        if (expect_char(c, ':', "':' after the key") != 0) return -1;
        bool *seen;
        int rc;
        if (strcmp(key, "descr") == 0) {
            seen = &have_descr;
            rc = parse_descr(c, &h->dtype);
        } else if (strcmp(key, "fortran_order") == 0) {
            seen = &have_order;
            rc = parse_bool(c, &fortran);
        } else if (strcmp(key, "shape") == 0) {
            seen = &have_shape;
            rc = parse_shape(c, h);
        } else {
            set_error(c->err, c->err_size, "header byte %zu: unexpected key '%s'", key_at, key);
            return -1;
        }
        if (*seen) {
            set_error(c->err, c->err_size, "header byte %zu: duplicate key '%s'", key_at, key);
            return -1;
        }
        if (rc != 0) return -1;
        *seen = true;
        skip_spaces(c);
        if (!at_end(c) && c->text[c->pos] == ',') {
            c->pos++;
            continue;
        }
        if (!at_end(c) && c->text[c->pos] == '}') {
            c->pos++;
            break;
        }
        return syntax_error(c, "',' or '}' after a value");
    }
    skip_spaces(c);
    if (c->pos >= c->end || c->text[c->pos] != '\n') {
        if (c->pos >= c->end)
            set_error(c->err, c->err_size, "header is not terminated by a newline");
        else
            set_error(c->err, c->err_size, "header byte %zu: unexpected data after the header dict",
                      c->base + c->pos);
        return -1;
    }
    if (c->pos + 1 != c->end) {
        set_error(c->err, c->err_size, "header byte %zu: unexpected data after the header's newline",
                  c->base + c->pos + 1);
        return -1;
    }
    const char *missing = !have_descr ? "descr" : !have_order ? "fortran_order" : !have_shape ? "shape" : NULL;
    if (missing != NULL) {
        set_error(c->err, c->err_size, "header is missing the key '%s'", missing);
        return -1;
    }
    if (fortran) {
        set_error(c->err, c->err_size,
                  "fortran_order is True: Fortran-ordered arrays are not supported; save with "
                  "np.save(path, np.ascontiguousarray(a))");
        return -1;
    }
    return 0;
}

/* Parses everything up to the data. `b` must hold at least the whole header; `avail` is how much of the file it
 * holds (used only to report a truncated header). */
static int parse_header(const unsigned char *b, size_t avail, npy_header *h, char *err, size_t err_size) {
    if (!host_is_little_endian()) {
        set_error(err, err_size, "the .npy reader supports little-endian hosts only");
        return -1;
    }
    size_t start, end;
    if (parse_prefix(b, avail, avail, &start, &end, err, err_size) != 0) return -1;
    memset(h, 0, sizeof *h);
    cursor c = {b + start, 0, end - start, start, err, err_size};
    if (parse_dict(&c, h) != 0) return -1;
    if (shape_bytes(h->ndim, h->shape, npy_dtype_size(h->dtype), &h->count, &h->data_bytes, err, err_size) != 0)
        return -1;
    h->data_offset = end;
    return 0;
}

static int check_data_size(const npy_header *h, size_t found, char *err, size_t err_size) {
    if (found < h->data_bytes) {
        set_error(err, err_size, "truncated: expected %zu data bytes, found %zu", h->data_bytes, found);
        return -1;
    }
    if (found > h->data_bytes) {
        set_error(err, err_size, "%zu unexpected bytes after the data (expected %zu data bytes, found %zu)",
                  found - h->data_bytes, h->data_bytes, found);
        return -1;
    }
    return 0;
}

static void fill_array(npy_array *out, const npy_header *h, void *data) {
    out->dtype = h->dtype;
    out->ndim = h->ndim;
    memcpy(out->shape, h->shape, sizeof out->shape);
    out->count = h->count;
    out->data = data;
}

int npy_parse(const void *bytes, size_t size, npy_array *out, char *err, size_t err_size) {
    if (out == NULL) {
        set_error(err, err_size, "no output array");
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (bytes == NULL && size > 0) {
        set_error(err, err_size, "no input bytes");
        return -1;
    }
    npy_header h;
    if (parse_header(bytes != NULL ? bytes : "", size, &h, err, err_size) != 0) return -1;
    if (check_data_size(&h, size - h.data_offset, err, err_size) != 0) return -1;
    /* At least one byte, so that a successful read of an empty array still has non-NULL data. */
    void *data = malloc(h.data_bytes > 0 ? h.data_bytes : 1);
    if (data == NULL) {
        set_error(err, err_size, "out of memory for %zu data bytes", h.data_bytes);
        return -1;
    }
    if (h.data_bytes > 0) memcpy(data, (const unsigned char *)bytes + h.data_offset, h.data_bytes);
    fill_array(out, &h, data);
    return 0;
}

/* -------------------------------------------------------------------------------------------------------------- */
/* Files                                                                                                          */

/* Reads up to `n` bytes; returns how many were read (fewer only at end of file or on an error, which `ferror`
 * tells apart). */
static size_t read_fully(FILE *f, void *buf, size_t n) {
    return n > 0 ? fread(buf, 1, n, f) : 0;
}

/* Streams that are not regular files (pipes, /dev/stdin) have no size up front: read them whole, then parse. */
static int read_stream(FILE *f, npy_array *out, char *err, size_t err_size) {
    size_t cap = 1 << 16, len = 0;
    unsigned char *buf = malloc(cap);
    if (buf == NULL) {
        set_error(err, err_size, "out of memory");
        return -1;
    }
    for (;;) {
        if (len == cap) {
            if (cap > SIZE_MAX / 2) {
                free(buf);
                set_error(err, err_size, "input too large");
                return -1;
            }
            unsigned char *grown = realloc(buf, cap * 2);
            if (grown == NULL) {
                free(buf);
                set_error(err, err_size, "out of memory after reading %zu bytes", len);
                return -1;
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    if (ferror(f)) {
        free(buf);
        set_error(err, err_size, "read error: %s", strerror(errno));
        return -1;
    }
    int rc = npy_parse(buf, len, out, err, err_size);
    free(buf);
    return rc;
}

/* A regular file: read the header, check the size the header promises against the file's size, then read the data
 * straight into its final buffer (no second copy of a large tensor). */
static int read_regular(FILE *f, size_t file_size, npy_array *out, char *err, size_t err_size) {
    unsigned char prefix[12];
    size_t got = read_fully(f, prefix, file_size < sizeof prefix ? file_size : sizeof prefix);
    size_t start, end;
    if (parse_prefix(prefix, got, file_size, &start, &end, err, err_size) != 0) return -1;
    /* The prefix read may already run past a (hostile) header too short to hold any dictionary. */
    if (end < got) {
        set_error(err, err_size, "header length %zu is too short to hold a header dictionary", end - start);
        return -1;
    }
    unsigned char *header = malloc(end);
    if (header == NULL) {
        set_error(err, err_size, "out of memory for a %zu byte header", end);
        return -1;
    }
    memcpy(header, prefix, got);
    size_t rest = read_fully(f, header + got, end - got);
    npy_header h;
    int rc = parse_header(header, got + rest, &h, err, err_size);
    free(header);
    if (rc != 0) return -1;
    if (check_data_size(&h, file_size - h.data_offset, err, err_size) != 0) return -1;
    void *data = malloc(h.data_bytes > 0 ? h.data_bytes : 1);
    if (data == NULL) {
        set_error(err, err_size, "out of memory for %zu data bytes", h.data_bytes);
        return -1;
    }
    size_t n = read_fully(f, data, h.data_bytes);
    /* The file may have changed size since fstat: check what was actually read, and that nothing follows. */
    if (n != h.data_bytes || fgetc(f) != EOF) {
        free(data);
        if (ferror(f))
            set_error(err, err_size, "read error: %s", strerror(errno));
        else
            set_error(err, err_size, "the file changed size while it was being read");
        return -1;
    }
    fill_array(out, &h, data);
    return 0;
}

int npy_read(const char *path, npy_array *out, char *err, size_t err_size) {
    if (out == NULL || path == NULL) {
        set_error(err, err_size, "no path or output array");
        return -1;
    }
    memset(out, 0, sizeof *out);
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        set_error(err, err_size, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char msg[512] = "";
    int rc;
    struct stat st;
    if (fstat(fileno(f), &st) != 0) {
        snprintf(msg, sizeof msg, "cannot stat: %s", strerror(errno));
        rc = -1;
    } else if (S_ISDIR(st.st_mode)) {
        snprintf(msg, sizeof msg, "is a directory");
        rc = -1;
    } else if (S_ISREG(st.st_mode)) {
        if (st.st_size < 0 || (uintmax_t)st.st_size > SIZE_MAX) {
            snprintf(msg, sizeof msg, "file too large");
            rc = -1;
        } else
            rc = read_regular(f, (size_t)st.st_size, out, msg, sizeof msg);
    } else
        rc = read_stream(f, out, msg, sizeof msg);
    fclose(f);
    if (rc != 0) set_error(err, err_size, "%s: %s", path, msg);
    return rc;
}

/* write(2) until everything is written, riding out short writes and signals. */
static int write_all(int fd, const void *buf, size_t n) {
    const unsigned char *p = buf;
    while (n > 0) {
        size_t chunk = n < ((size_t)1 << 30) ? n : ((size_t)1 << 30);
        ssize_t w = write(fd, p, chunk);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int npy_write(const char *path, npy_dtype dtype, int ndim, const size_t *shape, const void *data, char *err,
              size_t err_size) {
    if (path == NULL || path[0] == '\0') {
        set_error(err, err_size, "no output path");
        return -1;
    }
    const char *descr = dtype_descr(dtype);
    if (descr == NULL) {
        set_error(err, err_size, "%s: unknown dtype %d", path, (int)dtype);
        return -1;
    }
    if (ndim < 0 || ndim > NPY_MAX_DIMS || (ndim > 0 && shape == NULL)) {
        set_error(err, err_size, "%s: %d dimensions (0 to %d supported)", path, ndim, NPY_MAX_DIMS);
        return -1;
    }
    if (!host_is_little_endian()) {
        set_error(err, err_size, "%s: the .npy writer supports little-endian hosts only", path);
        return -1;
    }
    size_t count, bytes;
    char msg[256];
    if (shape_bytes(ndim, shape, npy_dtype_size(dtype), &count, &bytes, msg, sizeof msg) != 0) {
        set_error(err, err_size, "%s: %s", path, msg);
        return -1;
    }
    if (bytes > 0 && data == NULL) {
        set_error(err, err_size, "%s: no data for %zu elements", path, count);
        return -1;
    }

    /* The header exactly as numpy writes it: the dict (a 1-tuple keeps its trailing comma), padding spaces so that
     * the data starts on a multiple of 64 bytes, and a newline. Eight 20-digit dimensions fit easily. */
    char dict[400];
    size_t n = (size_t)snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
    for (int d = 0; d < ndim; d++)
        n += (size_t)snprintf(dict + n, sizeof dict - n, "%s%zu", d > 0 ? ", " : "", shape[d]);
    n += (size_t)snprintf(dict + n, sizeof dict - n, "%s), }", ndim == 1 ? "," : "");
    size_t padded = (10 + n + 1 + 63) / 64 * 64;
    size_t header_len = padded - 10;
    unsigned char block[512];
    memcpy(block, npy_magic, sizeof npy_magic);
    block[6] = 1; /* version 1.0: the header is far below its 65535-byte limit */
    block[7] = 0;
    block[8] = (unsigned char)(header_len & 0xff);
    block[9] = (unsigned char)(header_len >> 8);
    memcpy(block + 10, dict, n);
    memset(block + 10 + n, ' ', padded - 10 - n - 1);
    block[padded - 1] = '\n';

    /* A unique temporary name next to the target (rename is atomic only within one file system). O_EXCL keeps us
     * from following a planted link or clobbering another writer's file; mode 0666 lets the umask decide. */
    size_t path_len = strlen(path);
    char *tmp = malloc(path_len + 64);
    if (tmp == NULL) {
        set_error(err, err_size, "%s: out of memory", path);
        return -1;
    }
    int fd = -1;
    for (unsigned attempt = 0; attempt < 100 && fd < 0; attempt++) {
        snprintf(tmp, path_len + 64, "%s.tmp-%ld-%u", path, (long)getpid(), attempt);
        fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd < 0 && errno != EEXIST) break;
    }
    if (fd < 0) {
        set_error(err, err_size, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(tmp);
        return -1;
    }
    const char *failed = NULL;
    if (write_all(fd, block, padded) != 0 || write_all(fd, data, bytes) != 0)
        failed = "write";
    else if (fsync(fd) != 0)
        failed = "fsync";
    int saved = errno;
    if (close(fd) != 0 && failed == NULL) {
        failed = "close";
        saved = errno;
    }
    if (failed == NULL && rename(tmp, path) != 0) {
        failed = "rename";
        saved = errno;
    }
    if (failed != NULL) {
        unlink(tmp);
        set_error(err, err_size, "%s: %s failed: %s", path, failed, strerror(saved));
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

float *npy_to_f32(const npy_array *a, char *err, size_t err_size) {
    if (a == NULL || (a->data == NULL && a->count > 0)) {
        set_error(err, err_size, "no array");
        return NULL;
    }
    if (a->dtype != NPY_F32 && a->dtype != NPY_F16 && a->dtype != NPY_F64) {
        set_error(err, err_size, "cannot use a %s array as float32 (expected float32, float16 or float64)",
                  npy_dtype_name(a->dtype));
        return NULL;
    }
    size_t bytes;
    if (mul_overflows(a->count, sizeof(float), &bytes)) {
        set_error(err, err_size, "array of %zu elements too large", a->count);
        return NULL;
    }
    float *out = malloc(bytes > 0 ? bytes : 1);
    if (out == NULL) {
        set_error(err, err_size, "out of memory for %zu floats", a->count);
        return NULL;
    }
    const unsigned char *src = a->data;
    for (size_t i = 0; i < a->count; i++) {
        if (a->dtype == NPY_F32) {
            memcpy(&out[i], src + 4 * i, 4);
        } else if (a->dtype == NPY_F16) {
            clattn_dtype_unpack(CLATTN_DTYPE_F16, src + 2 * i, &out[i], 1);
        } else {
            double d;
            memcpy(&d, src + 8 * i, 8);
            out[i] = (float)d; /* IEEE conversion: rounds to nearest, overflows to inf, keeps NaN */
        }
    }
    return out;
}

void npy_free(npy_array *a) {
    if (a == NULL) return;
    free(a->data);
    memset(a, 0, sizeof *a);
}
