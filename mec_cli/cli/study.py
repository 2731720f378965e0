"""`mec study run|status|report|list`: the paper's whole studies as one resumable command."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from mec_cli.cli import app
from mec_cli.cli._common import cli_errors, cli_text, console, data_table, print_json, print_table, rel
from mec_cli.cli._launch import DATA_ROOT, GROUPS, PROCS
from mec_cli.study.spec import StudyOptions

study_app = typer.Typer(help="The paper's whole studies (trainings, evaluations, reports) as one resumable command, "
                             "here or through Slurm, with seeds.", no_args_is_help=True, rich_markup_mode="rich")
app.add_typer(study_app, name="study")

STATUS_STYLE = {"done": "green", "running": "cyan", "interrupted": "yellow", "failed": "red", "pending": "dim",
                "start": "cyan", "resume": "yellow", "retry": "yellow", "skip": "green", "wait": "dim"}


def _styled(text: str) -> str:
    style = STATUS_STYLE.get(text)
    return f"[{style}]{escape(text)}[/]" if style else escape(text)


@study_app.command("run", epilog="Examples:\n\n"
                   "  [bold]mec study run table2c --family tiny --gpus 0 --data-root data/synth --seeds 2 "
                   "--max-iters 160 --out studies/t2c[/]\n\n"
                   "  [bold]mec study run table1 --out studies/table1 --gpus 8 --data-root data/lvis_v1 "
                   "--pretrained R-50=resnet50.pth --pretrained R-101=resnet101.pth[/]\n\n"
                   "  [bold]mec study run table1 --out studies/table1 --slurm --partition gpu --gpus 8 --nodes 2 "
                   "--dry-run[/]   (print the plan and the sbatch scripts)\n\n"
                   "  [bold]mec study run my_sweep.toml --out studies/sweep --retry-failed[/]\n\n"
                   "Run the same command again to continue: what is done is skipped, an interrupted training "
                   "resumes from its last checkpoint, a failed one runs again only with --retry-failed.")
@cli_errors
def run(
    spec: str = typer.Argument(..., help="A built-in study (table1, table2c, lambda, stages, coco-lt, demo; see "
                               "`mec study list`) or a TOML study file."),
    out: Path = typer.Option(..., "--out", "-o", help="The study directory (manifest, runs, report)."),
    seeds: Optional[int] = typer.Option(StudyOptions.seeds, help="Repeat every run with seeds 0..K-1 (default: the "
                                        "study's own, one seed for the built-ins)."),
    family: str = typer.Option(StudyOptions.family, help="'tiny' puts the study on the tiny CPU recipes (synthetic "
                               "data); 'paper' keeps the paper's recipes."),
    data_root: Optional[str] = DATA_ROOT,
    gpus: int = typer.Option(StudyOptions.gpus, help="GPUs per node for every run; >1 runs torchrun; 0 the CPU."),
    procs: int = PROCS,
    nodes: int = typer.Option(StudyOptions.nodes, help="Nodes per training (with --slurm)."),
    max_iters: Optional[int] = typer.Option(StudyOptions.max_iters, help="Iterations of every training "
                                            "(iteration-based recipes: the tiny ones)."),
    pretrained: Optional[List[str]] = typer.Option(None, "--pretrained", help="Backbone weights: PATH for every run, "
                                                   "or BACKBONE=PATH (R-50=..., R-101=...); repeatable."),
    no_pretrained: bool = typer.Option(StudyOptions.no_pretrained, "--no-pretrained",
                                       help="Train every backbone from scratch."),
    groups: Optional[Path] = GROUPS,
    cfg_options: Optional[List[str]] = typer.Option(None, "--cfg-options", help="Config overrides key=value for "
                                                    "every run (repeatable)."),
    amp: bool = typer.Option(StudyOptions.amp, help="Mixed precision (CUDA)."),
    auto_scale_lr: bool = typer.Option(StudyOptions.auto_scale_lr, help="Scale the learning rate to the actual "
                                       "total batch size."),
    retry_failed: bool = typer.Option(StudyOptions.retry_failed, "--retry-failed",
                                      help="Run the failed trainings and evaluations again."),
    dry_run: bool = typer.Option(StudyOptions.dry_run, "--dry-run", help="Print the plan (and the sbatch scripts); "
                                 "write and start nothing."),
    slurm: bool = typer.Option(StudyOptions.slurm, "--slurm", help="Submit job arrays (trainings, evaluations) and "
                               "a report job instead of running here."),
    partition: Optional[str] = typer.Option(StudyOptions.partition, help="Slurm partition."),
    time_limit: Optional[str] = typer.Option(StudyOptions.time, "--time", help="Slurm time limit per job, e.g. "
                                             "2-00:00:00 (a job stopped by it requeues itself and resumes)."),
    qos: Optional[str] = typer.Option(StudyOptions.qos, help="Slurm QOS."),
    cpus_per_task: int = typer.Option(StudyOptions.cpus_per_task, help="Slurm CPUs per task."),
    max_parallel: Optional[int] = typer.Option(StudyOptions.max_parallel, help="Slurm: at most this many array "
                                               "tasks at once."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Run a study: every training and evaluation it needs, then its report in OUT/report/."""
    import time

    from mec_cli.launch import parse_cfg_options
    from mec_cli.study.engine import run_study

    opts = StudyOptions(out=str(out), data_root=data_root, gpus=gpus, procs=procs, nodes=nodes, max_iters=max_iters,
                        pretrained=list(pretrained or []), no_pretrained=no_pretrained,
                        groups=str(groups) if groups else None, cfg_options=parse_cfg_options(cfg_options or []),
                        amp=amp, auto_scale_lr=auto_scale_lr, seeds=seeds, family=family, retry_failed=retry_failed,
                        dry_run=dry_run, slurm=slurm, partition=partition, time=time_limit, qos=qos,
                        cpus_per_task=cpus_per_task, max_parallel=max_parallel)
    start = time.time()
    counter = {"n": 0}

    def on_step(name: str, status: str) -> None:
        if as_json:
            return
        if not counter.get("header"):  # once the study is resolved and planned: a bad study is one line alone
            counter["header"] = 1
            console.print(f"[bold]mec study {escape(spec)}[/] -> {rel(out)}")
        elapsed = time.time() - start
        if status == "start":
            counter["n"] += 1
            console.print(f"[bold cyan]{escape(name)}[/] ... ({elapsed:.0f} s)")
        elif status in ("skip", "done"):
            if status == "done":
                console.print(f"[green]{escape(name)}: done[/] ({elapsed:.0f} s)")
        else:
            console.print(f"{_styled(status)} {escape(name)} ({elapsed:.0f} s)")

    summary = run_study(spec, opts, on_step=on_step)
    if as_json:
        print_json(summary)
        return
    _print_plan(summary, dry_run)
    for problem in summary.get("problems") or []:
        console.print(f"[yellow]would fail: {escape(cli_text(problem, run))}[/]", soft_wrap=True)
    if summary.get("slurm"):
        _print_slurm(summary["slurm"], dry_run)
    if dry_run or slurm:
        if slurm and not dry_run:
            console.print(f"follow it with [bold]mec study status {rel(out)}[/]")
        return
    if summary["report"]:
        console.print(f"[bold]report:[/] {rel(Path(summary['report']))}")
    failed = summary["failed"]
    if failed:
        console.print(f"[red]{len(failed)} stage(s) failed: {escape(', '.join(failed))}[/]; their errors: "
                      f"[bold]mec study status {rel(out)}[/]; run again with --retry-failed")
        raise typer.Exit(1)
    console.print(f"[bold]study {escape(summary['study'])} finished[/] in {time.time() - start:.0f} s")


