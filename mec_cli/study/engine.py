"""A study from plan to report: what is done, what resumes, what starts; the sequential backend; the status table.

:func:`plan_study` compares the study with its directory's manifest (:mod:`.manifest`) and decides each stage of
each run: ``skip`` (done), ``start``, ``resume`` (interrupted, or running when its process was lost), ``retry``
(failed, only with ``retry_failed``), ``failed`` (failed, left alone) or ``wait`` (its training is not done). A run
whose settings differ from those recorded for it is refused (``changed='refuse'``: a study directory never mixes
results of two settings) or, for the demo, started over (``changed='redo'``).

:func:`run_study` writes the manifest, then runs the plan: here, each stage in a process of its own
(:mod:`.runner`), one after the other, each run trained then evaluated; or through Slurm (:mod:`.slurm`). Then the
report (:mod:`.report`), unless its inputs are those it was last made from.
"""
from __future__ import annotations

import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from mec_cli.errors import MecError
from mec_cli.study import manifest as mf
from mec_cli.study.spec import StudyOptions, StudySpec, build_spec

OPTION_FIELDS = ("data_root", "gpus", "procs", "nodes", "max_iters", "pretrained", "no_pretrained", "groups",
                 "cfg_options", "amp", "auto_scale_lr", "family", "partition", "time", "qos", "cpus_per_task",
                 "max_parallel")
KEY_OPTIONS = ("data_root", "groups", "no_pretrained", "amp", "auto_scale_lr", "cfg_options", "max_iters")


@dataclass
class Step:
    run: str
    stage: str
    action: str  # skip, start, resume, retry, failed, wait
    why: str = ""

    @property
    def works(self) -> bool:
        return self.action in ("start", "resume", "retry")


@dataclass
class Plan:
    spec: StudySpec
    study_dir: Path
    doc: Dict[str, Any]  # the manifest as it will be written
    steps: List[Step]
    redo: List[str]  # runs whose folders are emptied first (changed settings under changed='redo', or force)

    def steps_of(self, stage: str) -> List[Step]:
        return [s for s in self.steps if s.stage == stage]

    def todo(self, stage: str) -> List[str]:
        return [s.run for s in self.steps_of(stage) if s.works]


def _path(value: Optional[str]) -> Optional[str]:
    return None if value is None else str(Path(value).resolve())


