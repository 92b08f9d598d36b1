// SPDX-License-Identifier: Apache-2.0
/* The on-disk program cache: compiled binaries keyed by a text that names everything they depend on.
 *
 * Entry layout (little-endian): "CLATTNPC", u32 format version, u32 key length, key bytes, u64 binary length,
 * u64 binary checksum, binary. An entry is trusted only if every field checks out and its key equals the key asked
 * for; anything else is deleted and rebuilt. Writes go to a temporary file that is renamed into place, so readers
 * never see half an entry. Prebuilt binaries (binaries.c) are files of the same format, read by the same code. */
#define _POSIX_C_SOURCE 200809L
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define CACHE_MAGIC          "CLATTNPC"
#define CACHE_FORMAT_VERSION 1u
#define CACHE_MAX_ENTRY      (1024u * 1024u * 1024u) /* no program binary is anywhere near 1 GiB */

static char *join_path(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

/* mkdir -p with mode 0700 for directories it creates. */
static bool make_dirs(char *path) {
    for (char *p = path + 1; *p; ++p) {
        if (*p != '/') continue;
        *p = '\0';
        int rc = mkdir(path, 0700);
        *p = '/';
        if (rc != 0 && errno != EEXIST) return false;
    }
    return mkdir(path, 0700) == 0 || errno == EEXIST;
}

char *cla_disk_cache_dir(const clattn_context *ctx, const cla_env *e) {
    const char *flag = e->cache;
    if (flag && (strcmp(flag, "0") == 0 || strcmp(flag, "off") == 0 || strcmp(flag, "false") == 0)) {
        cla_log(ctx, CLATTN_LOG_DEBUG, "disk program cache disabled by CLATTN_CACHE=%s", flag);
        return NULL;
    }
    char *dir = NULL;
    if (e->cache_dir) {
        dir = cla_strdup(e->cache_dir);
    } else if (e->xdg_cache_home && *e->xdg_cache_home == '/') {
        dir = join_path(e->xdg_cache_home, "clattn");
    } else if (e->home) {
        dir = join_path(e->home, ".cache/clattn");
    } else {
        cla_log(ctx, CLATTN_LOG_WARNING,
                "disk program cache off: neither CLATTN_CACHE_DIR, XDG_CACHE_HOME nor HOME is set");
        return NULL;
    }
    if (!dir) return NULL;
    if (!make_dirs(dir)) {
        cla_log(ctx, CLATTN_LOG_WARNING, "disk program cache off: cannot create %s (%s)", dir, strerror(errno));
        free(dir);
        return NULL;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        cla_log(ctx, CLATTN_LOG_WARNING, "disk program cache off: %s is not a directory", dir);
        free(dir);
        return NULL;
    }
    /* Binaries from a directory others can write could be planted; such a directory is not used. */
    if (st.st_uid != geteuid() || (st.st_mode & (S_IWGRP | S_IWOTH))) {
        cla_log(ctx, CLATTN_LOG_WARNING,
                "disk program cache off: %s is not private to this user (owner or group/other write permission); "
                "run 'chmod 700 %s' or set CLATTN_CACHE_DIR",
                dir, dir);
        free(dir);
        return NULL;
    }
    return dir;
}

static uint64_t checksum(const unsigned char *data, size_t size) {
    cla_hash h;
    cla_hash_init(&h);
    cla_hash_bytes(&h, data, size);
    return h.a ^ (h.b << 1);
}

char *cla_disk_cache_path(const clattn_context *ctx, const char *key) {
    if (!ctx->cache_dir) return NULL;
    char name[CLA_ENTRY_NAME_SIZE];
    cla_entry_file_name(key, name);
    return join_path(ctx->cache_dir, name);
}

static void put_u32(unsigned char *p, uint32_t v) {
    for (int i = 0; i < 4; ++i) p[i] = (unsigned char)(v >> (8 * i));
}
static void put_u64(unsigned char *p, uint64_t v) {
    for (int i = 0; i < 8; ++i) p[i] = (unsigned char)(v >> (8 * i));
}
static uint32_t get_u32(const unsigned char *p) {
    uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}
static uint64_t get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
    return v;
}

/* Reads a whole regular file of at most CACHE_MAX_ENTRY bytes. Returns NULL on success, or why not; *missing tells
 * a file that does not exist from one that cannot be used. The file is opened without blocking and must be a
 * regular file, so that a FIFO or a device planted under an entry's name cannot hang or flood the reader. */
static const char *read_file(const char *path, unsigned char **data, size_t *size, bool *missing) {
    *missing = false;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        *missing = errno == ENOENT || errno == ENOTDIR;
        return "cannot be opened";
    }
    struct stat st;
    const char *problem = NULL;
    unsigned char *buf = NULL;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        problem = "not a regular file";
    else if (st.st_size < 0 || (uint64_t)st.st_size > CACHE_MAX_ENTRY)
        problem = "larger than the 1 GiB any program binary could be";
    else if ((buf = malloc((size_t)st.st_size + 1)) == NULL)
        problem = "out of host memory reading it";
    size_t len = problem ? 0 : (size_t)st.st_size, got = 0;
    while (!problem && got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            problem = "cannot be read (or shrank while being read)";
        else
            got += (size_t)n;
    }
    close(fd);
    if (problem) {
        free(buf);
        return problem;
    }
    *data = buf;
    *size = len;
    return NULL;
}

