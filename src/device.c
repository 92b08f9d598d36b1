// SPDX-License-Identifier: Apache-2.0
/* Platforms and devices: enumeration, capability queries, and selection by a spec string. */
#include "internal.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <threads.h>

#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001
#endif

static void query_string(cl_device_id dev, cl_device_info what, char *out, size_t size) {
    out[0] = '\0';
    if (clGetDeviceInfo(dev, what, size, out, NULL) != CL_SUCCESS) out[0] = '\0';
    out[size - 1] = '\0';
}

static void query_platform_string(cl_platform_id p, cl_platform_info what, char *out, size_t size) {
    out[0] = '\0';
    if (clGetPlatformInfo(p, what, size, out, NULL) != CL_SUCCESS) out[0] = '\0';
    out[size - 1] = '\0';
}

/* Queries a scalar device property; leaves the default when the driver does not answer. */
#define QUERY_SCALAR(dev, what, type, dst)                                                                         \
    do {                                                                                                           \
        type v_;                                                                                                   \
        if (clGetDeviceInfo(dev, what, sizeof v_, &v_, NULL) == CL_SUCCESS) dst = v_;                              \
    } while (0)

/* Whether the space-separated extension list contains `name` as a whole word. */
static bool has_extension(const char *list, const char *name) {
    size_t n = strlen(name);
    for (const char *p = list; (p = strstr(p, name)) != NULL; p += n) {
        bool starts = p == list || p[-1] == ' ';
        bool ends = p[n] == '\0' || p[n] == ' ';
        if (starts && ends) return true;
    }
    return false;
}

clattn_status cla_device_query_info(cl_platform_id platform, cl_device_id device, clattn_device_info *info) {
    memset(info, 0, sizeof *info);
    query_platform_string(platform, CL_PLATFORM_NAME, info->platform_name, sizeof info->platform_name);
    query_platform_string(platform, CL_PLATFORM_VENDOR, info->platform_vendor, sizeof info->platform_vendor);
    query_platform_string(platform, CL_PLATFORM_VERSION, info->platform_version, sizeof info->platform_version);
    query_string(device, CL_DEVICE_NAME, info->name, sizeof info->name);
    query_string(device, CL_DEVICE_VENDOR, info->vendor, sizeof info->vendor);
    query_string(device, CL_DRIVER_VERSION, info->driver_version, sizeof info->driver_version);
    query_string(device, CL_DEVICE_VERSION, info->device_version, sizeof info->device_version);
    query_string(device, CL_DEVICE_OPENCL_C_VERSION, info->opencl_c_version, sizeof info->opencl_c_version);

    cl_device_type type = 0;
    cl_device_local_mem_type lmt = CL_GLOBAL;
    cl_bool compiler = CL_FALSE;
    if (clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL) != CL_SUCCESS) type = 0;
    if (type & CL_DEVICE_TYPE_GPU)
        info->type = CLATTN_DEVICE_TYPE_GPU;
    else if (type & CL_DEVICE_TYPE_ACCELERATOR)
        info->type = CLATTN_DEVICE_TYPE_ACCELERATOR;
    else if (type & CL_DEVICE_TYPE_CPU)
        info->type = CLATTN_DEVICE_TYPE_CPU;
    else
        info->type = CLATTN_DEVICE_TYPE_OTHER;

    QUERY_SCALAR(device, CL_DEVICE_MAX_COMPUTE_UNITS, cl_uint, info->compute_units);
    QUERY_SCALAR(device, CL_DEVICE_MAX_CLOCK_FREQUENCY, cl_uint, info->max_clock_mhz);
    QUERY_SCALAR(device, CL_DEVICE_GLOBAL_MEM_SIZE, cl_ulong, info->global_mem_bytes);
    QUERY_SCALAR(device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, cl_ulong, info->max_alloc_bytes);
    QUERY_SCALAR(device, CL_DEVICE_LOCAL_MEM_SIZE, cl_ulong, info->local_mem_bytes);
    QUERY_SCALAR(device, CL_DEVICE_LOCAL_MEM_TYPE, cl_device_local_mem_type, lmt);
    info->local_mem_is_dedicated = lmt == CL_LOCAL;
    QUERY_SCALAR(device, CL_DEVICE_MAX_WORK_GROUP_SIZE, size_t, info->max_work_group_size);
    QUERY_SCALAR(device, CL_DEVICE_MAX_WORK_ITEM_DIMENSIONS, cl_uint, info->max_work_item_dims);
    size_t sizes[16] = {0};
    cl_uint dims = info->max_work_item_dims < 16 ? info->max_work_item_dims : 16;
    if (dims &&
        clGetDeviceInfo(device, CL_DEVICE_MAX_WORK_ITEM_SIZES, dims * sizeof(size_t), sizes, NULL) == CL_SUCCESS) {
        for (cl_uint i = 0; i < dims && i < 3; ++i) info->max_work_item_sizes[i] = sizes[i];
    }
    QUERY_SCALAR(device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, cl_uint, info->preferred_vector_width_float);
    QUERY_SCALAR(device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_HALF, cl_uint, info->preferred_vector_width_half);
    QUERY_SCALAR(device, CL_DEVICE_NATIVE_VECTOR_WIDTH_FLOAT, cl_uint, info->native_vector_width_float);
    QUERY_SCALAR(device, CL_DEVICE_COMPILER_AVAILABLE, cl_bool, compiler);
    info->compiler_available = compiler == CL_TRUE;

    size_t ext_size = 0;
    if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, 0, NULL, &ext_size) == CL_SUCCESS && ext_size > 0) {
        char *ext = malloc(ext_size + 1);
        if (!ext) return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
        if (clGetDeviceInfo(device, CL_DEVICE_EXTENSIONS, ext_size, ext, NULL) == CL_SUCCESS) {
            ext[ext_size] = '\0';
            info->has_fp16 = has_extension(ext, "cl_khr_fp16");
            info->has_fp64 = has_extension(ext, "cl_khr_fp64");
            info->has_subgroups =
                has_extension(ext, "cl_khr_subgroups") || has_extension(ext, "cl_intel_subgroups");
        }
        free(ext);
    }
    return CLATTN_SUCCESS;
}

