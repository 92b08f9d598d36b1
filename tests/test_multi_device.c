/* Two devices (CTest runs this with POCL_DEVICES="pthread pthread"): both are listed, each is selected by P:D, and
 * contexts on both compile and keep separate program caches. */
#include "test_util.h"

#include "internal.h"

static void two_devices_are_listed_and_selectable(void **state) {
    (void)state;
    size_t n = 0;
    assert_status(clattn_devices_list(NULL, 0, &n, NULL, 0), CLATTN_SUCCESS);
    assert_true(n >= 2);
    clattn_device_info infos[8];
    assert_status(clattn_devices_list(infos, 8, &n, NULL, 0), CLATTN_SUCCESS);
    assert_int_equal(infos[0].platform_index, infos[1].platform_index);
    assert_int_equal(infos[0].device_index, 0);
    assert_int_equal(infos[1].device_index, 1);
    assert_true(infos[0].is_default);
    assert_false(infos[1].is_default);

    clattn_context *a = NULL, *b = NULL;
    char spec_a[16], spec_b[16];
    snprintf(spec_a, sizeof spec_a, "%u:0", infos[0].platform_index);
    snprintf(spec_b, sizeof spec_b, "%u:1", infos[1].platform_index);
    assert_status(clattn_context_create(spec_a, &a), CLATTN_SUCCESS);
    assert_status(clattn_context_create(spec_b, &b), CLATTN_SUCCESS);
    assert_ptr_not_equal(clattn_context_cl_device(a), clattn_context_cl_device(b));
    clattn_device_info ia, ib;
    clattn_context_device_info(a, &ia);
    clattn_context_device_info(b, &ib);
    assert_int_equal(ia.device_index, 0);
    assert_int_equal(ib.device_index, 1);

    cl_program pa = NULL, pb = NULL;
    assert_status(cla_program_get(a, "common", "-DMULTI=1", &pa), CLATTN_SUCCESS);
    assert_status(cla_program_get(b, "common", "-DMULTI=1", &pb), CLATTN_SUCCESS);
    assert_ptr_not_equal(pa, pb);
    clattn_context_free(a);
    clattn_context_free(b);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(two_devices_are_listed_and_selectable),
    };
    return cmocka_run_group_tests_name("multi_device", tests, NULL, NULL);
}
