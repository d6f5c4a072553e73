#!/usr/bin/env bash
# The checks that need a CUDA GPU, in one go: the GPU tests (tests/test_cuda.py, tests/metrics/test_devices.py)
# and benchmarks/bench_cuda.py (with the official SC-GAN when OFFICIAL names its checkout).
#
#   OUT=/tmp/cuda-check OFFICIAL=/tmp/scgan_official bash benchmarks/cuda_check.sh
#
# Writes pytest.log, bench.log and bench_cuda.json (and bench_cudnn_benchmark.*) under $OUT. Each stage has its own
# time limit and the next one runs whatever the last gave; the exit status is that of the tests.
set -u -o pipefail
OUT=${OUT:-/tmp/cuda-check}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"
$PY -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())" \
    | tee -a "$OUT/gpu.txt"
timeout "${TEST_LIMIT:-300}" $PY -m pytest tests/test_cuda.py tests/metrics/test_devices.py -m gpu -rA -s -q \
    -p no:cacheprovider 2>&1 | tee "$OUT/pytest.log"
tests=$?
official=()
[ -n "${OFFICIAL:-}" ] && official=(--official "$OFFICIAL")
timeout "${BENCH_LIMIT:-240}" $PY benchmarks/bench_cuda.py "${official[@]}" --json "$OUT/bench_cuda.json" 2>&1 \
    | tee "$OUT/bench.log"
timeout "${BENCH_LIMIT:-240}" $PY benchmarks/bench_cuda.py --presets scgan-ade20k,spade-ade20k "${official[@]}" \
    --cudnn-benchmark --json "$OUT/bench_cudnn_benchmark.json" 2>&1 | tee "$OUT/bench_cudnn_benchmark.log"
exit $tests
