// SPDX-License-Identifier: Apache-2.0
/* Device enumeration and every selection form, including specs that match nothing or cannot be parsed, and joining
 * the caller's own OpenCL context. */
#include "test_util.h"

#include <ctype.h>

static clattn_device_info *list_all(size_t *n) {
    char msg[1024];
    assert_status(clattn_devices_list(NULL, 0, n, msg, sizeof msg), CLATTN_SUCCESS);
    assert_true(*n >= 1);
    clattn_device_info *infos = calloc(*n, sizeof *infos);
    size_t again = 0;
    assert_status(clattn_devices_list(infos, *n, &again, msg, sizeof msg), CLATTN_SUCCESS);
    assert_int_equal(again, *n);
    return infos;
}

static void enumeration_reports_capabilities(void **state) {
    (void)state;
    size_t n = 0;
    clattn_device_info *infos = list_all(&n);
    int defaults = 0;
    for (size_t i = 0; i < n; ++i) {
        const clattn_device_info *d = &infos[i];
        assert_true(strlen(d->name) > 0);
        assert_true(strlen(d->platform_name) > 0);
        assert_non_null(strstr(d->device_version, "OpenCL"));
        assert_true(d->compute_units >= 1);
        assert_true(d->global_mem_bytes > 0);
        assert_true(d->local_mem_bytes > 0);
        assert_true(d->max_work_group_size >= 1);
        assert_true(d->max_work_item_dims >= 3);
        assert_true(d->max_work_item_sizes[0] >= 1);
        assert_true(d->type >= CLATTN_DEVICE_TYPE_OTHER && d->type <= CLATTN_DEVICE_TYPE_ACCELERATOR);
        defaults += d->is_default;
    }
    assert_int_equal(defaults, 1);
    free(infos);
}

static void capacity_smaller_than_count_is_fine(void **state) {
    (void)state;
    clattn_device_info one;
    size_t n = 0;
    assert_status(clattn_devices_list(&one, 1, &n, NULL, 0), CLATTN_SUCCESS);
    assert_true(n >= 1);
    assert_status(clattn_devices_list(NULL, 1, &n, NULL, 0), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_devices_list(&one, 1, NULL, NULL, 0), CLATTN_ERROR_NULL_POINTER);
}

static void default_selection_prefers_gpu_then_accelerator_then_cpu(void **state) {
    (void)state;
    size_t n = 0;
    clattn_device_info *infos = list_all(&n);
    clattn_device_type want = CLATTN_DEVICE_TYPE_OTHER;
    static const clattn_device_type order[] = {CLATTN_DEVICE_TYPE_GPU, CLATTN_DEVICE_TYPE_ACCELERATOR,
                                               CLATTN_DEVICE_TYPE_CPU};
    for (size_t t = 0; t < 3 && want == CLATTN_DEVICE_TYPE_OTHER; ++t)
        for (size_t i = 0; i < n; ++i)
            if (infos[i].type == order[t]) want = order[t];
    unsetenv("CLATTN_DEVICE");
    clattn_device_info sel;
    assert_status(clattn_devices_select(NULL, &sel, NULL, 0), CLATTN_SUCCESS);
    assert_true(sel.is_default);
    assert_int_equal(sel.type, want);
    assert_status(clattn_devices_select("default", &sel, NULL, 0), CLATTN_SUCCESS);
    assert_true(sel.is_default);
    free(infos);
}

static void selection_by_type_index_and_name(void **state) {
    (void)state;
    size_t n = 0;
    clattn_device_info *infos = list_all(&n);
    clattn_device_info sel;
    char msg[2048];
    const clattn_device_info *first = &infos[0];

    /* By type word, case-insensitive and with blanks. */
    const char *type_word = first->type == CLATTN_DEVICE_TYPE_GPU   ? " GPU "
                            : first->type == CLATTN_DEVICE_TYPE_CPU ? "Cpu"
                                                                    : "accelerator";
    assert_status(clattn_devices_select(type_word, &sel, msg, sizeof msg), CLATTN_SUCCESS);
    assert_int_equal(sel.type, first->type);

    /* By P:D for every device. */
    for (size_t i = 0; i < n; ++i) {
        char spec[32];
        snprintf(spec, sizeof spec, "%u:%u", infos[i].platform_index, infos[i].device_index);
        assert_status(clattn_devices_select(spec, &sel, msg, sizeof msg), CLATTN_SUCCESS);
        assert_string_equal(sel.name, infos[i].name);
        assert_int_equal(sel.device_index, infos[i].device_index);
    }

    /* By a case-changed substring of the device name and of the platform name. */
    char part[8];
    size_t len = strlen(first->name) < 5 ? strlen(first->name) : 5;
    for (size_t i = 0; i < len; ++i) part[i] = (char)((i % 2) ? toupper(first->name[i]) : tolower(first->name[i]));
    part[len] = '\0';
    assert_status(clattn_devices_select(part, &sel, msg, sizeof msg), CLATTN_SUCCESS);
    assert_true(strlen(sel.name) > 0);
    assert_status(clattn_devices_select(first->platform_name, &sel, msg, sizeof msg), CLATTN_SUCCESS);
    assert_string_equal(sel.platform_name, first->platform_name);

    /* CLATTN_DEVICE is used when the spec is empty. */
    char spec[32];
    snprintf(spec, sizeof spec, "%u:%u", infos[n - 1].platform_index, infos[n - 1].device_index);
    setenv("CLATTN_DEVICE", spec, 1);
    assert_status(clattn_devices_select("", &sel, msg, sizeof msg), CLATTN_SUCCESS);
    assert_int_equal(sel.device_index, infos[n - 1].device_index);
    unsetenv("CLATTN_DEVICE");
    free(infos);
}

