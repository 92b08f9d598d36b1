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

clattn_context *test_context(void) {
    char msg[2048] = "";
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.device = test_device_spec();
    o.error_message = msg;
    o.error_message_size = sizeof msg;
    clattn_context *ctx = NULL;
    clattn_status st = clattn_context_create_with_options(&o, &ctx);
    if (st != CLATTN_SUCCESS) fail_msg("cannot create a context: %s: %s", clattn_status_string(st), msg);
    return ctx;
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
