#!/usr/bin/env bash
# On a machine with a CUDA GPU: train the resnet34 recipe for a few epochs on the real sample in
# bf16 and report training images/s and peak GPU memory (written to bench/RESULTS.md).
# Usage: bash bench/gpu.sh [EPOCHS]   (from the repository root; installs into .venv if needed)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet -e .
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONUNBUFFERED=1 .venv/bin/python bench/gpu.py --epochs "${1:-5}"
