#!/usr/bin/env bash
# One prepared GPU run, well under 8 minutes, from the repository root on the GPU
# machine (Python 3.12, torch + CUDA, onnxruntime CPU-only, no internet):
#
#   here, once:  bench/gpu_pack.sh          (makes .gpu/site.tar.xz and .gpu/shared, ~45 MB)
#   there:       bash bench/gpu.sh          carry: [".gpu/site.tar.xz", ".gpu/shared"]
#
# 1. unpacks the carried packages into /tmp/site (insightface, av, botocore,
#    open_clip_torch, onnx2torch and their small deps; see bench/gpu_pack.sh);
# 2. REKOLAB_REQUIRE_GPU=1 pytest -m gpu (tests/test_gpu.py): CUDA vs CPU parity;
# 3. bench/bench_gpu.py: 1080p faces DEFAULT at 5 samples/s and labels YOLOX + CLIP
#    ViT-B-32 fp16 at 2 samples/s, with GPU utilisation.
# Everything it writes goes to $OUT (default out/gpu): env.txt, pytest_gpu.txt,
# bench_gpu.log, gpu_bench.md (the BENCHMARKS.md "GPU" section), gpu_bench.json.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/out/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
start=$(date +%s)
if [ -f .gpu/site.tar.xz ]; then
  tar -C /tmp -xJf .gpu/site.tar.xz || exit 1
  export PYTHONPATH="/tmp/site:$PWD"
else
  export PYTHONPATH="$PWD"
fi
export REKOLAB_SHARED="${REKOLAB_SHARED:-$PWD/.gpu/shared}"
export REKOLAB_MODEL_DIR="${REKOLAB_MODEL_DIR:-$REKOLAB_SHARED/models}"
export REKOLAB_OFFLINE=1 HF_HUB_OFFLINE=1
# One FFmpeg decoding thread (the CPU default) cannot feed an H200 at 1080p; the GPU run uses 8.
export REKOLAB_DECODE_THREADS="${REKOLAB_DECODE_THREADS:-8}"
{
  nvidia-smi
  python3 -c "import torch, onnxruntime, rekolab, insightface, av, onnx2torch, open_clip; print('torch', torch.__version__, torch.cuda.get_device_name(0)); print('onnxruntime', onnxruntime.__version__, onnxruntime.get_available_providers()); print('rekolab', rekolab.__file__)"
} > "$OUT/env.txt" 2>&1
tail -4 "$OUT/env.txt"
echo "== unpacked in $(( $(date +%s) - start )) s"

timeout 240 env REKOLAB_REQUIRE_GPU=1 python3 -m pytest -m gpu -q -s -p no:cacheprovider tests/test_gpu.py \
  > "$OUT/pytest_gpu.txt" 2>&1
rc_tests=$?
tail -25 "$OUT/pytest_gpu.txt"
echo "== tests rc=$rc_tests at $(( $(date +%s) - start )) s"

timeout 300 python3 bench/bench_gpu.py --out "$OUT" > "$OUT/bench_gpu.log" 2>&1
rc_bench=$?
tail -20 "$OUT/bench_gpu.log"
echo "== bench rc=$rc_bench at $(( $(date +%s) - start )) s" | tee "$OUT/summary.txt"
[ "$rc_tests" -eq 0 ] && [ "$rc_bench" -eq 0 ]
