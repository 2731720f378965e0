#!/usr/bin/env bash
# A preemptible Slurm job that survives being stopped and requeued: Slurm sends SIGTERM (here 300 s before the
# time limit, or when the job is preempted); `mec train` finishes its iteration, saves a checkpoint atomically and
# exits 143; the job requeues itself and the same command with --resume continues from that checkpoint (or starts
# at iteration 0 the first time, saying so). A damaged checkpoint is skipped by name, never silently.
#
#   sbatch examples/slurm_preemptible.sh
#
#SBATCH --job-name=mec-htc-r101
#SBATCH --partition=gpu
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:8
#SBATCH --cpus-per-task=40
#SBATCH --time=2-00:00:00
#SBATCH --signal=B:TERM@300
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=work_dirs/htc_r101/slurm-%j.out
set -uo pipefail
MEC=${MEC:-.venv/bin/mec}

# torchrun on the allocated node; `--signal=B:` delivers SIGTERM to this batch shell, which passes it on to mec.
$MEC train --recipe htc_r101 --gpus 8 --data-root data/lvis_v1 --pretrained checkpoints/resnet101-63fe2227.pth \
    --work-dir work_dirs/htc_r101 --resume &
pid=$!
trap 'kill -TERM $pid' TERM
wait $pid
status=$?
if [ "$status" -gt 128 ] && kill -0 "$pid" 2>/dev/null; then
  wait $pid  # the signal interrupted `wait`: let mec finish its iteration and checkpoint, and take its exit code
  status=$?
fi
if [ "$status" -eq 143 ]; then
  echo "stopped with a checkpoint; requeueing"
  scontrol requeue "$SLURM_JOB_ID"
fi
exit "$status"
