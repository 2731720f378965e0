#!/usr/bin/env bash
# COCO-LT from COCO train2017, following the LVIS v1 long tail (paper Appendix B).
# Usage: COCO=/path/to/coco examples/coco_lt.sh   (COCO holds annotations/ and train2017/, val2017/)
set -euo pipefail
MEC=${MEC:-.venv/bin/mec}
COCO=${COCO:?set COCO to your COCO root}

$MEC build-coco-lt --coco-ann "$COCO/annotations/instances_train2017.json" --profile lvis_v1 --align rank \
     --keep-top 10 --seed 0 --out "$COCO/annotations/coco_lt_train.json"
$MEC groups "$COCO/annotations/coco_lt_train.json" --out "$COCO/coco_lt_groups.json"
$MEC report distribution coco2017 "$COCO/annotations/coco_lt_train.manifest.json" lvis_v1 --out coco_lt_distribution.png
echo "Train and evaluate (needs ImageNet weights; see mec train --help):"
echo "  $MEC train --recipe cascade_r50 --dataset coco_lt --data-root $COCO --groups $COCO/coco_lt_groups.json --gpus 8 --pretrained resnet50.pth"
echo "  $MEC eval --checkpoint work_dirs/cascade_r50/epoch_12.pth --recipe cascade_r50 --dataset coco_lt --data-root $COCO --per-stage --out metrics.json"
