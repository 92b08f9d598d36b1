// SPDX-License-Identifier: Apache-2.0
/* Helpers shared by the test programs (see test_util.h). */
#include "test_util.h"

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

char *test_make_temp_dir(const char *tag) {
    const char *base = getenv("TMPDIR");
    char templ[512];
    snprintf(templ, sizeof templ, "%s/clattn-%s-XXXXXX", base && *base ? base : "/tmp", tag);
    char *dir = mkdtemp(templ);
    assert_non_null(dir);
    return strdup(dir);
}

void test_remove_tree(const char *path) {
    DIR *d = opendir(path);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char child[1024];
            snprintf(child, sizeof child, "%s/%s", path, e->d_name);
            struct stat st;
            if (lstat(child, &st) == 0 && S_ISDIR(st.st_mode))
                test_remove_tree(child);
            else
                unlink(child);
        }
        closedir(d);
    }
    rmdir(path);
}

void test_write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
}

int test_count_dir_entries(const char *path) {
    DIR *d = opendir(path);
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) ++n;
    closedir(d);
    return n;
}

clattn_sdpa_host_desc test_host_desc(size_t batch, size_t q_heads, size_t kv_heads, size_t q_len, size_t kv_len,
                                     size_t head_dim) {
    clattn_sdpa_host_desc d;
    clattn_sdpa_host_desc_init(&d);
    const size_t shape[6] = {batch, q_heads, kv_heads, q_len, kv_len, head_dim};
    size_t *field[6] = {&d.batch, &d.q_heads, &d.kv_heads, &d.q_len, &d.kv_len, &d.head_dim};
    for (int i = 0; i < 6; ++i) *field[i] = shape[i];
    return d;
}

void test_context_options(clattn_context_options *o, char *msg, size_t size) {
    clattn_context_options_init(o);
    o->error_message = msg;
    o->error_message_size = size;
}

clattn_context *test_context_with(clattn_context_options *o) {
    char msg[2048] = "";
    o->error_message = msg;
    o->error_message_size = sizeof msg;
    clattn_context *ctx = NULL;
    clattn_status st = clattn_context_create_with_options(o, &ctx);
    o->error_message = NULL; /* msg goes out of scope here */
    o->error_message_size = 0;
    if (st != CLATTN_SUCCESS) fail_msg("cannot create a context: %s: %s", clattn_status_string(st), msg);
    return ctx;
}

clattn_context *test_context(void) {
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.device = test_device_spec();
    return test_context_with(&o);
}

char test_log_messages[16384];

static void collect_log(void *user, clattn_log_level level, const char *message) {
    (void)user;
    (void)level;
    size_t n = strlen(test_log_messages);
    snprintf(test_log_messages + n, sizeof test_log_messages - n, "%s\n", message);
}

clattn_context *test_logged_context(void) {
    test_log_messages[0] = '\0';
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.log = collect_log;
    clattn_context *ctx = NULL;
    assert_int_equal(clattn_context_create_with_options(&o, &ctx), CLATTN_SUCCESS);
    return ctx;
}

void test_view_window(const clattn_tensor *t, size_t margin, size_t *first, size_t *count, size_t *total) {
    size_t end = t->offset;
    bool empty = false;
    for (int i = 0; i < 4; ++i) {
        if (t->size[i] == 0) empty = true;
        if (t->size[i]) end += (t->size[i] - 1) * t->stride[i];
    }
    if (!empty) ++end; /* one past the view's last element */
    *first = t->offset > margin ? t->offset - margin : 0;
    *total = end + margin;
    *count = *total - *first;
}

cl_mem test_filled_buffer(clattn_context *ctx, size_t bytes, int fill) {
    cl_int err;
    unsigned char *host = malloc(bytes);
    assert_non_null(host);
    memset(host, fill, bytes);
    cl_mem m =
        clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE | CL_MEM_COPY_HOST_PTR, bytes, host, &err);
    free(host);
    assert_int_equal(err, CL_SUCCESS);
    return m;
}

