// SPDX-License-Identifier: Apache-2.0
/* `clattn devices`: every platform and device with its capabilities, as text or JSON, marking the default. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"

static void print_bytes(char *out, size_t size, uint64_t bytes) {
    static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024.0 && u < 4) {
        v /= 1024.0;
        ++u;
    }
    snprintf(out, size, u ? "%.1f %s" : "%.0f %s", v, units[u]);
}

static const char *yes_no(int v) {
    return v ? "yes" : "no";
}

static void print_text(const clattn_device_info *infos, size_t n, const clattn_device_info *selected) {
    unsigned last_platform = (unsigned)-1;
    for (size_t i = 0; i < n; ++i) {
        const clattn_device_info *d = &infos[i];
        if (d->platform_index != last_platform) {
            printf("Platform %u: %s (%s), %s\n", d->platform_index, d->platform_name, d->platform_vendor,
                   d->platform_version);
            last_platform = d->platform_index;
        }
        char global[32], alloc[32], local[32];
        print_bytes(global, sizeof global, d->global_mem_bytes);
        print_bytes(alloc, sizeof alloc, d->max_alloc_bytes);
        print_bytes(local, sizeof local, d->local_mem_bytes);
        bool is_selected =
            selected && selected->platform_index == d->platform_index && selected->device_index == d->device_index;
        printf("  %c %u:%u  %s%s%s\n", d->is_default ? '*' : ' ', d->platform_index, d->device_index, d->name,
               d->is_default ? "  (default)" : "", is_selected ? "  (selected by CLATTN_DEVICE)" : "");
        printf("        type %s, vendor %s, driver %s\n", clattn_device_type_name(d->type), d->vendor,
               d->driver_version);
        printf("        %s, %s\n", d->device_version, d->opencl_c_version);
        printf("        compute units %u, max clock %u MHz\n", d->compute_units, d->max_clock_mhz);
        printf("        global memory %s (max allocation %s), local memory %s (%s)\n", global, alloc, local,
               d->local_mem_is_dedicated ? "dedicated" : "emulated in global memory");
        printf("        work-group max %zu, item sizes %zu x %zu x %zu\n", d->max_work_group_size,
               d->max_work_item_sizes[0], d->max_work_item_sizes[1], d->max_work_item_sizes[2]);
        printf("        vector width float preferred %u native %u, half preferred %u\n",
               d->preferred_vector_width_float, d->native_vector_width_float, d->preferred_vector_width_half);
        printf("        fp16 arithmetic %s, fp64 %s, subgroups %s, compiler %s\n", yes_no(d->has_fp16),
               yes_no(d->has_fp64), yes_no(d->has_subgroups), yes_no(d->compiler_available));
    }
    printf("\n* = the default selection (first GPU, else accelerator, else CPU); choose another with CLATTN_DEVICE "
           "or --device.\n");
}

static int print_json(const clattn_device_info *infos, size_t n, const clattn_device_info *selected) {
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(root, "devices");
    for (size_t i = 0; i < n; ++i) {
        const clattn_device_info *d = &infos[i];
        cJSON *o = cJSON_CreateObject();
        cJSON_AddNumberToObject(o, "platform_index", d->platform_index);
        cJSON_AddNumberToObject(o, "device_index", d->device_index);
        cJSON_AddStringToObject(o, "platform_name", d->platform_name);
        cJSON_AddStringToObject(o, "platform_vendor", d->platform_vendor);
        cJSON_AddStringToObject(o, "platform_version", d->platform_version);
        cJSON_AddStringToObject(o, "name", d->name);
        cJSON_AddStringToObject(o, "vendor", d->vendor);
        cJSON_AddStringToObject(o, "driver_version", d->driver_version);
        cJSON_AddStringToObject(o, "device_version", d->device_version);
        cJSON_AddStringToObject(o, "opencl_c_version", d->opencl_c_version);
        cJSON_AddStringToObject(o, "type", clattn_device_type_name(d->type));
        cJSON_AddNumberToObject(o, "compute_units", d->compute_units);
        cJSON_AddNumberToObject(o, "max_clock_mhz", d->max_clock_mhz);
        cJSON_AddNumberToObject(o, "global_mem_bytes", (double)d->global_mem_bytes);
        cJSON_AddNumberToObject(o, "max_alloc_bytes", (double)d->max_alloc_bytes);
        cJSON_AddNumberToObject(o, "local_mem_bytes", (double)d->local_mem_bytes);
        cJSON_AddBoolToObject(o, "local_mem_dedicated", d->local_mem_is_dedicated);
        cJSON_AddNumberToObject(o, "max_work_group_size", (double)d->max_work_group_size);
        cJSON *sizes = cJSON_AddArrayToObject(o, "max_work_item_sizes");
        for (unsigned k = 0; k < 3; ++k)
            cJSON_AddItemToArray(sizes, cJSON_CreateNumber((double)d->max_work_item_sizes[k]));
        cJSON_AddNumberToObject(o, "preferred_vector_width_float", d->preferred_vector_width_float);
        cJSON_AddNumberToObject(o, "native_vector_width_float", d->native_vector_width_float);
        cJSON_AddNumberToObject(o, "preferred_vector_width_half", d->preferred_vector_width_half);
        cJSON_AddBoolToObject(o, "fp16", d->has_fp16);
        cJSON_AddBoolToObject(o, "fp64", d->has_fp64);
        cJSON_AddBoolToObject(o, "subgroups", d->has_subgroups);
        cJSON_AddBoolToObject(o, "compiler_available", d->compiler_available);
        cJSON_AddBoolToObject(o, "default", d->is_default);
        cJSON_AddBoolToObject(o, "selected",
                              selected && selected->platform_index == d->platform_index &&
                                  selected->device_index == d->device_index);
        cJSON_AddItemToArray(arr, o);
    }
    char *text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text) return cli_error("devices", CLI_FAILED, "out of memory writing JSON");
    puts(text);
    free(text);
    return CLI_OK;
}

int cmd_devices(int argc, char **argv) {
    cli_option options[] = {
        {"json", NULL, "print JSON instead of text", NULL},
        {"device", "SPEC", "also mark the device that SPEC selects (default: CLATTN_DEVICE)", NULL},
    };
    cli_command cmd = {"devices", "List every OpenCL platform and device with the capabilities clattn uses.",
                       "[--json] [--device SPEC]", options, sizeof options / sizeof options[0]};
    int rc = cli_parse(&cmd, argc, argv);
    if (rc >= 0) return rc;

    char message[2048] = "";
    size_t n = 0;
    clattn_status st = clattn_devices_list(NULL, 0, &n, message, sizeof message);
    clattn_device_info *infos = NULL;
    if (st == CLATTN_SUCCESS) {
        infos = calloc(n, sizeof *infos);
        if (!infos) return cli_error("devices", CLI_FAILED, "out of memory");
        st = clattn_devices_list(infos, n, &n, message, sizeof message);
    }
    if (st != CLATTN_SUCCESS) {
        free(infos);
        return cli_error("devices", CLI_FAILED, "%s\n%s", clattn_status_string(st), message);
    }
    const char *spec = cli_value(&cmd, "device");
    if (!spec) spec = getenv("CLATTN_DEVICE");
    clattn_device_info selected;
    bool have_selected = false;
    if (spec && *spec) {
        st = clattn_devices_select(spec, &selected, message, sizeof message);
        if (st != CLATTN_SUCCESS) {
            free(infos);
            return cli_error("devices", CLI_USAGE, "%s\n%s", clattn_status_string(st), message);
        }
        have_selected = true;
    }
    if (cli_flag(&cmd, "json")) {
        rc = print_json(infos, n, have_selected ? &selected : NULL);
    } else {
        print_text(infos, n, have_selected ? &selected : NULL);
        rc = CLI_OK;
    }
    free(infos);
    return rc;
}
