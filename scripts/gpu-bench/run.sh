#!/usr/bin/env bash
# GPU benchmark: opf (CubeCL CUDA backend) vs PyTorch eager on the same card, BERT-base shapes,
# dense and OPF fine-tuning steps plus merged-model inference. Runs from a bundle built on any
# machine by `cargo xtask gpu-bundle` (no cargo, no internet needed here; PyTorch must be
# installed for the reference). Takes a few minutes on an H100.
#
#   dist/gpu-bench/run.sh                        # or scripts/gpu-bench/run.sh [BUNDLE_DIR]
#   STEPS=20 ARCH=bert-base VARIANTS=dense,balanced:5/all,opf:15/ffn scripts/gpu-bench/run.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# The bundle: the argument, else this folder when run from dist/gpu-bench, else dist/gpu-bench.
if [ -n "${1:-}" ]; then bundle=$1
elif [ -x "$here/opf-cuda" ]; then bundle=$here
else bundle=$here/../../dist/gpu-bench
fi
steps=${STEPS:-20}
arch=${ARCH:-bert-base}
variants=${VARIANTS:-dense,balanced:5/all,opf:5/ffn,opf:15/ffn}
out=${OUT:-$(mktemp -d)}
python=${PYTHON:-python3}

if [ ! -x "$bundle/opf-cuda" ]; then
  echo "no $bundle/opf-cuda: build the bundle with \`cargo xtask gpu-bundle\` first" >&2
  exit 2
fi
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
"$bundle/opf-cuda" --version
"$bundle/opf-cuda" bench steps --device cuda --arch "$arch" --steps "$steps" --warmup 5 \
  --variants "$variants" --json > "$out/opf-cuda.json"
"$python" "$here/torch_steps.py" --device cuda --arch "$arch" --steps "$steps" --warmup 5 \
  --opf "$out/opf-cuda.json" | tee "$out/table.txt"
echo "raw results in $out"
