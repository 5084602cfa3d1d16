#!/usr/bin/env bash
# The CUDA checks of issue 6 in one run, for the lent GPU machine (see the README's
# "Speed" section). Writes everything under $OUT (default ./build/cuda-check):
#   pytest.txt            every test, the CUDA ones included (tests/test_fast_paths.py)
#   bench.md, bench.json  python -m diffusion_lib bench (1000 steps, batch 64 and 1024)
#   notebooks.txt         each notebook's py:percent twin run with plain python, timed
#
# Here:    make cuda-wheels      # ipywidgets & co. for Python 3.12 into .whl/ (the GPU
#                                # image has torch, matplotlib, sklearn but no ipywidgets)
# Device:  run(command="bash benchmarks/cuda_check.sh", carry=[".whl"], timeout_s=600)
# Then copy bench.{md,json} to benchmarks/results/<device>.{md,json} (their first line
# names the card) and commit.
set -uo pipefail
OUT="${OUT:-build/cuda-check}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" MPLBACKEND=Agg
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/env.txt"
if ! "$PY" -c "import ipywidgets" 2>/dev/null && [ -d .whl ]; then
  "$PY" -m pip install -q --no-index --find-links .whl ipywidgets >>"$OUT/env.txt" 2>&1
fi

# 1. tests (the CUDA ones run here and only here); ~1 min
timeout 200 "$PY" -m pytest -q -p no:cacheprovider tests --ignore=tests/browser \
  -k "not packaging" >"$OUT/pytest.txt" 2>&1
echo "pytest exit $?" | tee -a "$OUT/pytest.txt"
tail -3 "$OUT/pytest.txt"

# 2. the benchmark; ~4 min on an H100/H200
timeout 330 "$PY" -m diffusion_lib bench --name cuda-check >"$OUT/bench.log" 2>&1
echo "bench exit $?"
cp benchmarks/results/cuda-check.md "$OUT/bench.md" 2>/dev/null
cp benchmarks/results/cuda-check.json "$OUT/bench.json" 2>/dev/null
tail -5 "$OUT/bench.log" >>"$OUT/pytest.txt"

# 3. every notebook on CUDA, timed
for nb in notebooks/0*.py; do
  start=$(date +%s%N)
  (cd notebooks && timeout 120 "$PY" "$(basename "$nb")" >/dev/null 2>"$OUT/nb.err")
  code=$?
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  echo "$(basename "$nb") exit $code ${ms} ms" | tee -a "$OUT/notebooks.txt"
  [ $code -ne 0 ] && tail -5 "$OUT/nb.err" >>"$OUT/notebooks.txt"
done
rm -f "$OUT/nb.err"