def _print_plan(summary, dry_run: bool) -> None:
    steps = summary["steps"]
    work = [s for s in steps if s["action"] in ("start", "resume", "retry")]
    if not dry_run:
        skipped = sum(1 for s in steps if s["action"] == "skip")
        console.print(f"{len(work)} stage(s) run, {skipped} done before" +
                      (f"; seeds {', '.join(map(str, summary['seeds']))}" if len(summary["seeds"]) > 1 else ""))
        return
    table = data_table(f"plan of study {escape(summary['study'])}: {summary['runs']} runs, seeds "
                       f"{', '.join(map(str, summary['seeds']))}")
    for col in ("run", "train", "eval", "why"):
        table.add_column(col, no_wrap=col != "why")
    by_run = {}
    for s in steps:
        by_run.setdefault(s["run"], {})[s["stage"]] = s
    for name, stages in by_run.items():
        why = "; ".join(s["why"] for s in stages.values() if s["why"] and s["action"] != "skip")
        table.add_row(escape(name), _styled(stages["train"]["action"]), _styled(stages["eval"]["action"]), escape(why))
    print_table(table)
    for note in summary["notes"]:
        console.print(f"[dim]{escape(note)}[/]", soft_wrap=True)
    if not summary.get("slurm"):
        console.print("# what each stage runs (in a process of its own, in this order):", markup=False)
        for c in summary["commands"]:
            console.print(c["command"], markup=False, soft_wrap=True)
    console.print(f"{len(work)} stage(s) to run; nothing written, nothing started (--dry-run)")


