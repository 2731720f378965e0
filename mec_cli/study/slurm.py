"""A study through Slurm: one job array for the trainings, one for the evaluations that wait for them, one report job.

* **trainings**: an array task per run to train, on ``nodes`` x ``gpus`` (the worker started by srun inside the
  allocation, as `mec train --slurm` starts it). Each task is preemptible as ``examples/slurm_preemptible.sh`` is:
  Slurm sends SIGTERM (``--signal=B:TERM@300``: 5 minutes before the time limit, or on preemption), the training
  finishes its iteration and saves a checkpoint, and the task requeues itself (``scontrol requeue``); the
  requeued task resumes from that checkpoint, as every study stage does.
* **evaluations**: an array with the same indices, each task waiting for its own training to end well
  (``--dependency=aftercorr:TRAIN``, Slurm's ``afterok`` task by task); runs trained before and not yet evaluated
  get an array of their own, without a dependency. On one node with ``gpus`` GPUs; requeued on preemption too.
* **report**: one small job after all of them (``--dependency=afterany``: it reports what finished and names what
  did not), writing ``DIR/report/``.

Jobs whose dependency can never be met (a training failed) are cancelled (``--kill-on-invalid-dep=yes``) rather
than left pending. Every task records its status in the manifest, under its lock, so ``mec study status DIR``
shows the study from any node; running the study command again submits only what is not done.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from mec_cli.errors import MecError
from mec_cli.study import manifest as mf

SIGNAL_LEAD_S = 300  # SIGTERM this long before the time limit: time to finish an iteration and save a checkpoint


def _header(name: str, study_dir: Path, log: str, sbatch: List[str]) -> List[str]:
    lines = ["#!/usr/bin/env bash", f"# {name}", "#"]
    lines += [f"#SBATCH {opt}" for opt in sbatch]
    lines += [f"#SBATCH --output={study_dir}/slurm/logs/{log}", "set -uo pipefail"]
    return lines


def _resources(opts, nodes: int, gpus: int) -> List[str]:
    out = [f"--partition={opts.partition}", f"--nodes={nodes}", f"--ntasks-per-node={gpus}", f"--gres=gpu:{gpus}",
           f"--cpus-per-task={opts.cpus_per_task}"]
    if opts.time:
        out.append(f"--time={opts.time}")
    if opts.qos:
        out.append(f"--qos={opts.qos}")
    return out


def _array(n: int, max_parallel: Optional[int]) -> str:
    return f"--array=0-{n - 1}" + (f"%{max_parallel}" if max_parallel else "")


PREEMPTIBLE = """\
"$PY" -m mec_cli.study.runner exec "$STUDY" --run "${{RUNS[$SLURM_ARRAY_TASK_ID]}}" --stage {stage} --slurm &
pid=$!
trap 'kill -TERM $pid' TERM
wait $pid
status=$?
if [ "$status" -gt 128 ] && kill -0 "$pid" 2>/dev/null; then
  wait $pid  # the signal interrupted `wait`: let the stage finish its iteration and checkpoint, and take its code
  status=$?
fi
if [ "$status" -eq 143 ]; then
  echo "stopped by SIGTERM{what}; requeueing"
  scontrol requeue "${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}"
