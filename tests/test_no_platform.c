// SPDX-License-Identifier: Apache-2.0
/* With no OpenCL platform installed (CTest points OCL_ICD_VENDORS at an empty directory), every entry point gives
 * CLATTN_ERROR_NO_PLATFORM with a message that says what to install, and nothing crashes. */
#include "test_util.h"

static void listing_devices_says_what_to_install(void **state) {
    (void)state;
    size_t n = 99;
    char msg[1024] = "";
    assert_status(clattn_devices_list(NULL, 0, &n, msg, sizeof msg), CLATTN_ERROR_NO_PLATFORM);
    assert_non_null(strstr(msg, "No OpenCL platform"));
    assert_non_null(strstr(msg, "pocl-opencl-icd"));
    clattn_device_info info;
    assert_status(clattn_devices_select("gpu", &info, msg, sizeof msg), CLATTN_ERROR_NO_PLATFORM);
}

static void creating_a_context_fails_cleanly(void **state) {
    (void)state;
    clattn_context *ctx = (clattn_context *)1;
    assert_status(clattn_context_create(NULL, &ctx), CLATTN_ERROR_NO_PLATFORM);
    assert_null(ctx);
    char msg[1024] = "";
    clattn_context_options o;
    clattn_context_options_init(&o);
    o.error_message = msg;
    o.error_message_size = sizeof msg;
    assert_status(clattn_context_create_with_options(&o, &ctx), CLATTN_ERROR_NO_PLATFORM);
    assert_non_null(strstr(msg, "ICD"));
}

int main(void) {
    const char *vendors = getenv("OCL_ICD_VENDORS");
    if (!vendors || !*vendors) {
        fprintf(stderr, "test_no_platform must run with OCL_ICD_VENDORS set to an empty directory (ctest does "
                        "this)\n");
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(listing_devices_says_what_to_install),
        cmocka_unit_test(creating_a_context_fails_cleanly),
    };
    return cmocka_run_group_tests_name("no_platform", tests, NULL, NULL);
}