/* The default choice: the first GPU, else the first accelerator, else the first CPU, else the first device. */
static size_t default_index(const cla_device_entry *entries, size_t count) {
    static const clattn_device_type order[] = {CLATTN_DEVICE_TYPE_GPU, CLATTN_DEVICE_TYPE_ACCELERATOR,
                                               CLATTN_DEVICE_TYPE_CPU};
    for (size_t t = 0; t < CLA_ARRAY_SIZE(order); ++t)
        for (size_t i = 0; i < count; ++i)
            if (entries[i].info.type == order[t]) return i;
    return 0;
}

/* OpenCL's first calls are not safe to make from several threads at once: the ICD loader (ocl-icd) discovers its
 * drivers lazily and a second thread can see no platform, and drivers set their devices up lazily too (PoCL 3.1
 * crashes in clGetDeviceInfo while another thread initialises). Listing every platform's devices and querying each
 * once, exactly once per process before any enumeration, leaves only read-only queries for concurrent callers. */
static once_flag driver_start_once = ONCE_FLAG_INIT;
static void start_drivers(void) {
    cl_uint nplat = 0;
    if (clGetPlatformIDs(0, NULL, &nplat) != CL_SUCCESS || nplat == 0 || nplat > 64) return;
    cl_platform_id plats[64];
    if (clGetPlatformIDs(nplat, plats, NULL) != CL_SUCCESS) return;
    for (cl_uint p = 0; p < nplat; ++p) {
        cl_uint ndev = 0;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &ndev) != CL_SUCCESS || ndev == 0 || ndev > 64)
            continue;
        cl_device_id devs[64];
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, ndev, devs, NULL) != CL_SUCCESS) continue;
        for (cl_uint d = 0; d < ndev; ++d) {
            char name[256];
            (void)clGetDeviceInfo(devs[d], CL_DEVICE_NAME, sizeof name, name, NULL);
        }
    }
}

