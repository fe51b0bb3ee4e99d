#!/usr/bin/env bash
# The performance suite (issue 7): results in bench/results/perf_*.{json,md}.
#   bash bench/run_all.sh           full run (hours on a loaded 2-core box: 1M-vector HNSW and dups)
#   bash bench/run_all.sh --quick   smoke run of every script (minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
Q=${1:-}
if [[ "$Q" == "--quick" ]]; then
  $PY bench/make_perf_images.py --jpeg 16 --png 16 --heic 4
else
  $PY bench/make_perf_images.py --jpeg 200 --png 200 --heic 16
fi
$PY bench/compute_bound.py $Q
$PY bench/decode_speed.py $Q
$PY bench/index_speed.py $Q --formats jpeg12mp,png,heic
$PY bench/startup.py $Q
$PY bench/search_speed.py $Q
$PY bench/dups_scale.py $Q
if [[ "$Q" != "--quick" ]]; then
  # the IVF parameters proposed for search/duplicates.py, side by side with the shipped ones
  $PY bench/dups_scale.py --exact-max 50000 --niter 10 --train-per-list 40 --nprobe 8 \
    --name dups_scale_proposed
fi
