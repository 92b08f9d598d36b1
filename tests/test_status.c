// SPDX-License-Identifier: Apache-2.0
/* Status codes: every clattn code has its own name, OpenCL codes are named, unknown codes are still described. */
#include "test_util.h"

static void every_clattn_code_has_a_distinct_named_string(void **state) {
    (void)state;
    const char *seen[64] = {0};
    int n = 0;
    for (clattn_status c = CLATTN_ERROR_INVALID_ARGUMENT; c >= CLATTN_ERROR_INVALID_SLOT; --c) {
        const char *s = clattn_status_string(c);
        assert_non_null(s);
        assert_true(strncmp(s, "CLATTN_ERROR_", 13) == 0);
        for (int i = 0; i < n; ++i) assert_string_not_equal(seen[i], s);
        seen[n++] = s;
    }
    assert_int_equal(n, 29);
    assert_string_equal(clattn_status_string(CLATTN_SUCCESS), "CLATTN_SUCCESS: success");
}

static void opencl_codes_pass_through_with_their_names(void **state) {
    (void)state;
    assert_string_equal(clattn_status_string(CL_OUT_OF_RESOURCES), "CL_OUT_OF_RESOURCES");
    assert_string_equal(clattn_status_string(CL_BUILD_PROGRAM_FAILURE), "CL_BUILD_PROGRAM_FAILURE");
    assert_string_equal(clattn_status_string(CL_INVALID_KERNEL_ARGS), "CL_INVALID_KERNEL_ARGS");
    assert_string_equal(clattn_status_string(-1001), "CL_PLATFORM_NOT_FOUND_KHR");
}

static void unknown_codes_are_described_not_null(void **state) {
    (void)state;
    assert_non_null(strstr(clattn_status_string(-999), "OpenCL"));
    assert_non_null(strstr(clattn_status_string(-2047), "CLBlast"));
    assert_non_null(strstr(clattn_status_string(12345), "unknown"));
    assert_non_null(strstr(clattn_status_string(-3999), "unknown"));
}

static void version_function_matches_header(void **state) {
    (void)state;
    assert_int_equal(clattn_version_number(), CLATTN_VERSION_NUMBER);
    assert_string_equal(clattn_version_string(), CLATTN_VERSION_STRING);
}

static void last_error_of_null_context_is_empty(void **state) {
    (void)state;
    assert_string_equal(clattn_context_last_error(NULL), "");
    clattn_context_free(NULL); /* must be a no-op */
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_clattn_code_has_a_distinct_named_string),
        cmocka_unit_test(opencl_codes_pass_through_with_their_names),
        cmocka_unit_test(unknown_codes_are_described_not_null),
        cmocka_unit_test(version_function_matches_header),
        cmocka_unit_test(last_error_of_null_context_is_empty),
    };
    return cmocka_run_group_tests_name("status", tests, NULL, NULL);
}