clattn_status cla_devices_enumerate(cla_device_entry **entries_out, size_t *count_out, char *message,
                                    size_t message_size) {
    *entries_out = NULL;
    *count_out = 0;
    call_once(&driver_start_once, start_drivers);
    cl_uint nplat = 0;
    cl_int err = clGetPlatformIDs(0, NULL, &nplat);
    if (err == CL_PLATFORM_NOT_FOUND_KHR || (err == CL_SUCCESS && nplat == 0)) {
        cla_write_message(message, message_size,
                          "No OpenCL platform found: the OpenCL ICD loader found no driver. Install one (for CPUs: "
                          "'apt-get install pocl-opencl-icd'; for GPUs: your vendor's OpenCL driver) and check "
                          "that /etc/OpenCL/vendors (or OCL_ICD_VENDORS) lists it.");
        return CLATTN_ERROR_NO_PLATFORM;
    }
    if (err != CL_SUCCESS) {
        cla_write_message(message, message_size, "clGetPlatformIDs failed: %d %s; check the OpenCL driver install",
                          err, cla_cl_error_text(err));
        return err;
    }
    cl_platform_id *plats = calloc(nplat, sizeof *plats);
    if (!plats) {
        cla_write_message(message, message_size, "out of host memory listing %u OpenCL platforms", nplat);
        return CLATTN_ERROR_OUT_OF_HOST_MEMORY;
    }
    clattn_status st = CLATTN_SUCCESS;
    cla_device_entry *entries = NULL;
    size_t count = 0;
    err = clGetPlatformIDs(nplat, plats, NULL);
    if (err != CL_SUCCESS) {
        cla_write_message(message, message_size, "clGetPlatformIDs failed: %d %s; check the OpenCL driver install",
                          err, cla_cl_error_text(err));
        st = err;
        goto done;
    }
    for (cl_uint p = 0; p < nplat; ++p) {
        cl_uint ndev = 0;
        /* A platform with no devices (or one that fails to answer) is skipped, not fatal. */
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, 0, NULL, &ndev) != CL_SUCCESS || ndev == 0) continue;
        cl_device_id *devs = calloc(ndev, sizeof *devs);
        cla_device_entry *grown = realloc(entries, (count + ndev) * sizeof *entries);
        if (!devs || !grown) {
            free(devs);
            if (grown) entries = grown;
            st = CLATTN_ERROR_OUT_OF_HOST_MEMORY;
            goto done;
        }
        entries = grown;
        if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, ndev, devs, NULL) != CL_SUCCESS) {
            free(devs);
            continue;
        }
        for (cl_uint d = 0; d < ndev; ++d) {
            cla_device_entry *e = &entries[count];
            e->platform = plats[p];
            e->device = devs[d];
            st = cla_device_query_info(plats[p], devs[d], &e->info);
            if (st != CLATTN_SUCCESS) {
                free(devs);
                goto done;
            }
            e->info.platform_index = p;
            e->info.device_index = d;
            ++count;
        }
        free(devs);
    }
    if (count == 0) {
        cla_write_message(message, message_size,
                          "OpenCL platforms were found but none has a device. Check the driver installation "
                          "(for PoCL: POCL_DEVICES, if set, must name available device types).");
        st = CLATTN_ERROR_NO_DEVICE;
        goto done;
    }
    entries[default_index(entries, count)].info.is_default = 1;

done:
    free(plats);
    if (st != CLATTN_SUCCESS) {
        free(entries);
        return st;
    }
    *entries_out = entries;
    *count_out = count;
    return CLATTN_SUCCESS;
}

/* Copies spec without surrounding blanks, lowercased, into out; false if it does not fit. */
static bool normalise_spec(const char *spec, char *out, size_t size) {
    while (*spec && isspace((unsigned char)*spec)) ++spec;
    size_t n = strlen(spec);
    while (n > 0 && isspace((unsigned char)spec[n - 1])) --n;
    if (n >= size) return false;
    for (size_t i = 0; i < n; ++i) out[i] = (char)tolower((unsigned char)spec[i]);
    out[n] = '\0';
    return true;
}

