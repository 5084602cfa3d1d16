#!/usr/bin/env bash
# The CUDA checks of issue 6, for the lent GPU machine (see the README's "Speed" section).
# Writes everything under $OUT (default ./build/cuda-check):
#   pytest.txt             every test, the CUDA ones included (tests/test_fast_paths.py)
#   cuda-<card>.{md,json}  python -m diffusion_lib bench (200 of 1000 steps timed, batch 64 and 1024)
#   notebooks.txt          each notebook's py:percent twin run with plain python, timed
#
# Here:    make cuda-wheels      # ipywidgets & co. for Python 3.12 into .whl/ (the GPU
#                                # image has torch, matplotlib, sklearn but no ipywidgets)
# Device:  a session has 15 minutes of device time (a start costs 1-2), so two calls:
#   run(command="PARTS='tests bench' bash benchmarks/cuda_check.sh", carry=[".whl"], timeout_s=330)
#   run(command="PARTS=notebooks bash benchmarks/cuda_check.sh", carry=[".whl"], timeout_s=300)
# Measured on an H100 (2026-11-27): tests 92 s; the bench below 108 s (the full default,
# 1000 steps x 3 repeats x 2 batch sizes, did not finish in 420 s: torch.compile warm-ups);
# notebooks 01 10 s, 02 24 s (03-06 not reached that session).
# Then copy cuda-<card>.{md,json} (e.g. cuda-nvidia-h200) into diffusion_lib/results/ and
# commit; tests/test_bench.py checks that the pair agrees.
# Dry run on a CPU:  OUT=/tmp/cc PYTHON=.venv/bin/python BENCH_ARGS="--steps 2 \
#   --batch-sizes 4 --repeats 1 --generation-sizes 0 --no-compile" bash benchmarks/cuda_check.sh
set -uo pipefail
OUT="${OUT:-build/cuda-check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
case "$PY" in /*) ;; */*) PY="$PWD/$PY" ;; esac  # the notebooks run from notebooks/
PARTS=" ${PARTS:-tests bench notebooks} "
part() { [[ "$PARTS" == *" $1 "* ]]; }
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/env.txt"
if ! "$PY" -c "import ipywidgets" 2>/dev/null && [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --find-links .whl ipywidgets >>"$OUT/env.txt" 2>&1
fi

# 1. the tests (the CUDA ones run here and only here); ~1 min
if part tests; then
  timeout 150 "$PY" -m pytest -q -p no:cacheprovider tests --ignore=tests/browser \
    -k "not packaging" >"$OUT/pytest.txt" 2>&1
  echo "pytest exit $?" | tee -a "$OUT/pytest.txt"
  tail -4 "$OUT/pytest.txt"
fi

# 2. the benchmark; 108 s on an H100 with the default arguments below.
#    BENCH_ARGS overrides the defaults (a dry run on a CPU, fewer repeats if time is short).
#    The default times 200 of the 1000 steps (the table says so and scales), 2 repeats.
if part bench; then
  timeout 240 "$PY" -m diffusion_lib bench --out "$OUT" \
    ${BENCH_ARGS:---steps 64:200,1024:200 --repeats 2 --generation-sizes 1000} >"$OUT/bench.log" 2>&1
  echo "bench exit $?"
  tail -5 "$OUT/bench.log"
fi

# 3. every notebook on CUDA, timed (on the 2-core CPU VM, one thread: 5, 52, 48, 13, 18, 35 s)
if part notebooks; then
  for nb in notebooks/0*.py; do
    start=$(date +%s%N)
    (cd notebooks && timeout 120 "$PY" "$(basename "$nb")" >/dev/null 2>"$OUT/nb.err")
    code=$?
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    echo "$(basename "$nb") exit $code ${ms} ms" | tee -a "$OUT/notebooks.txt"
    [ $code -ne 0 ] && tail -5 "$OUT/nb.err" >>"$OUT/notebooks.txt"
  done
  rm -f "$OUT/nb.err"
fi
