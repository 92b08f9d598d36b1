# SPDX-License-Identifier: Apache-2.0
"""The ctypes mirror of the public C API (include/clattn.h and include/clattn_advanced.h) and the loading of
libclattn. Every structure here copies its C declaration field for field, in order; tests/python/test_layout.py
compiles a C program against the headers and compares every size and offset, so a header change that is not
mirrored here fails the tests instead of corrupting memory."""
from __future__ import annotations

import ctypes
import glob
import os
from ctypes import (POINTER, Structure, c_char, c_char_p, c_double, c_float, c_int, c_int32, c_int64, c_size_t,
                    c_uint, c_uint8, c_uint64, c_void_p)

status_t = c_int32
cl_mem = c_void_p
cl_queue = c_void_p
cl_event = c_void_p
cl_uint = c_uint


class DeviceInfo_(Structure):
    _fields_ = [
        ("platform_index", c_uint),
        ("device_index", c_uint),
        ("platform_name", c_char * 128),
        ("platform_vendor", c_char * 128),
        ("platform_version", c_char * 128),
        ("name", c_char * 128),
        ("vendor", c_char * 128),
        ("driver_version", c_char * 128),
        ("device_version", c_char * 128),
        ("opencl_c_version", c_char * 128),
        ("type", c_int),
        ("compute_units", c_uint),
        ("max_clock_mhz", c_uint),
        ("global_mem_bytes", c_uint64),
        ("max_alloc_bytes", c_uint64),
        ("local_mem_bytes", c_uint64),
        ("local_mem_is_dedicated", c_int),
        ("max_work_group_size", c_size_t),
        ("max_work_item_dims", c_uint),
        ("max_work_item_sizes", c_size_t * 3),
        ("preferred_vector_width_float", c_uint),
        ("preferred_vector_width_half", c_uint),
        ("native_vector_width_float", c_uint),
        ("has_fp16", c_int),
        ("has_fp64", c_int),
        ("has_subgroups", c_int),
        ("compiler_available", c_int),
        ("is_default", c_int),
    ]


LOG_FN = ctypes.CFUNCTYPE(None, c_void_p, c_int, c_char_p)


class ContextOptions(Structure):
    _fields_ = [
        ("device", c_char_p),
        ("enable_profiling", c_int),
        ("log", LOG_FN),
        ("log_user", c_void_p),
        ("max_launch_pairs", c_uint64),
        ("binary_dir", c_char_p),
        ("compile", c_int),
        ("error_message", POINTER(c_char)),
        ("error_message_size", c_size_t),
        ("devices", c_char_p),
    ]


class CacheStats(Structure):
    _fields_ = [(n, c_uint64) for n in ("memory_hits", "disk_hits", "disk_writes", "disk_rejects", "builds",
                                         "binary_loads")]


class MemoryStats(Structure):
    _fields_ = [("last_call_bytes", c_uint64), ("peak_call_bytes", c_uint64)]


class Tensor_(Structure):
    _fields_ = [
        ("buffer", cl_mem),
        ("offset", c_size_t),
        ("dtype", c_int),
        ("size", c_size_t * 4),
        ("stride", c_size_t * 4),
    ]


MAX_MOD_BUFFERS = 2  # CLATTN_MAX_MOD_BUFFERS


class ModBuffer_(Structure):
    _fields_ = [("name", c_char_p), ("buffer", cl_mem), ("dtype", c_int), ("count", c_size_t)]


class ModHostBuffer_(Structure):
    _fields_ = [("name", c_char_p), ("data", c_void_p), ("dtype", c_int), ("count", c_size_t)]


class SdpaDesc(Structure):
    _fields_ = [
        ("scale", c_float),
        ("causal", c_int),
        ("window_left", c_int64),
        ("window_right", c_int64),
        ("window_align", c_int),
        ("impl", c_int),
        ("mask", Tensor_),
        ("key_lengths", cl_mem),
        ("key_lengths_offset", c_size_t),
        ("lse", Tensor_),
        ("weights", Tensor_),
        ("softcap", c_float),
        ("sinks", Tensor_),
        ("alibi_slopes", Tensor_),
        ("score_mod", c_char_p),
        ("mask_mod", c_char_p),
        ("mod_buffers", ModBuffer_ * MAX_MOD_BUFFERS),
        ("block_mask", Tensor_),
        ("block_mask_q", c_size_t),
        ("block_mask_k", c_size_t),
        ("seq_count", c_size_t),
        ("cu_seqlens_q", POINTER(c_int32)),
        ("cu_seqlens_k", POINTER(c_int32)),
        ("block_table", POINTER(c_int32)),
        ("block_table_stride", c_size_t),
        ("seqlens_k", POINTER(c_int32)),
        ("k_scale", Tensor_),
        ("v_scale", Tensor_),
    ]


