#!/usr/bin/env bash
# The paper's LVIS v1 runs, as launch commands. --dry-run prints the command and the resolved config.
set -euo pipefail
MEC=${MEC:-.venv/bin/mec}
$MEC recipes
$MEC train --recipe htc_r101 --gpus 8 --dry-run | grep -E "^(\S*torchrun|srun)"   # one node, torchrun
$MEC train --recipe htc_r101 --gpus 8 --nodes 2 --node-rank 0 --master-addr 10.0.0.1 --dry-run | grep -E "^(\S*torchrun|srun)"
$MEC train --recipe cascade_r50 --slurm --partition gpu --gpus 8 --nodes 2 --dry-run | grep -E "^(\S*torchrun|srun)"
# For real: drop --dry-run and add --data-root data/lvis_v1 --pretrained /path/to/resnet101-63fe2227.pth