def _print_slurm(plan, dry_run: bool) -> None:
    jobs = plan["jobs"]
    if not jobs:
        console.print("nothing to submit: every stage is done (or failed: --retry-failed)")
        return
    if dry_run:
        for job in jobs:
            console.print(f"\n# ---- {job['path']}", markup=False)
            console.print(job["script"], markup=False, soft_wrap=True, end="")
        console.print("\n# ---- submitted in this order:", markup=False)
        for job in jobs:
            console.print(job["command"], markup=False, soft_wrap=True)
        return
    for job in jobs:
        console.print(f"submitted {job['job']}: job {escape(str(job['id']))} ({len(job['runs'])} tasks)"
                      if job["runs"] else f"submitted {job['job']}: job {escape(str(job['id']))}")


@study_app.command("status", epilog="Examples:\n\n  [bold]mec study status studies/table1[/]\n\n"
                   "  [bold]mec study status studies/table1 --json[/]")
@cli_errors
def status(study_dir: Path = typer.Argument(..., help="The study directory."),
           as_json: bool = typer.Option(False, "--json", help="Print it as JSON.")) -> None:
    """Show every run of a study: each stage's status, attempts, wall time, checkpoint and metrics."""
    from mec_cli.study.engine import study_status

    st = study_status(study_dir)
    if as_json:
        print_json(st)
        return
    table = data_table(f"study {escape(st['study'])} in {rel(study_dir)}: seeds {', '.join(map(str, st['seeds']))}",
                       caption=escape(st["description"]))
    for col in ("run", "seed", "recipe", "train", "time", "eval", "time ", "checkpoint / metrics / error"):
        table.add_column(col, no_wrap=col not in ("checkpoint / metrics / error",))
    for r in st["runs"]:
        error = r["train_error"] if r["train"] in ("failed", "interrupted") else (
            r["eval_error"] if r["eval"] in ("failed", "interrupted") else None)
        where = error or r["metrics"] or r["checkpoint"] or ""
        job = r["train_job"] if r["train"] != "done" else r["eval_job"]
        table.add_row(escape(r["label"]), str(r["seed"]), escape(r["recipe"]),
                      _styled(r["train"]) + (f" x{r['train_attempts']}" if r["train_attempts"] > 1 else ""),
                      _duration(r["train_wall_s"]), _styled(r["eval"]), _duration(r["eval_wall_s"]),
                      escape(str(where)) + (f" [dim](job {escape(str(job))})[/]" if job and not error else ""))
    print_table(table)
    c = st["counts"]
    console.print("train: " + ", ".join(f"{_styled(k)} {v}" for k, v in c["train"].items() if v) + "; eval: " +
                  ", ".join(f"{_styled(k)} {v}" for k, v in c["eval"].items() if v))
    report = st["report"]
    if report.get("status") == "done":
        console.print(f"report: {rel(Path(st['dir']) / report['index'])} (made {report.get('made')})")


def _duration(seconds: float) -> str:
    if not seconds:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@study_app.command("report", epilog="Example: [bold]mec study report studies/table1[/]")
@cli_errors
def report(study_dir: Path = typer.Argument(..., help="The study directory.")) -> None:
    """Write (again) a study's report, OUT/report/, from the runs evaluated so far."""
    from mec_cli.study.engine import make_report

    index = make_report(study_dir, always=True)
    if index is None:
        console.print("no run is evaluated yet: nothing to report")
        raise typer.Exit(1)
    console.print(f"wrote [bold]{rel(Path(index))}[/]")


@study_app.command("list", epilog="Examples:\n\n  [bold]mec study list[/]\n\n  [bold]mec study list --family tiny[/]")
@cli_errors
def list_studies(family: str = typer.Option("paper", help="Show the runs on this family of recipes (paper, tiny)."),
                 as_json: bool = typer.Option(False, "--json", help="Print them as JSON.")) -> None:
    """List the built-in studies: what each reproduces and its runs."""
    from mec_cli.study.spec import BUILT_INS, map_family

    specs = [map_family(make(), family) for make in BUILT_INS.values()]
    if as_json:
        print_json([s.summary() for s in specs])
        return
    table = data_table("built-in studies (`mec study run NAME --out DIR`)")
    for col in ("name", "runs", "reports", "what"):
        table.add_column(col, no_wrap=col == "name")
    for s in specs:
        runs = ", ".join(r.label + (f" (lam {r.lam:g})" if r.lam is not None else "") +
                         (f" [{r.dataset}]" if r.dataset else "") for r in s.runs)
        table.add_row(escape(s.name), escape(runs), escape(", ".join(r.kind for r in s.reports)), escape(s.description))
    print_table(table)