/* Parses "P:D" with decimal indices; false if spec has another form. */
static bool parse_index_pair(const char *spec, unsigned long *p, unsigned long *d) {
    char *end = NULL;
    if (!isdigit((unsigned char)spec[0])) return false;
    *p = strtoul(spec, &end, 10);
    if (*end != ':' || !isdigit((unsigned char)end[1])) return false;
    *d = strtoul(end + 1, &end, 10);
    return *end == '\0';
}

const char *clattn_device_type_name(clattn_device_type type) {
    static const char *const names[] = {"other", "gpu", "cpu", "accelerator"}; /* in the order of the enum */
    return (unsigned)type < sizeof names / sizeof names[0] ? names[type] : "other";
}

/* The device types a spec names ("gpu", "all:cpu"). */
static const struct {
    const char *word;
    clattn_device_type type;
} words[] = {{"gpu", CLATTN_DEVICE_TYPE_GPU},
             {"cpu", CLATTN_DEVICE_TYPE_CPU},
             {"accelerator", CLATTN_DEVICE_TYPE_ACCELERATOR},
             {"acc", CLATTN_DEVICE_TYPE_ACCELERATOR}};

/* A one-line list of the devices, for "no match" messages. */
static void describe_devices(const cla_device_entry *entries, size_t count, char *out, size_t size) {
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < count && used + 1 < size; ++i) {
        int n = snprintf(out + used, size - used, "%s%u:%u %s (%s, %s)", i ? "; " : "",
                         entries[i].info.platform_index, entries[i].info.device_index, entries[i].info.name,
                         clattn_device_type_name(entries[i].info.type), entries[i].info.platform_name);
        if (n < 0) break;
        used += (size_t)n;
    }
}

clattn_status cla_devices_pick(const cla_device_entry *entries, size_t count, const char *spec, size_t *index,
                               char *message, size_t message_size) {
    const char *source = "argument";
    if (!spec || !*spec) {
        spec = getenv("CLATTN_DEVICE");
        source = "CLATTN_DEVICE";
    }
    char norm[256];
    if (spec && !normalise_spec(spec, norm, sizeof norm)) {
        cla_write_message(message, message_size, "Device spec from %s is too long (at most 255 characters).",
                          source);
        return CLATTN_ERROR_INVALID_DEVICE_SPEC;
    }
    if (!spec || !norm[0] || strcmp(norm, "default") == 0) {
        *index = default_index(entries, count);
        return CLATTN_SUCCESS;
    }

    bool is_type = false;
    for (size_t w = 0; w < CLA_ARRAY_SIZE(words); ++w) {
        if (strcmp(norm, words[w].word) != 0) continue;
        is_type = true;
        for (size_t i = 0; i < count; ++i)
            if (entries[i].info.type == words[w].type) {
                *index = i;
                return CLATTN_SUCCESS;
            }
    }

    unsigned long p = 0, d = 0;
    bool is_pair = !is_type && parse_index_pair(norm, &p, &d);
    if (is_pair) {
        for (size_t i = 0; i < count; ++i)
            if (entries[i].info.platform_index == p && entries[i].info.device_index == d) {
                *index = i;
                return CLATTN_SUCCESS;
            }
    } else if (!is_type) {
        if (strchr(norm, ':') && isdigit((unsigned char)norm[0])) {
            cla_write_message(message, message_size,
                              "Device spec '%s' (from %s) is not of the form P:D with decimal platform and device "
                              "indices.",
                              spec, source);
            return CLATTN_ERROR_INVALID_DEVICE_SPEC;
        }
        for (size_t i = 0; i < count; ++i)
            if (cla_contains_nocase(entries[i].info.name, norm) ||
                cla_contains_nocase(entries[i].info.platform_name, norm)) {
                *index = i;
                return CLATTN_SUCCESS;
            }
    }
    char list[1024];
    describe_devices(entries, count, list, sizeof list);
    cla_write_message(
        message, message_size,
        "No OpenCL device matches '%s' (from %s). Use gpu, cpu, accelerator, P:D or part of a device or "
        "platform name. Devices here: %s",
        spec, source, list);
    return CLATTN_ERROR_NO_DEVICE;
}

