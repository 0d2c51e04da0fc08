#!/usr/bin/env bash
# Regenerates tests/golden/summary/: a small `patchlab batch` run (its
# per-pair reports, pairs/*.json) and numpy's independent recomputation of
# the summary tables from those reports' score maps (numpy.json).
# tests/summary.rs checks patchlab's summary of the same reports against it.
# Reference only: CI never runs this.
#
#   bash tests/reference/regenerate_summary.sh
#
# PATCHLAB_REF_PY: a python with numpy (default /root/patchlab-ref-venv/bin/python).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PY="${PATCHLAB_REF_PY:-/root/patchlab-ref-venv/bin/python}"
OUT="$ROOT/tests/golden/summary"
TMP="$(mktemp -d /tmp/patchlab-summary.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT

cd "$ROOT"
cargo build --release --bin patchlab
bin=target/release/patchlab
$bin random-model --layers 2 --heads 4 --d-model 32 --n-ctx 64 --seed 3 --out "$TMP/model"
$bin batch --model "$TMP/model" --task ioi --n 8 --seed 0 --ig-steps 8 --out-dir "$TMP/batch" --quiet
rm -rf "$OUT"
mkdir -p "$OUT"
cp -r "$TMP/batch/pairs" "$OUT/pairs"
"$PY" "$ROOT/tests/reference/summary_numpy.py" "$OUT" "$OUT/numpy.json"
echo "summary golden written to $OUT"
