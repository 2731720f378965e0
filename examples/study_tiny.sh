#!/usr/bin/env bash
# Table 2(c) as a study on the CPU: the tiny baseline and MEC recipes with 2 seeds on the synthetic data, stopped
# once in the middle of a training and resumed, then its report (mean +- sd over the seeds, the bootstrap
# interval of each gain per seed). Each training and evaluation takes a few minutes on 2 cores.
set -euo pipefail
MEC=${MEC:-.venv/bin/mec}
OUT=${OUT:-study-t2c}
ITERS=${ITERS:-160}

[ -f data/synth/annotations/lvis_v1_train.json ] || $MEC synth --out data/synth --seed 0
ARGS=(table2c --family tiny --gpus 0 --data-root data/synth --max-iters "$ITERS" --seeds 2 --out "$OUT")
$MEC study run "${ARGS[@]}" --dry-run                  # the plan: 4 trainings, 4 evaluations
timeout -s TERM 120 $MEC study run "${ARGS[@]}" || true  # stopped after 2 minutes: a checkpoint, status interrupted
$MEC study status "$OUT"
$MEC study run "${ARGS[@]}"                            # resumes the interrupted training, then runs the rest
$MEC study run "${ARGS[@]}"                            # nothing left to do
echo "open $OUT/report/README.md"
