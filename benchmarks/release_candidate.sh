#!/usr/bin/env bash
# Replace the shipped default model with a training run's moving average when it is better, and
# re-measure everything that depends on it (about 70 minutes on the 2-core machine, half of it
# the Kodak run with --refine 20).
#
#   benchmarks/release_candidate.sh RUN NAME [WORK]
#
# RUN   a `codedvision train codec` run folder (checkpoint.pt, train_config.json, log.csv, log.png)
# NAME  its config and logs are kept as results/training/NAME_{config.json,log.csv,log.png}
# WORK  scratch folder outside git (default ${TMPDIR:-/tmp}/codedvision-release)
#
# The candidate must pass two checks, else the shipped model is restored and the script exits 1:
#   1. the trainer's held-out patches (and held-out Caltech-101 photos, for a run with
#      caltech_holdout): fewer bits than the shipped model at equal PSNR and at equal MS-SSIM
#      (benchmarks/heldout_anchors.py, a couple of minutes);
#   2. Kodak, real files: the same (benchmarks/compare_releases.py).
# Then: the full Kodak evaluation and its figures in the manifest, the fMaps head retrained for
# the new fMaps, the vision check, the Caltech val photos, per-image flat content (and its change
# from the shipped model), the rate gap to HEVC per quality, the BD-rate re-check, speed,
# refinement, capacity, coding overhead, Kodak with --refine 20 (skipped with KODAK_REFINE=0;
# the README then marks that table as measured on the earlier model) and the README's Results
# section. Nothing is committed:
# read `git diff`, update the README's prose and docs/experiments.md, then commit.
# Run it alone on the machine: it times the codec.
set -euo pipefail
if [[ $# -lt 2 || $# -gt 3 || "$1" == -* ]]; then
  sed -n '6,10p' "$0" | cut -c3- >&2
  exit 2
fi
RUN=$(realpath "$1"); NAME=$2; WORK=$(realpath -m "${3:-${TMPDIR:-/tmp}/codedvision-release}")
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}; CV=${CODEDVISION:-.venv/bin/codedvision}
KODAK=../shared/data/kodak
SHIPPED=codedvision/models/default

[[ -f $RUN/checkpoint.pt ]] || { echo "error: $RUN/checkpoint.pt not found" >&2; exit 2; }
if ! git diff --quiet HEAD -- codedvision/models results benchmarks/results README.md; then
  echo "error: commit or stash the changes to the models and results first" >&2; exit 2
fi
stage() { echo; echo "== $(date '+%H:%M:%S') $*"; }
restore() {
  echo "the candidate is not better: the shipped model stays" >&2
  git checkout -- "$SHIPPED" results/kodak; exit 1
}
ahead_held_out() {  # exit 0 when the candidate's held-out BD-rates ($1) are both negative
  "$PY" -c "import json, sys; d = json.load(open(sys.argv[1]))['models'][1]['bd_rate_vs_first']
sys.exit(0 if all(v is not None and v < 0 for v in d.values()) else 1)" "$1"
}
mkdir -p "$WORK"

stage "export $RUN and compare it on the held-out patches"
"$CV" train export "$RUN/checkpoint.pt" -o "$WORK/candidate" --force
# a run that mixed in Caltech-101 photos is checked on its held-out ones too
read -r CALTECH SCALE < <("$PY" -c "import json, sys; c = json.load(open(sys.argv[1]))
print(c.get('caltech_holdout', 0), c['caltech_scale'])" "$RUN/train_config.json")
"$PY" benchmarks/heldout_anchors.py "$SHIPPED" "$WORK/candidate" --caltech "$CALTECH" \
  --caltech-scale "$SCALE" --out "$WORK/heldout.json"
ahead_held_out "$WORK/heldout.json" || restore

stage "Kodak, the candidate alone, against the shipped model"
git show HEAD:results/kodak/results.json > "$WORK/kodak-shipped.json"
cp "$WORK/candidate/model.safetensors" "$WORK/candidate/manifest.json" "$SHIPPED/"
"$CV" evaluate --images "$KODAK" --out results/kodak --jobs 2 --codecs codedvision
"$PY" benchmarks/compare_releases.py "$WORK/kodak-shipped.json" results/kodak/results.json || restore

stage "Kodak, every codec, and the figures in the manifest"
"$CV" evaluate --images "$KODAK" --out results/kodak --jobs 2 \
  --reference ../shared/reference/compressai_kodak
"$PY" benchmarks/release_figures.py
ID=$("$PY" -c "import json; print(json.load(open('$SHIPPED/manifest.json'))['model_id'])")
cp "$WORK/heldout.json" "benchmarks/results/heldout_anchors_$ID.json"
cp "$RUN/train_config.json" "results/training/${NAME}_config.json"
cp "$RUN/log.csv" "results/training/${NAME}_log.csv"
cp "$RUN/log.png" "results/training/${NAME}_log.png"

stage "the fMaps head, retrained for the new fMaps"
"$PY" -c "import json, sys
m = json.load(open('codedvision/models/classifier-fmaps/manifest.json'))
c = m['training']['train_config']; c['codec'] = None
json.dump(c, open(sys.argv[1], 'w'), indent=2)" "$WORK/head.json"
rm -rf "$WORK/head"
"$CV" train classifier --config "$WORK/head.json" --run-dir "$WORK/head"
"$CV" train export-head "$WORK/head/best.pt" -o codedvision/models/classifier-fmaps --force
"$PY" benchmarks/vision_benchmark.py --limit 300 --qualities 30 --quiet

stage "Caltech-101 val photos (not tuned on)"
rm -rf "$WORK/caltech_val"
"$PY" benchmarks/caltech_val_set.py "$WORK/caltech_val"
"$CV" evaluate --images "$WORK/caltech_val" --out results/caltech_val \
  --codecs codedvision,codedvision-refine,hevc,avif,jpeg --jobs 2

stage "flat content per image (and its change from the shipped model), rate gap per quality"
for SET in kodak caltech_val; do
  git show "HEAD:benchmarks/results/flat_content_$SET.json" > "$WORK/flat_content_$SET.json"
done
"$PY" benchmarks/flat_content.py --against "$WORK/flat_content_kodak.json"
"$PY" benchmarks/flat_content.py results/caltech_val --images "$WORK/caltech_val" \
  --against "$WORK/flat_content_caltech_val.json"
"$PY" benchmarks/rate_gap.py
"$PY" benchmarks/rate_gap.py results/caltech_val

stage "BD-rate re-check, speed, refinement, capacity, coding overhead"
"$PY" benchmarks/verify_bdrate.py results/kodak
"$PY" benchmarks/codec_speed.py
"$PY" benchmarks/codec_speed.py --precision float32
"$PY" benchmarks/refine_gain.py --steps 20 --limit 8
"$PY" benchmarks/capacity_probe.py
"$PY" benchmarks/coding_overhead.py

if [[ ${KODAK_REFINE:-1} != 0 ]]; then
  stage "Kodak with --refine 20 beside the plain codec and HEVC (about 25 minutes)"
  "$CV" evaluate --images "$KODAK" --out results/kodak_refine --jobs 2 \
    --codecs codedvision,codedvision-refine,hevc
  "$PY" benchmarks/rate_gap.py results/kodak_refine --codec codedvision-refine
  "$PY" benchmarks/verify_bdrate.py results/kodak_refine
fi
"$PY" benchmarks/readme_results.py > /dev/null

stage "done: model $ID is installed; review git diff, update the README's prose and docs/experiments.md"
