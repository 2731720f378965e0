"""One stage of one run of a study, in the process that runs it: `python -m mec_cli.study.runner exec DIR --run NAME
--stage train|eval`, and the study's report: `python -m mec_cli.study.runner report DIR`.

The study command starts this module once per stage (so that no state of one run reaches the next), and a Slurm
array task runs it for its run. A stage goes through the launch layer exactly as `mec train --resume` and `mec eval
--checkpoint` do: :func:`train_options` and :func:`eval_options` are those commands' options, built from the
manifest. A training always resumes from the work dir's last complete checkpoint (or starts at iteration 0 when it
has none, and refuses when it has only damaged ones); one whose final checkpoint is there is done without running.

The stage holds the run's busy lock while it runs and records its status in the manifest (:mod:`.manifest`). A
SIGTERM or SIGINT stops a training after its current iteration with a checkpoint (status ``interrupted``, exit 143
or 130). Started by the study command with ``--die-with-parent``, the process is also sent SIGTERM if that command
dies, even by SIGKILL, so that a kill of `mec study run` at any moment loses at most the current iteration.
"""
from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Dict, List, Optional

from mec_cli.errors import MecError
from mec_cli.study import manifest as mf
from mec_cli.study.spec import RunSpec, StudyOptions

EXIT_FAILED = 1


def run_spec(run: Dict[str, Any]) -> RunSpec:
    return RunSpec(name=run["name"], **run["settings"])


def study_options(doc: Dict[str, Any]) -> StudyOptions:
    return StudyOptions(**doc["options"])


def _abs(study_dir: Path, rel: str) -> Path:
    return (Path(study_dir) / rel).resolve()


def train_options(study_dir: Path, run: Dict[str, Any], opts: StudyOptions, slurm: bool = False):
    """The `mec train --resume` of a run (:class:`mec_cli.training.TrainOptions`)."""
    from mec_cli.recipes import resolve_recipe
    from mec_cli.training import TrainOptions

    spec = run_spec(run)
    info = resolve_recipe(spec.recipe)
    work_dir = _abs(study_dir, run["work_dir"])
    return TrainOptions(
        recipe=spec.recipe, dataset=spec.dataset, data_root=opts.data_root, groups=opts.groups,
        cfg_options={**opts.cfg_options, **spec.train_cfg_options()}, gpus=opts.gpus, procs=opts.procs,
        nodes=opts.nodes if slurm else 1, slurm=slurm, partition=opts.partition, cpus_per_task=opts.cpus_per_task,
        job_name=f"mec-{run['name']}", schedule=spec.schedule, work_dir=str(work_dir),
        resume="auto" if _has_checkpoints(work_dir) else None,
        pretrained=None if opts.no_pretrained else opts.pretrained_for(info.backbone),
        no_pretrained=opts.no_pretrained, amp=opts.amp, auto_scale_lr=opts.auto_scale_lr,
        max_iters=opts.max_iters or spec.max_iters, seed=spec.seed)


def _has_checkpoints(work_dir: Path) -> bool:
    """Whether a training left anything to resume from (or to refuse to start over on: damaged checkpoints)."""
    return (work_dir / "last_checkpoint").exists() or any(work_dir.glob("*.pth"))


def paired(doc: Dict[str, Any], run: Dict[str, Any]) -> bool:
    """Whether the run is one of a baseline-MEC pair of the study's comparisons: its evaluation then stores the
    per-image records that the paired bootstrap intervals of the gain are computed from."""
    return any(run["label"] in r["labels"] for r in doc["study"]["reports"] if r["kind"] in ("compare", "figures"))


def eval_options(study_dir: Path, run: Dict[str, Any], opts: StudyOptions, analysis: bool, slurm: bool = False,
                 checkpoint: Optional[str] = None, per_image: bool = False):
    """The `mec eval --checkpoint --per-stage` of a run (:class:`mec_cli.evaluation.checkpoint.EvalOptions`): the
    recipe with the training's overrides (so that the metrics record its lambda), every scoring mode, and with
    ``per_image`` each image's matches (`--per-image`, for `mec report compare --ci`)."""
    from mec_cli.evaluation.checkpoint import EvalOptions

    spec = run_spec(run)
    ckpt = checkpoint or run["train"].get("checkpoint") or str(Path(run["work_dir"]) / "<final checkpoint>")
    return EvalOptions(
        checkpoint=str(_abs(study_dir, ckpt)), recipe=spec.recipe, dataset=spec.dataset, data_root=opts.data_root,
        groups=opts.groups, cfg_options={**opts.cfg_options, **spec.train_cfg_options()}, per_stage=True,
        tau=spec.tau, analysis=analysis, per_image=per_image, gpus=opts.gpus, procs=1, slurm=slurm,
        partition=opts.partition,
        cpus_per_task=opts.cpus_per_task, job_name=f"mec-eval-{run['name']}")