def run_key(settings: Dict[str, Any], opts: StudyOptions, backbone: str, analysis: bool,
            extra: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Everything a run's result depends on, to tell a rerun of the same run from a changed one (the launch
    resources, which may change between machines, are not in it)."""
    key = {**settings, **{k: getattr(opts, k) for k in KEY_OPTIONS}, "analysis": analysis,
           "pretrained": _path(None if opts.no_pretrained else opts.pretrained_for(backbone))}
    key["data_root"], key["groups"] = _path(opts.data_root), _path(opts.groups)
    return {**key, **(extra or {})}


def _new_manifest(spec: StudySpec, study_dir: Path, opts: StudyOptions, extra_key) -> Dict[str, Any]:
    from mec_cli.recipes import resolve_recipe
    from mec_cli.study.runner import eval_command, paired, train_command

    doc = {"schema": mf.SCHEMA, "study": spec.summary(), "created": mf.now(), "updated": mf.now(),
           "options": {k: getattr(opts, k) for k in OPTION_FIELDS}, "runs": [], "report": {"status": "pending"},
           "python": sys.executable, "cwd": str(Path.cwd())}
    for run in spec.expand():
        settings = run.settings()
        entry = {"name": run.name, "label": run.label, "seed": run.seed, "recipe": run.recipe, "settings": settings,
                 "work_dir": f"runs/{run.name}", "config": f"runs/{run.name}/config.py"}
        per_image = paired(doc, entry)
        entry["key"] = {**run_key(settings, opts, resolve_recipe(run.recipe).backbone, spec.analysis, extra_key),
                        "per_image": per_image}
        entry["train"] = mf.new_stage("")
        entry["eval"] = mf.new_stage("")
        entry["eval"]["metrics"] = None
        entry["train"]["command"] = train_command(study_dir, entry, opts)
        entry["eval"]["command"] = eval_command(study_dir, entry, opts, spec.analysis, per_image)
        doc["runs"].append(entry)
    return doc


def _differences(old: Dict[str, Any], new: Dict[str, Any]) -> str:
    keys = sorted(set(old) | set(new))
    return "; ".join(f"{k}: {old.get(k)!r} then, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k))


def plan_study(spec: StudySpec, opts: StudyOptions, changed: str = "refuse", force: bool = False,
               extra_key: Optional[Dict[str, Any]] = None) -> Plan:
    """Decide every stage of every run against the study directory ``opts.out`` (nothing is written)."""
    from mec_cli.study.runner import eval_command

    study_dir = Path(opts.out)
    doc = _new_manifest(spec, study_dir, opts, extra_key)
    old = mf.read_manifest(study_dir) if mf.manifest_path(study_dir).is_file() else None
    if old is None and study_dir.is_dir() and any(not p.name.startswith(".") for p in study_dir.iterdir()) and \
            spec.name != "demo":
        raise MecError("exists and is not a study directory (no study.json): choose a new or empty folder for `out`",
                       study_dir)
    redo: List[str] = []
    if old is not None:
        if old["study"]["name"] != spec.name:
            raise MecError(f"holds the study {old['study']['name']!r}, not {spec.name!r}: choose another `out`",
                           study_dir)
        doc["created"], doc["report"] = old.get("created", doc["created"]), old.get("report", doc["report"])
        doc["slurm"] = old.get("slurm")
        before = {r["name"]: r for r in old["runs"]}
        for entry in doc["runs"]:
            prev = before.get(entry["name"])
            if prev is None:
                continue
            if force or prev["key"] != entry["key"]:
                if not force and changed == "refuse":
                    what = _differences(prev["key"], entry["key"])
                    raise MecError(f"run {entry['name']} was made with other settings ({what}): run the changed study "
                                   "into another `out`", study_dir)
                redo.append(entry["name"])
                continue
            for stage in mf.STAGES:
                kept = dict(prev[stage])
                kept["command"] = entry[stage]["command"]  # this invocation's launch options
                entry[stage] = kept
            if entry["train"].get("checkpoint"):
                per_image = entry["key"]["per_image"]
                entry["eval"]["command"] = eval_command(study_dir, entry, opts, spec.analysis, per_image)
            if mf.effective_status(study_dir, prev, "train") == "interrupted" and prev["train"]["status"] == "running":
                entry["train"]["status"] = "interrupted"
    steps: List[Step] = []
    for entry in doc["runs"]:
        train = _decide(study_dir, entry, "train", opts.retry_failed)
        steps.append(train)
        if train.works or entry["train"]["status"] != "done":
            after = "" if train.works else f"its training is {entry['train']['status']}"
            if entry["eval"]["status"] == "done" or train.works:  # a redone training makes its evaluation stale
                entry["eval"] = {**mf.new_stage(entry["eval"]["command"]), "metrics": None}
            steps.append(Step(entry["name"], "eval", "start" if train.works else "wait", after))
        else:
            steps.append(_decide(study_dir, entry, "eval", opts.retry_failed))
    return Plan(spec, study_dir, doc, steps, redo)


def _decide(study_dir: Path, entry: Dict[str, Any], stage: str, retry_failed: bool) -> Step:
    status = mf.effective_status(study_dir, entry, stage)
    name = entry["name"]
    if status == "done":
        return Step(name, stage, "skip", "done")
    if status == "running":
        return Step(name, stage, "wait", "running in another process")
    if status == "interrupted":
        return Step(name, stage, "resume", "interrupted: resumes from its last checkpoint" if stage == "train"
                    else "interrupted: evaluates again")
    if status == "failed":
        if retry_failed:
            return Step(name, stage, "retry", f"failed before ({entry[stage].get('error') or 'no message'})")
        return Step(name, stage, "failed", "failed; `retry_failed` runs it again")
    return Step(name, stage, "start", "")


def _digest(study_dir: Path, doc: Dict[str, Any]) -> Dict[str, Any]:
    """What the report is made from: the study, and each evaluated run's metrics file (size and time)."""
    files = {}
    for run in doc["runs"]:
        metrics = run["eval"].get("metrics")
        if run["eval"]["status"] == "done" and metrics and (study_dir / metrics).is_file():
            st = (study_dir / metrics).stat()
            files[run["name"]] = [st.st_size, st.st_mtime_ns]
    return {"study": doc["study"], "metrics": files}


def write_plan(plan: Plan) -> None:
    """Write the plan's manifest (under the lock), emptying the folders of runs to redo first."""
    study_dir = plan.study_dir
    study_dir.mkdir(parents=True, exist_ok=True)
    for name in plan.redo:
        work = study_dir / "runs" / name
        if work.is_dir():
            shutil.rmtree(work)
    with mf.locked(study_dir):
        mf.write_manifest(study_dir, plan.doc)