clattn_status clattn_devices_list(clattn_device_info *infos, size_t capacity, size_t *count, char *message,
                                  size_t message_size) {
    if (!count || (capacity > 0 && !infos)) {
        cla_write_message(message, message_size, "%s: count is NULL, or infos is NULL with capacity > 0", __func__);
        return CLATTN_ERROR_NULL_POINTER;
    }
    cla_device_entry *entries = NULL;
    size_t n = 0;
    clattn_status st = cla_devices_enumerate(&entries, &n, message, message_size);
    if (st != CLATTN_SUCCESS) return st;
    for (size_t i = 0; i < n && i < capacity; ++i) infos[i] = entries[i].info;
    *count = n;
    free(entries);
    return CLATTN_SUCCESS;
}

clattn_status clattn_devices_select(const char *spec, clattn_device_info *info, char *message,
                                    size_t message_size) {
    if (!info) {
        cla_write_message(message, message_size, "%s: info is NULL", __func__);
        return CLATTN_ERROR_NULL_POINTER;
    }
    cla_device_entry *entries = NULL;
    size_t n = 0, index = 0;
    clattn_status st = cla_devices_enumerate(&entries, &n, message, message_size);
    if (st != CLATTN_SUCCESS) return st;
    st = cla_devices_pick(entries, n, spec, &index, message, message_size);
    if (st == CLATTN_SUCCESS) *info = entries[index].info;
    free(entries);
    return st;
}

/* ---- several devices in one context ---- */

/* Adds entry `i` to a list selection unless it is there already (a duplicate is an error: the caller asked for
 * one device twice) or on another platform than the first (one cl_context cannot span platforms). */
static clattn_status add_picked(const cla_device_entry *entries, size_t i, const char *spec, size_t *indices,
                                size_t capacity, size_t *picked, char *message, size_t message_size) {
    const clattn_device_info *d = &entries[i].info;
    for (size_t j = 0; j < *picked; ++j)
        if (indices[j] == i) {
            cla_write_message(message, message_size,
                              "Device list '%s' names device %u:%u (%s) twice; name each device once.", spec,
                              d->platform_index, d->device_index, d->name);
            return CLATTN_ERROR_INVALID_DEVICE_SPEC;
        }
    if (*picked > 0 && entries[indices[0]].platform != entries[i].platform) {
        cla_write_message(message, message_size,
                          "Device list '%s' mixes platforms (%s and %s): one context holds devices of one platform "
                          "only. Use one context per device (clattn_context_create(\"P:D\", ...)) for devices of "
                          "different platforms.",
                          spec, entries[indices[0]].info.platform_name, d->platform_name);
        return CLATTN_ERROR_UNSUPPORTED;
    }
    if (*picked == capacity) {
        cla_write_message(message, message_size, "Device list '%s' names more than %zu devices.", spec, capacity);
        return CLATTN_ERROR_INVALID_DEVICE_SPEC;
    }
    indices[(*picked)++] = i;
    return CLATTN_SUCCESS;
}