static void spec_matching_nothing_is_a_clear_error(void **state) {
    (void)state;
    clattn_device_info sel;
    char msg[2048] = "";
    assert_status(clattn_devices_select("no-such-device-xyz", &sel, msg, sizeof msg), CLATTN_ERROR_NO_DEVICE);
    assert_non_null(strstr(msg, "no-such-device-xyz"));
    assert_non_null(strstr(msg, "Devices here"));
    assert_status(clattn_devices_select("99:0", &sel, msg, sizeof msg), CLATTN_ERROR_NO_DEVICE);
    assert_status(clattn_devices_select("0:x", &sel, msg, sizeof msg), CLATTN_ERROR_INVALID_DEVICE_SPEC);
    assert_non_null(strstr(msg, "P:D"));

    clattn_context *ctx = (clattn_context *)1;
    char cmsg[2048] = "";
    clattn_context_options o;
    test_context_options(&o, cmsg, sizeof cmsg);
    o.device = "no-such-device-xyz";
    assert_status(clattn_context_create_with_options(&o, &ctx), CLATTN_ERROR_NO_DEVICE);
    assert_null(ctx);
    assert_non_null(strstr(cmsg, "no-such-device-xyz"));
    assert_status(clattn_context_create("", NULL), CLATTN_ERROR_NULL_POINTER);
}

static void context_reports_its_device(void **state) {
    (void)state;
    clattn_context *ctx = test_context();
    clattn_device_info info;
    assert_status(clattn_context_device_info(ctx, &info), CLATTN_SUCCESS);
    assert_true(strlen(info.name) > 0);
    assert_non_null(clattn_context_cl_context(ctx));
    assert_non_null(clattn_context_cl_device(ctx));
    assert_non_null(clattn_context_cl_queue(ctx));
    assert_string_equal(clattn_context_last_error(ctx), "");
    assert_status(clattn_context_device_info(NULL, &info), CLATTN_ERROR_NULL_POINTER);
    assert_status(clattn_context_device_info(ctx, NULL), CLATTN_ERROR_NULL_POINTER);
    clattn_context_free(ctx);
}

static void context_from_callers_opencl_objects(void **state) {
    (void)state;
    clattn_context *owner = test_context();
    cl_context clctx = clattn_context_cl_context(owner);
    cl_device_id dev = clattn_context_cl_device(owner);
    cl_int err;
    cl_command_queue q = clCreateCommandQueue(clctx, dev, CL_QUEUE_PROFILING_ENABLE, &err);
    assert_int_equal(err, CL_SUCCESS);
    clattn_context *joined = NULL;
    assert_status(clattn_context_create_from_cl(clctx, dev, q, NULL, &joined), CLATTN_SUCCESS);
    assert_ptr_equal(clattn_context_cl_queue(joined), q);
    assert_ptr_equal(clattn_context_cl_context(joined), clctx);
    clattn_device_info a, b;
    clattn_context_device_info(owner, &a);
    clattn_context_device_info(joined, &b);
    assert_string_equal(a.name, b.name);
    /* clattn retains what it joins: the caller may release its own references first. */
    clReleaseCommandQueue(q);
    clattn_context_free(owner);
    cl_uint refs = 0;
    assert_int_equal(
        clGetCommandQueueInfo(clattn_context_cl_queue(joined), CL_QUEUE_REFERENCE_COUNT, sizeof refs, &refs, NULL),
        CL_SUCCESS);
    assert_true(refs >= 1);
    clattn_context_free(joined);

    assert_status(clattn_context_create_from_cl(NULL, dev, q, NULL, &joined), CLATTN_ERROR_NULL_POINTER);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(enumeration_reports_capabilities),
        cmocka_unit_test(capacity_smaller_than_count_is_fine),
        cmocka_unit_test(default_selection_prefers_gpu_then_accelerator_then_cpu),
        cmocka_unit_test(selection_by_type_index_and_name),
        cmocka_unit_test(spec_matching_nothing_is_a_clear_error),
        cmocka_unit_test(context_reports_its_device),
        cmocka_unit_test(context_from_callers_opencl_objects),
    };
    return cmocka_run_group_tests_name("device", tests, NULL, NULL);
}