def _flags(items: Dict[str, Any]) -> List[str]:
    out: List[str] = []
    for flag, value in items.items():
        if value is None or value is False:
            continue
        out += [flag] if value is True else [flag, str(value)]
    return out


def train_command(study_dir: Path, run: Dict[str, Any], opts: StudyOptions) -> str:
    """The `mec train` command line the run's training is equivalent to (for the manifest and the plan)."""
    t = train_options(study_dir, run, opts)
    cfg = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in t.cfg_options.items()]
    args = ["mec", "train", *_flags({"--recipe": t.recipe, "--dataset": t.dataset, "--schedule": t.schedule,
                                      "--gpus": t.gpus, "--procs": t.procs if t.procs > 1 else None,
                                      "--data-root": t.data_root, "--groups": t.groups, "--work-dir": t.work_dir,
                                      "--pretrained": t.pretrained, "--no-pretrained": t.no_pretrained,
                                      "--amp": t.amp, "--auto-scale-lr": t.auto_scale_lr, "--max-iters": t.max_iters,
                                      "--seed": t.seed}), *(["--cfg-options", *cfg] if cfg else []),
            "--resume"]
    return shlex.join(args)


def eval_command(study_dir: Path, run: Dict[str, Any], opts: StudyOptions, analysis: bool,
                 per_image: bool = False) -> str:
    e = eval_options(study_dir, run, opts, analysis, per_image=per_image)
    cfg = [f"{k}={v!r}" if isinstance(v, str) else f"{k}={v}" for k, v in e.cfg_options.items()]
    args = ["mec", "eval", *_flags({"--checkpoint": e.checkpoint, "--recipe": e.recipe, "--dataset": e.dataset,
                                     "--gpus": e.gpus, "--data-root": e.data_root, "--groups": e.groups,
                                     "--per-stage": True, "--tau": e.tau, "--analysis": e.analysis,
                                     "--per-image": e.per_image}),
            *(["--cfg-options", *cfg] if cfg else []), "--out", str(_abs(study_dir, run["work_dir"]) /
                                                                    "metrics.json")]
    return shlex.join(args)


def final_checkpoint(cfg, work_dir: Path) -> Path:
    """Where a training that ran to its end left its last checkpoint: iter_N.pth (iteration-based) or epoch_N.pth."""
    loop = cfg.train_cfg
    if loop.get("type") == "IterBasedTrainLoop" or "max_iters" in loop:
        return Path(work_dir) / f"iter_{int(loop['max_iters'])}.pth"
    return Path(work_dir) / f"epoch_{int(loop['max_epochs'])}.pth"


def _complete(path: Path) -> bool:
    from mec_cli.compat import check_checkpoint

    try:
        check_checkpoint(path)
    except MecError:
        return False
    return True


def _train(study_dir: Path, run: Dict[str, Any], opts: StudyOptions, slurm: bool) -> Dict[str, Any]:
    from mec_cli import training

    prepared = training.prepare_training(train_options(study_dir, run, opts, slurm))
    final = final_checkpoint(prepared.cfg, prepared.work_dir)
    for note in prepared.notes:
        print(f"mec study: {run['name']}: {note}", file=sys.stderr, flush=True)
    if not (final.is_file() and _complete(final)):
        training.train(prepared)
    if not final.is_file():
        raise MecError(f"training ended without its final checkpoint {final.name}", prepared.work_dir)
    rel = os.path.relpath(final, Path(study_dir).resolve())
    return {"checkpoint": rel, "config": os.path.relpath(prepared.work_dir / "config.py", Path(study_dir).resolve())}


def _evaluate(study_dir: Path, run: Dict[str, Any], opts: StudyOptions, analysis: bool, slurm: bool,
              per_image: bool) -> Dict:
    from mec_cli.evaluation.checkpoint import evaluate_checkpoint
    from mec_cli.io import write_json_atomic

    if run["train"]["status"] != "done" or not run["train"].get("checkpoint"):
        raise MecError(f"run {run['name']} has not finished training; evaluate it after its training")
    doc = evaluate_checkpoint(eval_options(study_dir, run, opts, analysis, slurm, per_image=per_image))
    out = Path(study_dir) / run["work_dir"] / "metrics.json"
    write_json_atomic(out, doc)
    return {"metrics": os.path.relpath(out, study_dir)}