clattn_status cla_devices_pick_list(const cla_device_entry *entries, size_t count, const char *spec,
                                    size_t *indices, size_t capacity, size_t *picked, char *message,
                                    size_t message_size) {
    *picked = 0;
    char norm[256];
    if (!spec || !normalise_spec(spec, norm, sizeof norm) || !norm[0]) {
        cla_write_message(message, message_size,
                          "Device list '%s' is empty or longer than 255 characters; give \"P:D,P:D\" or \"all\".",
                          spec ? spec : "(null)");
        return CLATTN_ERROR_INVALID_DEVICE_SPEC;
    }
    /* "all" and "all:TYPE": every device of one type on the platform of the first such device. */
    if (strncmp(norm, "all", 3) == 0 && (norm[3] == '\0' || norm[3] == ':')) {
        size_t first = default_index(entries, count);
        if (norm[3] == ':') {
            size_t w = 0;
            while (w < CLA_ARRAY_SIZE(words) && strcmp(norm + 4, words[w].word) != 0) ++w;
            if (w == CLA_ARRAY_SIZE(words)) {
                cla_write_message(message, message_size,
                                  "Device list '%s': after \"all:\" give gpu, cpu or accelerator.", spec);
                return CLATTN_ERROR_INVALID_DEVICE_SPEC;
            }
            first = count;
            for (size_t i = 0; i < count && first == count; ++i)
                if (entries[i].info.type == words[w].type) first = i;
            if (first == count) {
                char list[1024];
                describe_devices(entries, count, list, sizeof list);
                cla_write_message(message, message_size, "No OpenCL device matches '%s'. Devices here: %s", spec,
                                  list);
                return CLATTN_ERROR_NO_DEVICE;
            }
        }
        for (size_t i = 0; i < count; ++i) {
            if (entries[i].platform != entries[first].platform || entries[i].info.type != entries[first].info.type)
                continue;
            clattn_status st = add_picked(entries, i, spec, indices, capacity, picked, message, message_size);
            if (st != CLATTN_SUCCESS) return st;
        }
        return CLATTN_SUCCESS;
    }
    /* A list of single-device specs, each as clattn_context_options.device takes it. */
    for (const char *p = norm; *p;) {
        const char *comma = strchr(p, ',');
        size_t n = comma ? (size_t)(comma - p) : strlen(p);
        char item[256];
        memcpy(item, p, n);
        item[n] = '\0';
        char trimmed[256];
        if (!normalise_spec(item, trimmed, sizeof trimmed) || !trimmed[0]) {
            cla_write_message(message, message_size,
                              "Device list '%s' has an empty item; separate device specs (P:D, gpu, cpu or part of "
                              "a name) with single commas.",
                              spec);
            return CLATTN_ERROR_INVALID_DEVICE_SPEC;
        }
        size_t index = 0;
        clattn_status st = cla_devices_pick(entries, count, trimmed, &index, message, message_size);
        if (st == CLATTN_SUCCESS)
            st = add_picked(entries, index, spec, indices, capacity, picked, message, message_size);
        if (st != CLATTN_SUCCESS) return st;
        p += n;
        if (!cla_list_next(&p)) {
            cla_write_message(message, message_size, "Device list '%s' ends with a comma.", spec);
            return CLATTN_ERROR_INVALID_DEVICE_SPEC;
        }
    }
    return CLATTN_SUCCESS;
}

bool cla_devices_compatible(const clattn_device_info *a, const clattn_device_info *b, char *why, size_t why_size) {
    static const struct {
        const char *what;
        size_t offset;
    } fields[] = {
        {"platform", offsetof(clattn_device_info, platform_name)},
        {"platform version", offsetof(clattn_device_info, platform_version)},
        {"name", offsetof(clattn_device_info, name)},
        {"vendor", offsetof(clattn_device_info, vendor)},
        {"driver version", offsetof(clattn_device_info, driver_version)},
        {"device version", offsetof(clattn_device_info, device_version)},
        {"OpenCL C version", offsetof(clattn_device_info, opencl_c_version)},
    };
    for (size_t i = 0; i < CLA_ARRAY_SIZE(fields); ++i) {
        const char *x = (const char *)a + fields[i].offset, *y = (const char *)b + fields[i].offset;
        if (strcmp(x, y) != 0) {
            cla_write_message(why, why_size, "their %s differs ('%s' and '%s')", fields[i].what, x, y);
            return false;
        }
    }
    if (a->compiler_available != b->compiler_available || a->type != b->type) {
        cla_write_message(why, why_size, "their device type or compiler availability differs");
        return false;
    }
    return true;
}