def preflight(plan: Plan, opts: StudyOptions) -> List[str]:
    """What would make a stage fail at once, found before anything starts or is queued: each run to train resolved
    as its training will resolve it (recipe, dataset, schedule, overrides, weights), and its training and
    validation annotations looked for. Returns one line per problem, naming the runs it concerns."""
    from mec_cli import recipes, training
    from mec_cli.study.runner import train_options

    problems: Dict[str, List[str]] = {}
    todo = set(plan.todo("train")) | set(plan.todo("eval"))
    seen = set()
    for entry in plan.doc["runs"]:
        key = repr({k: v for k, v in entry["settings"].items() if k != "seed"})
        if entry["name"] not in todo or key in seen:
            continue
        seen.add(key)
        topts = train_options(plan.study_dir, entry, opts)
        topts.dry_run, topts.resume = True, None
        found: List[str] = []
        try:
            prepared = training.prepare_training(topts)
        except MecError as e:
            found.append(str(e))
        else:
            found += [n[len("note: "):] for n in prepared.notes if "cannot be fetched" in n]
            for split in ("train", "val"):
                path = recipes.annotation_path(prepared.cfg, split)
                if not path.is_file():
                    found.append(f"{split} annotations {path} not found (set `data_root`)")
        for problem in found:
            problems.setdefault(problem, []).append(entry["label"])
    return [f"{problem} (run{'s' if len(labels) > 1 else ''} {', '.join(labels)})"
            for problem, labels in problems.items()]


Event = Callable[[str, str], None]


def run_local(plan: Plan, on_step: Optional[Event] = None,
              on_metrics: Optional[Callable[[str, Dict], None]] = None) -> Dict[str, Any]:
    """Run the plan here, each stage as `python -m mec_cli.study.runner exec` in a process of its own, each run
    trained then evaluated; ``on_step(step, status)`` hears 'start', 'skip', 'done', 'failed' or 'interrupted' for
    each step ('train NAME', 'eval NAME'). A SIGINT or SIGTERM (or a kill of this process: the stage's process gets
    SIGTERM) stops the running training after its iteration with a checkpoint, and this call with it."""
    from mec_cli.io import read_json
    from mec_cli.signals import EXIT_SIGTERM, Terminated, run_child

    report = on_step or (lambda step, status: None)
    study_dir = plan.study_dir
    timings: Dict[str, float] = {}
    failed: List[str] = []
    for step in plan.steps:  # the caller (run_study) holds the directory's lock
        label = f"{step.stage} {step.run}"
        if step.action == "wait" and step.stage == "eval":
            continue  # its training failed or is left alone: reported with the training
        if not step.works:
            report(label, "skip" if step.action == "skip" else step.action)
            continue
        doc = mf.read_manifest(study_dir)
        run = mf.find_run(doc, step.run)
        if step.stage == "eval" and run["train"]["status"] != "done":
            continue
        report(label, "start")
        start = time.time()
        cmd = [sys.executable, "-m", "mec_cli.study.runner", "exec", str(study_dir), "--run", step.run, "--stage",
               step.stage, "--die-with-parent"]
        code = run_child(cmd, env=dict(os.environ))
        timings[label] = round(time.time() - start, 1)
        run = mf.find_run(mf.read_manifest(study_dir), step.run)
        status = run[step.stage]["status"]
        if status == "running":  # its process died without a word (killed, out of memory)
            why = f"its process ended with code {code}" + (f" (signal {-code})" if code < 0 else "")
            mf.set_stage(study_dir, step.run, step.stage, status="failed", ended=mf.now(), error=why)
            status = "failed"
        report(label, status)
        if status == "interrupted":  # its process alone was stopped (this one would have raised already)
            raise Terminated() if code == EXIT_SIGTERM else KeyboardInterrupt()
        if status == "failed":
            failed.append(label)
        elif step.stage == "eval" and on_metrics is not None:
            on_metrics(run["label"], read_json(study_dir / run["eval"]["metrics"]))
    return {"timings_s": timings, "failed": failed}


