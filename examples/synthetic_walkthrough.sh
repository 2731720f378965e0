#!/usr/bin/env bash
# The demo's pipeline, one command at a time, on the CPU (about 15 minutes on 2 cores).
set -euo pipefail
MEC=${MEC:-.venv/bin/mec}
OUT=${OUT:-walkthrough}
ITERS=${ITERS:-300}

$MEC synth --out "$OUT/data" --seed 0
$MEC groups "$OUT/data/annotations/lvis_v1_train.json" --out "$OUT/groups.json"
for recipe in tiny_baseline tiny; do
  $MEC train --recipe "$recipe" --gpus 0 --data-root "$OUT/data" --groups "$OUT/groups.json" \
       --work-dir "$OUT/runs/$recipe" --max-iters "$ITERS" --cfg-options log_level=WARNING
  $MEC eval --checkpoint "$OUT/runs/$recipe/iter_$ITERS.pth" --recipe "$recipe" --data-root "$OUT/data" \
       --groups "$OUT/groups.json" --per-stage --out "$OUT/runs/$recipe/metrics.json"
done
$MEC report ablation "$OUT/runs/tiny_baseline" "$OUT/runs/tiny" --reference paper --format md --out "$OUT/ablation.md"
$MEC report compare "$OUT/runs/tiny_baseline" "$OUT/runs/tiny"
$MEC report stages "$OUT/runs/tiny" --baseline "$OUT/runs/tiny_baseline" --out "$OUT/stages.png"
$MEC report distribution "$OUT/data/annotations/lvis_v1_train.json" lvis_v1 --out "$OUT/distribution.png"
