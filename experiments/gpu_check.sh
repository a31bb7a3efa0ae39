#!/usr/bin/env bash
# make gpu-check: the GPU tier (tests marked `gpu`) and experiments/bench_gpu.py on a machine with CUDA,
# in under 10 minutes on one GPU. Results go to $JINA5_GPU_OUT (else $OUT, else ./gpu-check):
#   pytest.log, junit.xml, bench_gpu.json, bench_gpu.log, env.txt
# It uses the machine's python3 (with torch). Packages that machine lacks travel as wheels in .whl/
# (`make gpu-wheels` fetches them here); they are installed into a private folder, and jina5 itself
# is installed editable (conf/ is the package jina5.conf), nothing is downloaded. Test modules that
# import a package that machine lacks (mteb, nbclient, ...) fail to collect; the gpu tier runs regardless.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${JINA5_GPU_OUT:-${OUT:-gpu-check}}
mkdir -p "$out"
PY=${PY:-python3}
if [ -d .whl ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/jina5-site .whl/*.whl \
    && export PYTHONPATH=/tmp/jina5-site${PYTHONPATH:+:$PYTHONPATH} || exit 1
fi
$PY -m pip install -q --no-index --no-deps --no-build-isolation -e . >"$out/install.log" 2>&1 || { cat "$out/install.log"; exit 1; }
{ nvidia-smi; $PY -c "import torch, transformers, lightning; print(torch.__version__, transformers.__version__, lightning.__version__, torch.cuda.get_device_name())"; } >"$out/env.txt" 2>&1
export PYTHONUNBUFFERED=1 JINA5_CACHE=${JINA5_CACHE:-/tmp/jina5-cache}
rc=0
timeout 330 $PY -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors --junitxml="$out/junit.xml" tests 2>&1 | tee "$out/pytest.log" || rc=1
timeout 240 $PY experiments/bench_gpu.py --budget-s 200 --out "$out/bench_gpu.json" 2>&1 | tee "$out/bench_gpu.log" || rc=1
exit $rc
