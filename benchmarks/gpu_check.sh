#!/usr/bin/env bash
# One check of pyrogen on a CUDA machine, within about 8 minutes, printing one JSON summary:
# the CUDA tests, the training throughput (VAE, and the adversarial steps) against hand-written
# loops, and the IS evaluation of a VAE's test split.
#
#   benchmarks/gpu_check.sh WHEELS MNIST_DIR [OUT]
#
# WHEELS: a folder of wheels made beforehand on a machine with a package index by
#   `make gpu-wheels GPU_PY=3.X` (pyrogen and its dependencies except torch, for the GPU
#   machine's Python), because the GPU machine may have torch but no Pyro, no ArviZ and no
#   index. MNIST_DIR: the four MNIST IDX files. OUT: where logs and results go (gpu-check).
set -euo pipefail
WHEELS=${1:?usage: benchmarks/gpu_check.sh WHEELS MNIST_DIR [OUT]}
MNIST=${2:?usage: benchmarks/gpu_check.sh WHEELS MNIST_DIR [OUT]}
OUT=${3:-gpu-check}
mkdir -p "$OUT"
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: this check needs one')"
python -m pip install -q --no-index --find-links "$WHEELS" pyrogen-vi pytest >"$OUT/install.log" 2>&1
start=$(date +%s)

# the tests that need CUDA (they skip on a CPU machine), and mixed precision
timeout 180 python -m pytest -q -p no:randomly -rs -k "cuda or device or precision" tests \
    >"$OUT/tests.log" 2>&1 || true
# throughput: a hand-written loop against pyrogen's recorded loss, --inductor and SVI
timeout 150 python benchmarks/vae_throughput.py --data-dir "$MNIST" --device cuda --steps 300 \
    --rounds 3 >"$OUT/vae_throughput.log" 2>&1 || true
timeout 120 python benchmarks/gan_throughput.py --data-dir "$MNIST" --device cuda --steps 60 \
    --rounds 3 >"$OUT/gan_throughput.log" 2>&1 || true
# the IS evaluation of the whole test split (K = 1000) after one epoch of the MNIST VAE
timeout 120 python -m pyrogen train vae --dataset mnist --data-dir "$MNIST" --epochs 1 \
    --device cuda --no-progress --out "$OUT/vae" >"$OUT/train.log" 2>&1 || true
timeout 90 python -m pyrogen evaluate "$OUT/vae" --iw-samples 1000 --device cuda \
    >"$OUT/evaluate.log" 2>&1 || true

python - "$OUT" "$start" <<'EOF'
import json, sys, time
from pathlib import Path

out, start = Path(sys.argv[1]), float(sys.argv[2])


def last_json(name):
    try:
        return json.loads((out / name).read_text().strip().splitlines()[-1])
    except (OSError, ValueError, IndexError):
        return None


tests = (out / "tests.log").read_text().strip().splitlines() if (out / "tests.log").exists() else []
vae, gan, ev = last_json("vae_throughput.log"), last_json("gan_throughput.log"), last_json("evaluate.log")
import torch
print(json.dumps({
    "device": torch.cuda.get_device_name(0), "torch": torch.__version__,
    "tests": tests[-1] if tests else None,
    "vae_throughput": None if vae is None else {k: v for k, v in vae.items() if "ratio" in k},
    "gan_throughput": None if gan is None else {k: v["ratio_vs_plain"] for k, v in gan["cases"].items()},
    "is_1000_seconds": None if ev is None else ev.get("seconds"),
    "is_1000_nll": None if ev is None else ev.get("nll"),
    "seconds": round(time.time() - start),
}))
EOF