fi
exit "$status"
"""


def _array_script(title: str, study_dir: Path, cwd: str, python: str, stage: str, runs: List[str], log: str,
                  sbatch: List[str]) -> str:
    lines = _header(title, study_dir, log, sbatch)
    lines += [f"cd {shlex.quote(cwd)}", f"PY={shlex.quote(python)}", f"STUDY={shlex.quote(str(study_dir))}",
              "RUNS=(" + " ".join(shlex.quote(r) for r in runs) + ")  # array index -> run"]
    what = " with a checkpoint" if stage == "train" else ""
    return "\n".join(lines) + "\n" + PREEMPTIBLE.format(stage=stage, what=what)


def slurm_plan(plan, opts) -> Dict[str, Any]:
    """The sbatch scripts of the plan's work and how they are submitted (job ids as $TRAIN_JOB, $EVAL_JOB...)."""
    study_dir = plan.study_dir.resolve()
    name = plan.spec.name
    python, cwd = sys.executable, str(Path.cwd())
    train = plan.todo("train")
    eval_after = [s.run for s in plan.steps_of("eval") if s.works and s.run in train]
    eval_only = [s.run for s in plan.steps_of("eval") if s.works and s.run not in train]
    requeue = [f"--signal=B:TERM@{SIGNAL_LEAD_S}", "--requeue", "--open-mode=append"]
    jobs: List[Dict[str, Any]] = []
    if train:
        jobs.append({"job": "train", "runs": train, "after": None, "script": _array_script(
            f"mec study {name}: the trainings, an array task per run ({len(train)})", study_dir, cwd, python, "train",
            train, "train-%A_%a.out", [f"--job-name=mec-{name}-train", _array(len(train), opts.max_parallel)] +
            _resources(opts, opts.nodes, opts.gpus) + requeue)})
    if eval_after:
        jobs.append({"job": "eval", "runs": eval_after, "after": "aftercorr:$TRAIN_JOB", "script": _array_script(
            f"mec study {name}: the evaluations, task i after training task i ({len(eval_after)})", study_dir, cwd,
            python, "eval", eval_after, "eval-%A_%a.out", [f"--job-name=mec-{name}-eval",
                                                           _array(len(eval_after), opts.max_parallel)] +
            _resources(opts, 1, opts.gpus) + requeue)})
    if eval_only:
        jobs.append({"job": "eval_trained", "runs": eval_only, "after": None, "script": _array_script(
            f"mec study {name}: the evaluations of runs trained before ({len(eval_only)})", study_dir, cwd, python,
            "eval", eval_only, "eval-%A_%a.out", [f"--job-name=mec-{name}-eval",
                                                  _array(len(eval_only), opts.max_parallel)] +
            _resources(opts, 1, opts.gpus) + requeue)})
    if jobs:
        waits = [f"${j['job'].upper()}_JOB" for j in jobs]
        report = _header(f"mec study {name}: the report, after every training and evaluation", study_dir,
                         "report-%j.out", [f"--job-name=mec-{name}-report", f"--partition={opts.partition}",
                                           "--nodes=1", "--ntasks=1", "--cpus-per-task=2"] +
                         ([f"--qos={opts.qos}"] if opts.qos else []))
        report += [f"cd {shlex.quote(cwd)}",
                   f"exec {shlex.quote(python)} -m mec_cli.study.runner report {shlex.quote(str(study_dir))}"]
        jobs.append({"job": "report", "runs": [], "after": "afterany:" + ":".join(waits),
                     "script": "\n".join(report) + "\n"})
    for j in jobs:
        j["path"] = str(study_dir / "slurm" / f"{j['job']}.sbatch")
        dep = ["--dependency=" + j["after"], "--kill-on-invalid-dep=yes"] if j["after"] else []
        sbatch = " ".join(["sbatch", "--parsable", *dep, shlex.quote(j["path"])])
        j["command"] = f"{j['job'].upper()}_JOB=$({sbatch})"
    return {"jobs": jobs}


def check_queue(plan) -> None:
    """Refuse to submit while the study's earlier jobs are still queued or running (``squeue``), so that no run is
    trained twice at once."""
    earlier = (plan.doc.get("slurm") or {}).get("jobs") or {}
    ids = [str(v) for v in earlier.values() if v]
    if not ids or shutil.which("squeue") is None:
        return
    res = subprocess.run(["squeue", "-h", "-o", "%A", "-j", ",".join(ids)], capture_output=True, text=True)
    alive = sorted(set(res.stdout.split())) if res.returncode == 0 else []
    if alive:
        raise MecError(f"jobs {', '.join(alive)} of this study are still in the queue (squeue): wait for them, or "
                       "scancel them, before submitting again", plan.study_dir)


def submit(plan, scripts: Dict[str, Any]) -> Dict[str, Any]:
    """Write the scripts into ``DIR/slurm/``, submit them in order with their dependencies, and record the job ids
    in the manifest (the study and each run's stages)."""
    from mec_cli.io import write_text_atomic

    if shutil.which("sbatch") is None:
        raise MecError("sbatch not found: run a study with `slurm` on a Slurm login node")
    study_dir = plan.study_dir
    (study_dir / "slurm" / "logs").mkdir(parents=True, exist_ok=True)
    ids: Dict[str, str] = {}
    for j in scripts["jobs"]:
        write_text_atomic(j["path"], j["script"])
        args = ["sbatch", "--parsable"]
        if j["after"]:
            after = j["after"]
            for key, value in ids.items():
                after = after.replace(f"${key.upper()}_JOB", value)
            after = ":".join(x for x in after.split(":") if not x.startswith("$"))
            args += [f"--dependency={after}", "--kill-on-invalid-dep=yes"]
        res = subprocess.run(args + [j["path"]], capture_output=True, text=True)
        job_id = res.stdout.strip().split(";")[0]
        if res.returncode != 0 or not job_id:
            submitted = ", ".join(f"{k} {v}" for k, v in ids.items()) or "none"
            raise MecError(f"sbatch refused {j['path']} (jobs submitted before it: {submitted}): "
                           f"{(res.stderr or res.stdout).strip()}")
        ids[j["job"]] = job_id
        j["id"] = job_id

    def record(doc):
        doc["slurm"] = {"submitted": mf.now(), "jobs": ids, "scripts": [j["path"] for j in scripts["jobs"]]}
        for j in scripts["jobs"]:
            stage = "train" if j["job"] == "train" else "eval"
            for i, name in enumerate(j["runs"]):
                mf.find_run(doc, name)[stage]["slurm_job"] = f"{j['id']}_{i}"

    mf.update(study_dir, record)
    return scripts