def run_study(study, opts: StudyOptions, on_step: Optional[Event] = None,
              on_metrics: Optional[Callable[[str, Dict], None]] = None, changed: str = "refuse", force: bool = False,
              extra_key: Optional[Dict[str, Any]] = None, always_report: bool = False,
              report_layout: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """Plan ``study`` (a built-in name, a TOML file or a :class:`StudySpec`) against ``opts.out`` and run it:
    here, or through Slurm with ``opts.slurm``; with ``opts.dry_run`` only the plan (and the sbatch scripts) is
    returned and nothing is written or started. Returns a summary: the plan's steps, what ran, what failed, the
    report's index (None while runs are missing), and for Slurm the scripts and job ids.

    The study command holds the directory's lock (``DIR/.busy``) from the plan to the end, so a second study
    command on the same directory is refused (one line naming the process) instead of planning over the first."""
    opts.validate()
    if not opts.out:
        raise MecError("is needed: the study directory", option="out")
    study_dir = Path(opts.out)
    if study_dir.exists() and not study_dir.is_dir():
        raise MecError("is a file, not a study directory", study_dir)
    spec = study if isinstance(study, StudySpec) else build_spec(str(study), opts)
    if opts.dry_run:
        return _run_study(spec, opts, on_step, on_metrics, changed, force, extra_key, always_report, report_layout)
    with mf.hold_busy(study_dir / mf.BUSY):
        return _run_study(spec, opts, on_step, on_metrics, changed, force, extra_key, always_report, report_layout)


def _run_study(spec, opts, on_step, on_metrics, changed, force, extra_key, always_report, report_layout):
    plan = plan_study(spec, opts, changed=changed, force=force, extra_key=extra_key)
    summary: Dict[str, Any] = {"study": spec.name, "out": str(plan.study_dir), "notes": list(spec.notes),
                               "steps": [asdict(s) for s in plan.steps], "runs": len(plan.doc["runs"]),
                               "seeds": spec.seeds, "failed": [], "report": None,
                               "commands": [{"run": s.run, "stage": s.stage,
                                             "command": mf.find_run(plan.doc, s.run)[s.stage]["command"]}
                                            for s in plan.steps if s.works]}
    problems = preflight(plan, opts)
    summary["problems"] = problems
    if problems and not opts.dry_run:
        more = f" (and {len(problems) - 1} more: see `dry_run`)" if len(problems) > 1 else ""
        raise MecError(problems[0] + more)
    if opts.slurm:
        from mec_cli.study import slurm

        scripts = slurm.slurm_plan(plan, opts)
        summary["slurm"] = scripts
        if opts.dry_run:
            return summary
        slurm.check_queue(plan)
        write_plan(plan)
        summary["slurm"] = slurm.submit(plan, scripts)
        return summary
    if opts.dry_run:
        return summary
    write_plan(plan)
    summary.update(run_local(plan, on_step, on_metrics))
    summary["report"] = make_report(plan.study_dir, on_step, always=always_report, layout=report_layout)
    return summary


def make_report(study_dir: Path, on_step: Optional[Event] = None, always: bool = False,
                layout: Optional[Dict[str, Any]] = None) -> Optional[str]:
    """Build ``DIR/report/`` from the runs evaluated so far, unless it was made from the same inputs; returns the
    index's path (None when no run is evaluated yet)."""
    from mec_cli.study.report import build_report

    report = on_step or (lambda step, status: None)
    doc = mf.read_manifest(study_dir)
    digest = _digest(study_dir, doc)
    if not digest["metrics"]:
        return None
    previous = doc.get("report") or {}
    index = previous.get("index")
    if (not always and previous.get("status") == "done" and previous.get("inputs") == digest and index
            and (study_dir / index).is_file()):
        report("report", "skip")
        return str(study_dir / index)
    report("report", "start")
    result = build_report(study_dir, layout=layout)
    index = os.path.relpath(result["index"], study_dir)
    mf.update(study_dir, lambda d: d.update(report={"status": "done", "inputs": digest, "index": index,
                                                     "made": mf.now(), "outputs": len(result["outputs"])}))
    report("report", "done")
    return result["index"]


# ---- status ---------------------------------------------------------------------------------------------------
def study_status(study_dir) -> Dict[str, Any]:
    """Every run of the study directory with each stage's status as it stands, and the counts."""
    study_dir = Path(study_dir)
    doc = mf.read_manifest(study_dir)
    rows = []
    for run in doc["runs"]:
        row = {"name": run["name"], "label": run["label"], "seed": run["seed"], "recipe": run["recipe"]}
        for stage in mf.STAGES:
            entry = run[stage]
            row[stage] = mf.effective_status(study_dir, run, stage)
            row[f"{stage}_wall_s"] = entry.get("wall_s") or 0.0
            row[f"{stage}_attempts"] = entry.get("attempts", 0)
            row[f"{stage}_error"] = entry.get("error")
            row[f"{stage}_job"] = entry.get("slurm_job")
        row["checkpoint"] = run["train"].get("checkpoint") or _last_checkpoint(study_dir / run["work_dir"])
        row["metrics"] = run["eval"].get("metrics")
        rows.append(row)
    return {"study": doc["study"]["name"], "description": doc["study"]["description"], "dir": str(study_dir),
            "seeds": doc["study"]["seeds"], "runs": rows, "counts": mf.counts(study_dir, doc),
            "report": doc.get("report") or {}, "slurm": doc.get("slurm"), "updated": doc.get("updated")}


def _last_checkpoint(work_dir: Path) -> Optional[str]:
    marker = work_dir / "last_checkpoint"
    if marker.is_file():
        return Path(marker.read_text().strip()).name + " (so far)"
    return None
