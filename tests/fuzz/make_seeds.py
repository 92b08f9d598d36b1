#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Writes the seed corpora of the fuzz targets in tests/fuzz/corpus/<target>/: small valid inputs, so that the
fuzzer starts from the interesting part of the input space, and near misses (truncated, one field off) that sit
right at the edges the checks must hold. The committed corpora were made by this script; rerun it after changing
an input layout:

    /usr/bin/python3 tests/fuzz/make_seeds.py

Needs numpy (Debian's python3-numpy) for the .npy seeds; everything else is written byte by byte from the format
descriptions in src/disk_cache.c and tests/fuzz/fuzz_sdpa_args.c."""

import io
import math
import os
import shutil
import struct
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")


def write_corpus(target, seeds):
    directory = os.path.join(CORPUS, target)
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory)
    for name, data in seeds.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
    print(f"{target}: {len(seeds)} seeds, {sum(len(d) for d in seeds.values())} bytes")


# ---- .npy files -------------------------------------------------------------------------------------------------


def npy_bytes(array, version=None):
    buf = io.BytesIO()
    if version is None:
        np.save(buf, array, allow_pickle=False)
    else:
        np.lib.format.write_array(buf, array, version=version, allow_pickle=False)
    return buf.getvalue()


def npy_by_hand(header, data=b"", version=1):
    """A file with a header dict of our choosing (numpy would refuse to write the broken ones)."""
    text = header.encode() + b"\n"
    length = struct.pack("<H", len(text)) if version == 1 else struct.pack("<I", len(text))
    return b"\x93NUMPY" + bytes([version, 0]) + length + text + data


def npy_seeds():
    rng = np.random.default_rng(7)
    s = {}
    s["f32_2x3.npy"] = npy_bytes(rng.uniform(-2, 2, (2, 3)).astype("<f4"))
    s["f16_specials.npy"] = npy_bytes(np.array([0, -0.0, 1, 65504, 6e-8, np.inf, -np.inf, np.nan], "<f2"))
    s["f64_scalar.npy"] = npy_bytes(np.array(3.5e300, "<f8"))
    s["bool_2x2.npy"] = npy_bytes(np.array([[True, False], [False, True]]))
    s["u8_3.npy"] = npy_bytes(np.arange(3, dtype="|u1"))
    s["i32_2.npy"] = npy_bytes(np.array([7, -1], "<i4"))
    s["i64_1x1.npy"] = npy_bytes(np.array([[2**40]], "<i8"))
    s["f32_empty_0x3.npy"] = npy_bytes(np.zeros((0, 3), "<f4"))
    s["f32_8dims.npy"] = npy_bytes(np.zeros((1,) * 8, "<f4"))
    s["f32_v2.npy"] = npy_bytes(np.ones(2, "<f4"), version=(2, 0))
    s["f32_v3_by_hand.npy"] = npy_by_hand("{'descr': '<f4', 'fortran_order': False, 'shape': (1,), }",
                                          b"\0\0\x80\x3f", version=3)
    s["double_quotes_long.npy"] = npy_by_hand('{"descr": "<f4", "fortran_order": False, "shape": (1L, 2L)}',
                                              b"\0" * 8)
    # Near misses: each is one step from a valid file.
    good = s["f32_2x3.npy"]
    s["bad_truncated_data.npy"] = good[:-1]
    s["bad_extra_byte.npy"] = good + b"\0"
    s["bad_truncated_header.npy"] = good[:40]
    s["bad_magic.npy"] = b"\x93NUMPZ" + good[6:]
    s["bad_version.npy"] = good[:6] + b"\x04\x00" + good[8:]
    s["bad_fortran.npy"] = npy_bytes(np.asfortranarray(np.zeros((2, 2), "<f4")))
    s["bad_big_endian.npy"] = npy_bytes(np.zeros(2, ">f4"))
    s["bad_9dims.npy"] = npy_by_hand("{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1), }",
                                     b"\0" * 4)
    s["bad_overflow_shape.npy"] = npy_by_hand(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 0), }")
    s["bad_negative_dim.npy"] = npy_by_hand("{'descr': '<f4', 'fortran_order': False, 'shape': (-1,), }")
    s["bad_duplicate_key.npy"] = npy_by_hand("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, "
                                             "'shape': (), }", b"\0" * 4)
    s["bad_structured.npy"] = npy_by_hand("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (), }")
    s["bad_unterminated.npy"] = npy_by_hand("{'descr': '<f4', 'fortran_order': False, 'shape': (1,")
    s["bad_tiny_header.npy"] = b"\x93NUMPY\x01\x00\x02\x00{\n"
    s["bad_empty.npy"] = b""
    return s


# ---- program-cache entries ------------------------------------------------------------------------------------

# The key of tests/fuzz/fuzz_cache_entry.c's whole-input check.
FIXED_KEY = b"clattn-fuzz-key sdpa_fused -DHEAD_DIM=64 platform=Portable Computing Language device=cpu"
M64 = (1 << 64) - 1
FNV_PRIME = 0x100000001B3


def entry_checksum(data):
    """The checksum of src/disk_cache.c: two FNV-1a lanes (src/hash.c), the second over rotated bytes."""
    a, b = 0xCBF29CE484222325, 0x84222325CBF29CE4
    for byte in data:
        a = ((a ^ byte) * FNV_PRIME) & M64
        b = ((b ^ (((byte << 3) | (byte >> 5)) & 0xFF)) * FNV_PRIME) & M64
        b ^= b >> 29
    return a ^ ((b << 1) & M64)


def cache_entry(key, binary, version=1, key_len=None, bin_len=None, checksum=None):
    return (b"CLATTNPC" + struct.pack("<II", version, len(key) if key_len is None else key_len) + key +
            struct.pack("<QQ", len(binary) if bin_len is None else bin_len,
                        entry_checksum(binary) if checksum is None else checksum) + binary)


def cache_seeds():
    binary = b"\x7fELF\x02\x01\x01" + bytes(range(41))
    good = cache_entry(FIXED_KEY, binary)
    s = {
        "valid_fixed_key": good,
        "valid_one_byte": cache_entry(FIXED_KEY, b"\x00"),
        # Split at the first NUL into a key and an entry: the fuzzer chooses the key too.
        "valid_own_key": b"short key\0" + cache_entry(b"short key", binary),
        "valid_empty_key": b"\0" + cache_entry(b"", b"bin"),
        "bad_truncated_binary": good[:-1],
        "bad_extra_byte": good + b"\0",
        "bad_truncated_key": good[:16 + len(FIXED_KEY) - 1],
        "bad_truncated_binary_header": good[:16 + len(FIXED_KEY) + 15],
        "bad_header_only": good[:16],
        "bad_version": cache_entry(FIXED_KEY, binary, version=2),
        "bad_key_len_huge": cache_entry(FIXED_KEY, binary, key_len=0xFFFFFFFF),
        "bad_bin_len_huge": cache_entry(FIXED_KEY, binary, bin_len=M64),
        "bad_bin_len_zero": cache_entry(FIXED_KEY, b""),
        "bad_checksum": cache_entry(FIXED_KEY, binary, checksum=entry_checksum(binary) ^ 1),
        "bad_other_key": cache_entry(FIXED_KEY[:-1] + b"X", binary),
        "bad_own_key_longer": b"short\0" + cache_entry(b"short key", binary),
    }
    return s


# ---- attention calls (the input layout of tests/fuzz/fuzz_sdpa_args.c) ------------------------------------------

HAS_MASK, HAS_KEY_LENGTHS, HAS_LSE, HAS_WEIGHTS = 1, 2, 4, 8
HAS_QUEUE, FOREIGN_QUEUE, HAS_WAIT, NULL_WAIT_LIST = 16, 32, 64, 128
F32, F16, BF16, BOOL = 0, 1, 2, 3
# Buffers of the target: index -> bytes (7 belongs to another OpenCL context, 0 is NULL).
BUF_NULL, BUF_4, BUF_64, BUF_1K, BUF_4K, BUF_4K2, BUF_64K, BUF_FOREIGN = range(8)
SMAX = (1 << 64) - 1
BOUNDARY = [0, 1, 2, 3, 255, 256, 257, 4096, 16384, 65535, 65536, (2**31 - 1) // 2, (2**31 - 1) // 2 + 1, 2**31 - 1,
            2**31, 2**32 - 1, 2**32, SMAX // 1024, SMAX // 16, SMAX // 8, SMAX // 4 - 1, SMAX // 4, SMAX // 4 + 1,
            SMAX // 3 + 1, SMAX // 2, SMAX // 2 + 1, 2**62 + 1, 2**63, 2**63 + 1, SMAX - 3, SMAX - 1, SMAX]


def size(v):
    if v < 64:
        return bytes([v])
    if v < 65536:
        return bytes([0x80]) + struct.pack("<H", v)
    if v in BOUNDARY:
        return bytes([0xC0 + BOUNDARY.index(v)])
    return bytes([0xE0]) + struct.pack("<Q", v)


def window(w):
    if w == -1:
        return b"\x00"
    if 0 <= w < 128:
        return bytes([0x40 + w])
    return b"\xf0" + struct.pack("<q", w)


def scale(x):
    if x is None or math.isnan(x):
        return b"\x00"
    if math.isinf(x):
        return b"\x01" if x > 0 else b"\x02"
    return b"\x80" + struct.pack("<f", x)


def view(buf, dtype, mode=0, zero_dim=0, perturb=None, offset=None, strides=None):
    """mode 0: [B,H,L,D] contiguous, 1: [B,L,H,D], 2: explicit strides, 3: contiguous with stride[zero_dim] = 0."""
    layout = mode | (zero_dim << 4)
    tail = b""
    if perturb is not None:
        layout |= 4 | (perturb[0] << 6)
        tail += size(perturb[1])
    if offset is not None:
        layout |= 8
        tail += size(offset)
    if mode == 2:
        tail += b"".join(size(s) for s in strides)
    return bytes([buf, dtype, layout]) + tail


def call(flags=0, causal=0, impl=0, left=-1, right=-1, sc=None, shape=(1, 2, 2, 4, 4, 8, 8), q=None, k=None, v=None,
         out=None, mask=None, key_lengths=None, lse=None, weights=None):
    """shape: B, Hq, Hkv, Lq, Lk, Dk, Dv. mask: (broadcast bits, view bytes); key_lengths: (buffer, offset)."""
    data = bytes([flags, causal, impl]) + window(left) + window(right) + scale(sc)
    data += b"".join(size(s) for s in shape)
    data += (q or view(BUF_64K, F32)) + (k or view(BUF_64K, F32)) + (v or view(BUF_64K, F32))
    data += out or view(BUF_4K, F32)
    if flags & HAS_MASK:
        data += bytes([mask[0]]) + mask[1]
    if flags & HAS_KEY_LENGTHS:
        data += bytes([key_lengths[0]]) + size(key_lengths[1])
    if flags & HAS_LSE:
        data += lse
    if flags & HAS_WEIGHTS:
        data += weights
    return data


def sdpa_seeds():
    B, Hq, Hkv, Lq, Lk, D = 1, 2, 2, 4, 4, 8
    everything = HAS_MASK | HAS_KEY_LENGTHS | HAS_LSE | HAS_WEIGHTS | HAS_QUEUE | HAS_WAIT
    s = {
        # Accepted calls.
        "valid_plain": call(),
        "valid_f16_blhd_gqa": call(shape=(2, 4, 2, 3, 5, 16, 16), q=view(BUF_64K, F16, 1),
                                   k=view(BUF_64K, BF16, 1), v=view(BUF_64K, F16), out=view(BUF_4K, F16, 1)),
        "valid_everything": call(flags=everything, causal=2, impl=2, left=2, right=0, sc=0.125,
                                 mask=(3, view(BUF_1K, BOOL)), key_lengths=(BUF_64, 3),
                                 lse=view(BUF_4K, F32, offset=512), weights=view(BUF_4K, F32, offset=256)),
        "valid_broadcast_inputs": call(flags=HAS_MASK, q=view(BUF_64K, F32, 3, zero_dim=1),
                                       k=view(BUF_64, F32, 2, strides=(0, 0, 0, 1)),
                                       mask=(1, view(BUF_1K, F16, 3, zero_dim=1))),
        "valid_empty_batch": call(flags=HAS_KEY_LENGTHS | HAS_LSE, shape=(0, 2, 2, 4, 4, 8, 8),
                                  key_lengths=(BUF_4, 0), lse=view(BUF_4, F32)),
        "valid_no_keys": call(shape=(1, 2, 1, 4, 0, 8, 8), causal=1),
        "valid_kv_fill_64k": call(shape=(1, 1, 1, 1, 2048, 8, 8), q=view(BUF_64, F32)),
        # Near misses: each breaks one rule by the smallest step.
        "bad_out_overlaps_q": call(q=view(BUF_4K, F32, offset=(B * Hq * Lq * D) - 1), out=view(BUF_4K, F32)),
        "bad_one_past_end": call(shape=(1, 1, 1, 1, 1, 1, 1), out=view(BUF_4K2, F32, offset=1024)),
        "bad_out_aliases": call(out=view(BUF_4K, F32, 3, zero_dim=2)),
        "bad_out_strides_overlap": call(out=view(BUF_4K, F32, 2, strides=(64, 32, 7, 1))),
        "bad_lse_overlaps_weights": call(flags=HAS_LSE | HAS_WEIGHTS, impl=0, lse=view(BUF_4K2, F32),
                                         weights=view(BUF_4K2, F32)),
        "bad_foreign_buffer": call(k=view(BUF_FOREIGN, F32)),
        "bad_foreign_queue": call(flags=HAS_QUEUE | FOREIGN_QUEUE),
        "bad_wait_list_null": call(flags=HAS_WAIT | NULL_WAIT_LIST),
        "bad_scale_inf": call(sc=float("inf")),
        "bad_heads": call(shape=(1, 3, 2, 4, 4, 8, 8)),
        "bad_head_dim": call(shape=(1, 1, 1, 1, 1, 257, 8)),
        "bad_stride_overflow": call(shape=(3, 2, 2, 4, 4, 8, 8),
                                    q=view(BUF_64K, F32, 2, strides=(SMAX // 2 + 1, 32, 8, 1))),
        "bad_offset_overflow": call(q=view(BUF_64K, F32, offset=SMAX // 4 + 1)),
        "bad_key_lengths_short": call(flags=HAS_KEY_LENGTHS, shape=(2, 1, 1, 1, 1, 1, 1), key_lengths=(BUF_4, 0)),
        "bad_key_lengths_offset": call(flags=HAS_KEY_LENGTHS, key_lengths=(BUF_64, SMAX // 4)),
        "bad_mask_dtype": call(flags=HAS_MASK, mask=(0, bytes([BUF_1K, 0xFC, 0]))),
        "bad_window": call(left=-2),
        "bad_causal_enum": call(causal=0xF8),
        # Every view empty, and B * 4 bytes of key lengths one step from wrapping around.
        "bad_huge_batch_no_heads": call(flags=HAS_KEY_LENGTHS, shape=(SMAX // 4, 0, 0, 1, 1, 1, 1),
                                        key_lengths=(BUF_64, 0)),
    }
    return s


def sdpa_regressions():
    """Calls the validator once accepted although they break its rules (see tests/fuzz/README.md)."""
    return {
        # key_lengths is never checked against the context: a buffer of another cl_context passes.
        "key_lengths_foreign_context": call(flags=HAS_KEY_LENGTHS, key_lengths=(BUF_FOREIGN, 0)),
        # Every view empty (no heads), B = 2^62: B * 4 bytes of key lengths wraps around to 0 and passes.
        "key_lengths_size_wraps": call(flags=HAS_KEY_LENGTHS, shape=(SMAX // 4 + 1, 0, 0, 1, 1, 1, 1),
                                       key_lengths=(BUF_64, 0)),
    }


def write_regressions(target, inputs):
    """Reproducers are kept (never deleted here): tools/scripts/fuzz.sh replays every file in the directory."""
    directory = os.path.join(HERE, "regressions", target)
    os.makedirs(directory, exist_ok=True)
    for name, data in inputs.items():
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)


# ---- tuning databases -------------------------------------------------------------------------------------------


def tuning_seeds():
    """Databases as src/tuning/tuning_db.c's format comment describes them: valid ones (exact, wildcard and decode entries,
    an unknown operation) and near misses one field away from valid."""
    h = "0123456789abcdef0123456789abcdef"

    def entry(cls, params, op="sdpa_fused", hash_=h, extra=""):
        return '{"op":"%s","source_hash":"%s","class":%s,"params":%s%s}' % (op, hash_, cls, params, extra)

    def db(entries, head='"format":1,"platform":"Portable Computing Language","device":"cpu","driver":"6.0"'):
        return ("{%s,\"entries\":[%s]}" % (head, ",".join(entries))).encode()

    exact = ('{"phase":"prefill","head_dim":64,"seq":1024,"dtype":"f32","causal":false,"mask":"none"}',
             '{"variant":"cpu","rows":24,"block_n":48,"wg":1,"local":0,"splits":0}')
    return {
        "empty_entries": db([]),
        "exact": db([entry(*exact, extra=',"ms":1.5,"default_ms":2.25')]),
        "device_default": db([entry('{"phase":"prefill"}', '{"variant":"tiled","rows":4,"block_n":16,"wg":8}')]),
        "wildcard": db([entry("{}", "{}")]),
        "decode_splits": db([entry('{"phase":"decode","head_dim":128,"seq":4096,"dtype":"f16","causal":true,'
                                   '"mask":"bool"}', '{"variant":"tiled","rows":1,"block_n":32,"wg":64,"local":1,'
                                   '"splits":4}')]),
        "unknown_op": db([entry("{}", '{"x":1}', op="additive")]),
        "several": db([entry(*exact), entry('{"phase":"decode"}', '{"rows":1}'), entry(*exact, hash_="f" * 32)]),
        "bad_format": db([], head='"format":2,"platform":"p","device":"d","driver":"v"'),
        "bad_hash": db([entry(*exact, hash_="XYZ")]),
        "bad_seq": db([entry('{"seq":1000}', "{}")]),
        "bad_param": db([entry("{}", '{"rows":-1}')]),
        "truncated": db([entry(*exact)])[:-7],
        "not_json": b"variant=cpu,rows=24",
    }


def main():
    if len(sys.argv) > 1:
        sys.exit(__doc__)
    write_corpus("fuzz_npy", npy_seeds())
    write_corpus("fuzz_cache_entry", cache_seeds())
    write_corpus("fuzz_sdpa_args", sdpa_seeds())
    write_corpus("fuzz_tuning_db", tuning_seeds())
    write_regressions("fuzz_npy", {"read_regular_header_shorter_than_prefix.npy": b"\x93NUMPY\x01\x00\x01\x00\nX"})
    write_regressions("fuzz_sdpa_args", sdpa_regressions())


if __name__ == "__main__":
    main()