class SdpaHostDesc(Structure):
    _fields_ = [
        ("batch", c_size_t), ("q_heads", c_size_t), ("kv_heads", c_size_t), ("q_len", c_size_t),
        ("kv_len", c_size_t), ("head_dim", c_size_t), ("v_head_dim", c_size_t),
        ("storage", c_int),
        ("scale", c_float),
        ("causal", c_int),
        ("window_left", c_int64), ("window_right", c_int64),
        ("window_align", c_int),
        ("impl", c_int),
        ("mask", POINTER(c_float)),
        ("bool_mask", POINTER(c_uint8)),
        ("mask_shape", c_size_t * 4),
        ("key_lengths", POINTER(c_int32)),
        ("lse", POINTER(c_float)),
        ("weights", POINTER(c_float)),
        ("softcap", c_float),
        ("sinks", POINTER(c_float)),
        ("alibi_slopes", POINTER(c_float)),
        ("score_mod", c_char_p),
        ("mask_mod", c_char_p),
        ("mod_buffers", ModHostBuffer_ * MAX_MOD_BUFFERS),
        ("block_mask", POINTER(c_int32)),
        ("block_mask_shape", c_size_t * 4),
        ("block_mask_q", c_size_t), ("block_mask_k", c_size_t),
    ]


class KvAppendDesc(Structure):
    _fields_ = [("slot_mapping", POINTER(c_int32)), ("k_scale", Tensor_), ("v_scale", Tensor_)]


class MhaConfig(Structure):
    _fields_ = [(n, c_size_t) for n in ("d_model", "kv_d_model", "heads", "kv_heads", "head_dim", "v_head_dim")]


class MhaWeightsHost(Structure):
    _fields_ = [(n, POINTER(c_float)) for n in ("w_qkv", "b_qkv", "w_q", "w_k", "w_v", "b_q", "b_k", "b_v", "w_o",
                                                "b_o")]


class MhaDesc(Structure):
    _fields_ = [("attention", SdpaDesc), ("residual", c_int), ("cache", c_void_p), ("cache_mode", c_int),
                ("pages", c_void_p)]


class Seq2seqConfig(Structure):
    _fields_ = [("score", c_int), ("query_dim", c_size_t), ("key_dim", c_size_t), ("attn_dim", c_size_t)]


class Seq2seqWeightsHost(Structure):
    _fields_ = [(n, POINTER(c_float)) for n in ("w_q", "w_k", "w", "v", "bias")]


class Seq2seqDesc(Structure):
    _fields_ = [
        ("mask", Tensor_),
        ("key_lengths", cl_mem),
        ("key_lengths_offset", c_size_t),
        ("weights", Tensor_),
        ("key_projection", Tensor_),
    ]


class TuningQuery(Structure):
    _fields_ = [
        ("operation", c_char_p),
        ("head_dim", c_size_t), ("v_head_dim", c_size_t),
        ("dtype", c_int), ("mask", c_int), ("causal", c_int),
        ("q_len", c_size_t), ("kv_len", c_size_t),
        ("batch", c_size_t), ("heads", c_size_t),
    ]


class TuningChoice(Structure):
    _fields_ = [
        ("source", c_int),
        ("params", c_char * 256),
        ("query_class", c_char * 96),
        ("entry_class", c_char * 96),
        ("database", c_char * 1024),
        ("tuned_ms", c_double),
        ("default_ms", c_double),
    ]