def run_stage(study_dir, name: str, stage: str, slurm: bool = False) -> int:
    """Run ``stage`` ('train' or 'eval') of run ``name`` here and record it in the manifest; return the exit code
    (0 done, 143/130 stopped by a signal, 1 failed; the error is in the manifest and on stderr)."""
    from mec_cli.hooks import TrainingStopped
    from mec_cli.signals import EXIT_SIGINT, EXIT_SIGTERM, Terminated

    study_dir = Path(study_dir)
    if stage not in mf.STAGES:
        raise MecError(f"unknown stage {stage!r}; expected one of {', '.join(mf.STAGES)}")
    doc = mf.read_manifest(study_dir)
    run = mf.find_run(doc, name)
    opts = study_options(doc)
    with mf.hold_busy(mf.busy_path(study_dir, run["work_dir"])):
        entry = mf.set_stage(study_dir, name, stage, status="running", started=mf.now(), ended=None, error=None,
                             attempts=run[stage]["attempts"] + 1, host=os.uname().nodename, pid=os.getpid(),
                             slurm_job=_slurm_job())
        start = time.time()
        status, fields, code = "failed", {}, EXIT_FAILED
        try:
            if stage == "train":
                fields = _train(study_dir, run, opts, slurm)
            else:
                fields = _evaluate(study_dir, run, opts, bool(doc["study"].get("analysis")), slurm, paired(doc, run))
            status, code = "done", 0
        except TrainingStopped as stop:
            status, code = "interrupted", stop.exit_code
            fields = {"error": f"stopped by {stop.signal_name} after iteration {stop.iteration} with a checkpoint; "
                               "the study command resumes it", "iteration": stop.iteration}
        except KeyboardInterrupt as e:
            status, code = "interrupted", EXIT_SIGTERM if isinstance(e, Terminated) else EXIT_SIGINT
            fields = {"error": "stopped by " + ("SIGTERM" if code == EXIT_SIGTERM else "SIGINT")}
        except MecError as e:
            fields = {"error": str(e)}
            stopped = next((c for c in (EXIT_SIGTERM, EXIT_SIGINT) if f"exited with code {c}" in str(e)), None)
            if stopped is not None:  # torchrun's or srun's workers stopped by a signal (launch.run_worker's words)
                status, code = "interrupted", stopped
            else:
                print(f"mec study: {name} ({stage}): {e}", file=sys.stderr, flush=True)
        except Exception as e:  # a crash of the worker: recorded, with its traceback in the log
            traceback.print_exc()
            fields = {"error": f"{type(e).__name__}: {e}"}
        finally:
            mf.set_stage(study_dir, name, stage, status=status, ended=mf.now(),
                         wall_s=round(entry["wall_s"] + time.time() - start, 1), **fields)
        if stage == "train" and status == "done":  # the evaluation's command, with the checkpoint it will read
            trained = {**run, "train": {**run["train"], **fields}}
            mf.set_stage(study_dir, name, "eval", command=eval_command(
                study_dir, trained, opts, bool(doc["study"].get("analysis")), paired(doc, run)))
    return code


def _slurm_job() -> Optional[str]:
    job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if job and task:
        return f"{job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent (the study command) dies, however it dies."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: a kill of the study command then leaves this process running
        return
    if os.getppid() == 1:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv=None) -> None:
    from mec_cli.signals import install

    parser = argparse.ArgumentParser(prog="python -m mec_cli.study.runner")
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("exec", help="run one stage of one run")
    ex.add_argument("study_dir")
    ex.add_argument("--run", required=True, help="the run's name, or its index in the manifest")
    ex.add_argument("--stage", required=True, choices=list(mf.STAGES))
    ex.add_argument("--slurm", action="store_true", help="launch the worker through srun (inside a Slurm job)")
    ex.add_argument("--die-with-parent", action="store_true")
    rep = sub.add_parser("report", help="write the study's report")
    rep.add_argument("study_dir")
    args = parser.parse_args(argv)
    install()
    try:
        if args.command == "report":
            from mec_cli.study.engine import make_report

            index = make_report(Path(args.study_dir), always=True)
            print(f"mec study: report written: {index}" if index else "mec study: no run is evaluated: no report",
                  file=sys.stderr)
            sys.exit(0 if index else 1)
        if args.die_with_parent:
            die_with_parent()
        name = args.run
        if name.isdigit():
            runs = mf.read_manifest(args.study_dir)["runs"]
            name = runs[int(name)]["name"] if int(name) < len(runs) else name
        sys.exit(run_stage(args.study_dir, name, args.stage, slurm=args.slurm))
    except MecError as e:
        print(f"mec study: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