void test_expect_unwritten(clattn_context *ctx, cl_mem m, size_t bytes, int fill) {
    unsigned char *got = malloc(bytes);
    assert_non_null(got);
    assert_int_equal(clEnqueueReadBuffer(clattn_context_cl_queue(ctx), m, CL_TRUE, 0, bytes, got, 0, NULL, NULL),
                     CL_SUCCESS);
    for (size_t i = 0; i < bytes; ++i)
        if (got[i] != (unsigned char)fill) fail_msg("byte %zu of an output was written by a call that failed", i);
    free(got);
}

cl_mem test_upload_window(clattn_context *ctx, size_t total_bytes, size_t first_byte, const void *window,
                          size_t window_bytes) {
    cl_int err = CL_SUCCESS;
    cl_mem m = clCreateBuffer(clattn_context_cl_context(ctx), CL_MEM_READ_WRITE, total_bytes, NULL, &err);
    if (err != CL_SUCCESS) return NULL;
    if (window_bytes && clEnqueueWriteBuffer(clattn_context_cl_queue(ctx), m, CL_TRUE, first_byte, window_bytes,
                                             window, 0, NULL, NULL) != CL_SUCCESS) {
        clReleaseMemObject(m);
        return NULL;
    }
    return m;
}

int test_read_window(clattn_context *ctx, cl_mem buffer, size_t first_byte, size_t bytes, void *dst) {
    if (bytes == 0) return 0;
    cl_int err =
        clEnqueueReadBuffer(clattn_context_cl_queue(ctx), buffer, CL_TRUE, first_byte, bytes, dst, 0, NULL, NULL);
    return err == CL_SUCCESS ? 0 : -1;
}

bool test_device_allows(clattn_context *ctx, size_t bytes, const char *what) {
    clattn_device_info info;
    assert_status(clattn_context_device_info(ctx, &info), CLATTN_SUCCESS);
    if (info.max_alloc_bytes >= bytes) return true;
    print_message(
        "skipped %s: it needs buffers of %zu MiB, but '%s' allows %llu MiB (CL_DEVICE_MAX_MEM_ALLOC_SIZE)\n", what,
        bytes >> 20, info.name, (unsigned long long)(info.max_alloc_bytes >> 20));
    skip();
    return false;
}

static int compare_size(const void *a, const void *b) {
    const size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

size_t test_sample_rows(size_t slices, size_t len, size_t want, unsigned seed, size_t **rows) {
    const size_t per = want / (slices ? slices : 1) > 1 ? want / slices : 1;
    size_t *r = malloc((slices * per + 4) * sizeof *r);
    assert_non_null(r);
    size_t n = 0;
    unsigned s = seed * 2246822519u + 7;
    for (size_t slice = 0; slice < slices && len; ++slice)
        for (size_t k = 0; k < per; ++k) {
            s = s * 1664525u + 1013904223u;
            size_t row = (size_t)(((unsigned long long)(s >> 8) * len) >> 24); /* uniform in [0, len) */
            /* The ends of a slice come first: where offsets, blocks and chunks begin and end. */
            const size_t choice = per == 1 ? slice % 3 : k;
            if (choice == 0) row = 0;
            if (choice == 1) row = len - 1;
            r[n++] = slice * len + row;
        }
    /* Both ends of the first and the last slice, whatever `per` is. */
    if (slices && len) {
        r[n++] = 0;
        r[n++] = len - 1;
        r[n++] = (slices - 1) * len;
        r[n++] = slices * len - 1;
    }
    qsort(r, n, sizeof *r, compare_size);
    size_t m = 0;
    for (size_t i = 0; i < n; ++i)
        if (m == 0 || r[i] != r[m - 1]) r[m++] = r[i];
    *rows = r;
    return m;
}