# Every mirrored structure, by its C name, for the layout test.
STRUCTS = {
    "clattn_device_info": DeviceInfo_,
    "clattn_context_options": ContextOptions,
    "clattn_cache_stats": CacheStats,
    "clattn_memory_stats": MemoryStats,
    "clattn_tensor": Tensor_,
    "clattn_mod_buffer": ModBuffer_,
    "clattn_sdpa_desc": SdpaDesc,
    "clattn_sdpa_host_desc": SdpaHostDesc,
    "clattn_kv_append_desc": KvAppendDesc,
    "clattn_mha_config": MhaConfig,
    "clattn_mha_weights_host": MhaWeightsHost,
    "clattn_mha_desc": MhaDesc,
    "clattn_seq2seq_config": Seq2seqConfig,
    "clattn_seq2seq_weights_host": Seq2seqWeightsHost,
    "clattn_seq2seq_desc": Seq2seqDesc,
    "clattn_tuning_query": TuningQuery,
    "clattn_tuning_choice": TuningChoice,
}

_P = POINTER
# name: (restype, argtypes). A restype of status_t marks a fallible call.
_SIGNATURES = {
    "clattn_version_number": (c_uint, []),
    "clattn_version_string": (c_char_p, []),
    "clattn_status_string": (c_char_p, [status_t]),
    "clattn_device_type_name": (c_char_p, [c_int]),
    "clattn_devices_list": (status_t, [_P(DeviceInfo_), c_size_t, _P(c_size_t), c_char_p, c_size_t]),
    "clattn_devices_select": (status_t, [c_char_p, _P(DeviceInfo_), c_char_p, c_size_t]),
    "clattn_context_options_init": (None, [_P(ContextOptions)]),
    "clattn_context_create_with_options": (status_t, [_P(ContextOptions), _P(c_void_p)]),
    "clattn_context_create_from_cl": (status_t, [c_void_p, c_void_p, c_void_p, _P(ContextOptions), _P(c_void_p)]),
    "clattn_context_free": (None, [c_void_p]),
    "clattn_context_last_error": (c_char_p, [c_void_p]),
    "clattn_context_device_info": (status_t, [c_void_p, _P(DeviceInfo_)]),
    "clattn_context_device_count": (c_size_t, [c_void_p]),
    "clattn_context_cl_context": (c_void_p, [c_void_p]),
    "clattn_context_cl_device": (c_void_p, [c_void_p]),
    "clattn_context_cl_queue": (c_void_p, [c_void_p]),
    "clattn_context_cache_stats": (status_t, [c_void_p, _P(CacheStats)]),
    "clattn_context_memory_stats": (status_t, [c_void_p, _P(MemoryStats)]),
    "clattn_dtype_size": (c_size_t, [c_int]),
    "clattn_dtype_name": (c_char_p, [c_int]),
    "clattn_dtype_pack": (status_t, [c_int, c_void_p, c_void_p, c_size_t]),
    "clattn_dtype_unpack": (status_t, [c_int, c_void_p, c_void_p, c_size_t]),
    "clattn_quantize_rows": (status_t, [c_int, c_void_p, c_size_t, c_size_t, c_void_p, c_void_p]),
    "clattn_sdpa_desc_init": (None, [_P(SdpaDesc)]),
    "clattn_sdpa": (status_t, [c_void_p, _P(SdpaDesc), _P(Tensor_), _P(Tensor_), _P(Tensor_), _P(Tensor_),
                               c_void_p, cl_uint, c_void_p, c_void_p]),
    "clattn_sdpa_host_desc_init": (None, [_P(SdpaHostDesc)]),
    "clattn_kv_append_desc_init": (None, [_P(KvAppendDesc)]),
    "clattn_kv_append": (status_t, [c_void_p, _P(KvAppendDesc), _P(Tensor_), _P(Tensor_), _P(Tensor_), _P(Tensor_),
                                    c_void_p, cl_uint, c_void_p, c_void_p]),
    "clattn_mha_weights_host_init": (None, [_P(MhaWeightsHost)]),
    "clattn_mha_weights_create": (status_t, [c_void_p, _P(MhaConfig), _P(MhaWeightsHost), _P(c_void_p)]),
    "clattn_mha_weights_free": (None, [c_void_p]),
    "clattn_mha_weights_config": (status_t, [c_void_p, _P(MhaConfig)]),
    "clattn_kv_cache_create": (status_t, [c_void_p, _P(MhaConfig), c_size_t, c_size_t, _P(c_void_p)]),
    "clattn_kv_cache_free": (None, [c_void_p]),
    "clattn_kv_cache_reset": (None, [c_void_p]),
    "clattn_kv_cache_length": (c_size_t, [c_void_p]),
    "clattn_kv_cache_capacity": (c_size_t, [c_void_p]),
    "clattn_kv_cache_truncate": (status_t, [c_void_p, c_size_t]),
    "clattn_kv_cache_tensors": (status_t, [c_void_p, _P(Tensor_), _P(Tensor_)]),
    "clattn_mha_desc_init": (None, [_P(MhaDesc)]),
    "clattn_mha": (status_t, [c_void_p, c_void_p, _P(MhaDesc), _P(Tensor_), _P(Tensor_), _P(Tensor_), c_void_p,
                              cl_uint, c_void_p, c_void_p]),
    "clattn_seq2seq_weights_create": (status_t, [c_void_p, _P(Seq2seqConfig), _P(Seq2seqWeightsHost),
                                                 _P(c_void_p)]),
    "clattn_seq2seq_weights_free": (None, [c_void_p]),
    "clattn_seq2seq_desc_init": (None, [_P(Seq2seqDesc)]),
    "clattn_seq2seq_project_keys": (status_t, [c_void_p, c_void_p, _P(Tensor_), _P(Tensor_), c_void_p, cl_uint,
                                               c_void_p, c_void_p]),
    "clattn_seq2seq_attention": (status_t, [c_void_p, c_void_p, _P(Seq2seqDesc), _P(Tensor_), _P(Tensor_),
                                            _P(Tensor_), _P(Tensor_), c_void_p, cl_uint, c_void_p, c_void_p]),
    "clattn_tuning_query_init": (None, [_P(TuningQuery)]),
    "clattn_tuning_lookup": (status_t, [c_void_p, _P(TuningQuery), _P(TuningChoice)]),
    "clattn_tuning_source_name": (c_char_p, [c_int]),
    "clattn_context_set_kernel_params": (status_t, [c_void_p, c_char_p, c_char_p]),
}


