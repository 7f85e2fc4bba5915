#!/usr/bin/env bash
# The checks to run on a lent GPU machine in one call (docs/gpu.md): the GPU tests named
# below, benchmarks/engine.py's compile table with CUDA graphs against torch, then the kernel
# shape sweep on the GPU (benchmarks/kernels.py --device cuda; KERNELS=0 skips it). Needs only
# what the machine's image has (CuPy, torch, NumPy, pytest): ember is put on the path from this
# checkout, not installed. Logs go to $OUT (default ./gpu_out).
#
#   bash benchmarks/gpu_checks.sh                       # tests + the reduce-overhead table
#   TESTS="tests/test_compile_gpu.py" BENCH=0 bash benchmarks/gpu_checks.sh
set -u
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
ROOT=$(pwd)
SITE=$(mktemp -d)/ember
mkdir -p "$SITE"
ln -s "$ROOT"/core/* "$SITE"/
for pkg in distributed launcher protos serve vision models; do ln -s "$ROOT/$pkg" "$SITE/$pkg"; done
export PYTHONPATH="$(dirname "$SITE"):${PYTHONPATH:-}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import cupy, numpy, torch, ember; print('cupy', cupy.__version__, 'numpy',
numpy.__version__, 'torch', torch.__version__, 'ember from', ember.__file__)" || exit 1
TESTS=${TESTS:-tests/test_compile_gpu.py tests/test_bench_kernels.py}
if [ -n "$TESTS" ]; then
    timeout "${TEST_TIMEOUT:-200}" python3 -m pytest -m gpu -q -p no:cacheprovider -W ignore \
        $TESTS 2>&1 | tee "$OUT/pytest.log" | tail -40
fi
if [ "${BENCH:-1}" = 1 ]; then
    timeout "${BENCH_TIMEOUT:-360}" python3 benchmarks/engine.py --device cuda --compile \
        --mode reduce-overhead --threads 1 --steps "${STEPS:-20}" --json "$OUT/engine.json" \
        ${WORKLOADS:+--workloads $WORKLOADS} 2>&1 | tee "$OUT/engine.log"
fi
# the quick grid (a few shapes of every family) unless QUICK=0; the JSON is rewritten after
# every family's table, so a run the timeout cuts short still leaves what it measured
if [ "${KERNELS:-1}" = 1 ]; then
    [ "${QUICK:-1}" = 1 ] && quick=--quick || quick=
    timeout "${KERNELS_TIMEOUT:-240}" python3 benchmarks/kernels.py --device cuda $quick \
        --repeat "${REPEAT:-3}" --json "$OUT/kernels.json" 2>&1 | tee "$OUT/kernels.log"
fi