void cla_entry_file_name(const char *key, char name[CLA_ENTRY_NAME_SIZE]) {
    cla_hash h;
    cla_hash_init(&h);
    cla_hash_string(&h, key);
    cla_hash_hex(&h, name);
    memcpy(name + 32, ".bin", 5);
}

const char *cla_entry_read(const char *path, const char *key, unsigned char **binary, size_t *size, bool *missing) {
    size_t file_size = 0;
    unsigned char *data = NULL;
    const char *problem = read_file(path, &data, &file_size, missing);
    if (problem) return problem;
    const unsigned char *bin = NULL;
    size_t bin_size = 0;
    problem = cla_disk_cache_check_entry(data, file_size, key, &bin, &bin_size);
    unsigned char *copy = NULL;
    if (!problem && (copy = malloc(bin_size)) == NULL) problem = "out of host memory reading it";
    if (!problem) {
        memcpy(copy, bin, bin_size);
        *binary = copy;
        *size = bin_size;
    }
    free(data);
    return problem;
}

int cla_entry_write(const char *path, const char *key, const unsigned char *binary, size_t size,
                    const void *unique) {
    size_t key_len = strlen(key);
    if (size == 0 || key_len > UINT32_MAX) return EINVAL;
    size_t header = 16 + key_len + 16;
    unsigned char *head = malloc(header);
    size_t tmp_len = strlen(path) + 64;
    char *tmp = malloc(tmp_len);
    int result = 0;
    if (!head || !tmp) {
        result = ENOMEM;
        goto out;
    }
    memcpy(head, CACHE_MAGIC, 8);
    put_u32(head + 8, CACHE_FORMAT_VERSION);
    put_u32(head + 12, (uint32_t)key_len);
    memcpy(head + 16, key, key_len);
    put_u64(head + 16 + key_len, size);
    put_u64(head + 24 + key_len, checksum(binary, size));
    /* The process id and the caller's address make the name unique between writers of one file. */
    snprintf(tmp, tmp_len, "%s.%ld.%lx.tmp", path, (long)getpid(), (unsigned long)(uintptr_t)unique);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        result = errno ? errno : EIO;
        goto out;
    }
    bool ok = fwrite(head, 1, header, f) == header && fwrite(binary, 1, size, f) == size;
    if (!ok) result = errno ? errno : EIO;
    if (fclose(f) != 0 && ok) {
        ok = false;
        result = errno ? errno : EIO;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        result = errno ? errno : EIO;
    }
    if (!ok) remove(tmp);
out:
    free(head);
    free(tmp);
    return result;
}

const char *cla_disk_cache_check_entry(const unsigned char *data, size_t size, const char *key,
                                       const unsigned char **binary, size_t *binary_size) {
    size_t key_len = strlen(key);
    if (size < 16 || memcmp(data, CACHE_MAGIC, 8) != 0) return "bad magic or truncated header";
    if (get_u32(data + 8) != CACHE_FORMAT_VERSION) return "other cache format version";
    uint32_t stored_key_len = get_u32(data + 12);
    if (stored_key_len > size - 16) return "truncated key";
    if (stored_key_len != key_len || memcmp(data + 16, key, key_len) != 0) return "key mismatch";
    size_t pos = 16 + (size_t)stored_key_len;
    if (size - pos < 16) return "truncated binary header";
    uint64_t len = get_u64(data + pos);
    uint64_t sum = get_u64(data + pos + 8);
    pos += 16;
    if (len == 0 || len != size - pos) return "binary length does not match the file size";
    if (checksum(data + pos, (size_t)len) != sum) return "checksum mismatch";
    *binary = data + pos;
    *binary_size = (size_t)len;
    return NULL;
}

bool cla_disk_cache_read(clattn_context *ctx, const char *key, unsigned char **binary, size_t *size) {
    if (!ctx->disk_cache_enabled) return false;
    char *path = cla_disk_cache_path(ctx, key);
    if (!path) return false;
    bool missing = false;
    const char *problem = cla_entry_read(path, key, binary, size, &missing);
    if (problem && !missing) {
        cla_log(ctx, CLATTN_LOG_WARNING, "discarding program cache entry %s: %s; rebuilding from source", path,
                problem);
        ctx->stats.disk_rejects++;
        remove(path);
    }
    free(path);
    return problem == NULL;
}

void cla_disk_cache_write(clattn_context *ctx, const char *key, const unsigned char *binary, size_t size) {
    if (!ctx->disk_cache_enabled || size == 0) return;
    char *path = cla_disk_cache_path(ctx, key);
    if (!path) return;
    int err = cla_entry_write(path, key, binary, size, ctx);
    if (err == 0)
        ctx->stats.disk_writes++;
    else
        cla_log(ctx, CLATTN_LOG_WARNING, "cannot write program cache entry %s: %s", path, strerror(err));
    free(path);
}