def native_dir() -> str:
    """The folder that holds the shipped libclattn and clattn program (CLATTN_LIBRARY_DIR overrides it, for a
    development build)."""
    return os.environ.get("CLATTN_LIBRARY_DIR") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "_native")


def _find_library() -> str:
    folder = native_dir()
    names = sorted(glob.glob(os.path.join(folder, "libclattn.so*")) + glob.glob(os.path.join(folder,
                                                                                              "libclattn*.dylib")))
    if not names:
        raise ImportError(f"clattn: no libclattn in {folder}; install the package with `pip install .` from the "
                          "repository root (or point CLATTN_LIBRARY_DIR at a folder holding libclattn.so)")
    return names[0]


def _load() -> ctypes.CDLL:
    path = _find_library()
    try:
        lib = ctypes.CDLL(path)
    except OSError as e:
        raise ImportError(f"clattn: cannot load {path}: {e}. The library needs the OpenCL ICD loader, CLBlast and "
                          "cJSON (Debian: apt-get install ocl-icd-libopencl1 libclblast1 libcjson1, or "
                          "tools/scripts/setup-deps.sh)") from e
    for name, (restype, argtypes) in _SIGNATURES.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


lib = _load()

SUCCESS = 0
ERROR_NO_PLATFORM = -3011
DTYPE_F32, DTYPE_F16, DTYPE_BF16, DTYPE_BOOL = 0, 1, 2, 3
DTYPE_I8, DTYPE_FP8_E4M3 = 4, 5  # 8-bit keys and values, read with their scales (clattn_sdpa_desc.k_scale)
DTYPE_I32 = 6  # int32 flags of a block mask (clattn_sdpa_desc.block_mask)
MOD_F32, MOD_I32 = 0, 1  # clattn_mod_dtype: how score_mod / mask_mod read a buffer
CAUSAL_NONE, CAUSAL_TOP_LEFT, CAUSAL_BOTTOM_RIGHT = 0, 1, 2
WINDOW_ALIGN_DEFAULT, WINDOW_ALIGN_TOP_LEFT, WINDOW_ALIGN_BOTTOM_RIGHT = 0, 1, 2  # clattn_window_align
IMPL_AUTO, IMPL_FUSED, IMPL_UNFUSED = 0, 1, 2
WINDOW_UNBOUNDED = -1


def status_string(status: int) -> str:
    return lib.clattn_status_string(status).decode("utf-8", "replace")
