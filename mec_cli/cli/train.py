"""`mec recipes` and `mec train`."""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import List, Optional

import typer
from rich.markup import escape

from mec_cli.cli import app
from mec_cli.cli._common import cli_errors, cli_text, console, data_table, print_json, print_table, rel
from mec_cli.cli._launch import CONFIG, DATA_ROOT, DATASET, GROUPS, PROCS, RECIPE, launch_fields
from mec_cli.training import TrainOptions

recipes_app = typer.Typer(help="List the recipes and show their resolved configs.", no_args_is_help=False,
                          rich_markup_mode="rich", invoke_without_command=True)
app.add_typer(recipes_app, name="recipes")


@recipes_app.callback(invoke_without_command=True,
                      epilog="Examples:\n\n  [bold]mec recipes[/]\n\n  [bold]mec recipes --json[/]\n\n"
                      "  [bold]mec recipes show htc_r101[/]")
@cli_errors
def recipes_list(ctx: typer.Context, as_json: bool = typer.Option(False, "--json",
                                                                  help="Print the list as JSON.")) -> None:
    """List recipes: short name, model, dataset, stages, MEC on/off, classifier."""
    if ctx.invoked_subcommand is not None:
        return
    from mec_cli.recipes import DEFAULT_RECIPE, list_recipes

    rows = [r.row() for r in list_recipes()]
    if as_json:
        print_json(rows)
        return
    table = data_table("recipes (use the name with --recipe; `mec train --dataset coco_lt` swaps LVIS v1 for COCO-LT)")
    for col in ("name", "model", "backbone", "dataset", "stages", "MEC", "classifier"):
        table.add_column(col, no_wrap=col == "name")
    for r in rows:
        name = f"{r['name']} (default)" if r["name"] == DEFAULT_RECIPE else r["name"]
        table.add_row(name, r["model"], r["backbone"], r["dataset"], str(r["stages"]), "yes" if r["mec"] else "-",
                      r["classifier"])
    print_table(table)


@recipes_app.command("show",
                     epilog="Examples:\n\n  [bold]mec recipes show htc_r101[/]\n\n"
                     "  [bold]mec recipes show tiny --dataset synth[/]")
@cli_errors
def recipes_show(
    name: str = typer.Argument(..., help="Short name, unique prefix or file name."),
    dataset: Optional[str] = typer.Option(None, help="Swap the dataset part: lvis_v1, coco_lt or synth."),
    schedule: Optional[str] = typer.Option(None, help="Swap the schedule part (see `mec train --help`)."),
) -> None:
    """Print the fully resolved MMDetection config of a recipe."""
    from mec_cli.recipes import apply_schedule, load_config, resolve_recipe

    info = resolve_recipe(name)
    cfg = load_config(info.file, dataset=dataset)
    if schedule:
        apply_schedule(cfg, schedule)
    console.print(f"# {escape(info.name)}: {rel(info.file)}")
    console.print(cfg.pretty_text, markup=False, soft_wrap=True)


@app.command(epilog="Examples:\n\n  [bold]mec train --recipe htc_r101 --gpus 8[/]\n\n"
             "  [bold]mec train --recipe htc_r101 --gpus 8 --nodes 2 --node-rank 0 --master-addr 10.0.0.1[/]\n\n"
             "  [bold]mec train --recipe cascade_r50 --slurm --partition gpu --gpus 8[/]\n\n"
             "  [bold]mec train --recipe tiny --gpus 0 --data-root data/synth --work-dir work_dirs/tiny[/]\n\n"
             "  [bold]mec train --recipe tiny --gpus 0 --procs 2 --max-iters 20[/]   (2 CPU processes, gloo)\n\n"
             "  [bold]mec train --recipe tiny --gpus 0 --resume[/]   (continue from the last checkpoint)")
@cli_errors
def train(
    recipe: Optional[str] = RECIPE,
    config: Optional[Path] = CONFIG,
    dataset: Optional[str] = DATASET,
    schedule: Optional[str] = typer.Option(TrainOptions.schedule, help="Schedule part of recipes/_base_/schedules, "
                                           "e.g. lvis_8xb2-20e_steps-12-16 (Appendix A.2's LR steps; the default is "
                                           "A.1's 16/18)."),
    gpus: int = typer.Option(TrainOptions.gpus, help="GPUs per node; >1 launches torchrun; 0 trains on the CPU."),
    procs: int = PROCS,
    nodes: int = typer.Option(TrainOptions.nodes, help="Number of nodes."),
    node_rank: int = typer.Option(TrainOptions.node_rank, help="Rank of this node."),
    master_addr: str = typer.Option(TrainOptions.master_addr, help="Address of node 0."),
    master_port: int = typer.Option(TrainOptions.master_port, help="Port on node 0."),
    slurm: bool = typer.Option(TrainOptions.slurm, help="Launch through srun."),
    partition: Optional[str] = typer.Option(TrainOptions.partition, help="Slurm partition."),
    job_name: Optional[str] = typer.Option(TrainOptions.job_name, help="Slurm job name."),
    cpus_per_task: int = typer.Option(TrainOptions.cpus_per_task, help="Slurm CPUs per task."),
    time_limit: Optional[str] = typer.Option(TrainOptions.time, "--time", help="Slurm time limit, e.g. 2-00:00:00."),
    qos: Optional[str] = typer.Option(TrainOptions.qos, help="Slurm QOS."),
    work_dir: Optional[Path] = typer.Option(TrainOptions.work_dir, help="Work dir (default work_dirs/<recipe>)."),
    resume: Optional[str] = typer.Option(TrainOptions.resume, "--resume", metavar="[CKPT]",
                                         help="Resume: alone (or 'auto'), from the work dir's last checkpoint; or "
                                              "from CKPT."),
    groups: Optional[Path] = GROUPS,
    data_root: Optional[str] = DATA_ROOT,
    pretrained: Optional[Path] = typer.Option(TrainOptions.pretrained, help="Local ImageNet backbone checkpoint."),
    no_pretrained: bool = typer.Option(TrainOptions.no_pretrained, "--no-pretrained",
                                       help="Train the backbone from scratch."),
    amp: bool = typer.Option(TrainOptions.amp, help="Mixed precision (CUDA)."),
    auto_scale_lr: bool = typer.Option(TrainOptions.auto_scale_lr,
                                       help="Scale the learning rate to the actual total batch size."),
    cfg_options: Optional[List[str]] = typer.Option(None, "--cfg-options",
                                                    help="Config overrides key=value (repeatable)."),
    max_iters: Optional[int] = typer.Option(TrainOptions.max_iters,
                                            help="Override the iteration count (iteration-based recipes)."),
    seed: Optional[int] = typer.Option(TrainOptions.seed, help="Random seed."),
    dry_run: bool = typer.Option(TrainOptions.dry_run, "--dry-run",
                                 help="Print the command line and resolved config; run nothing."),
) -> None:
    """Train a recipe on one GPU, many GPUs or nodes (torchrun), Slurm (srun) or the CPU."""
    from rich.table import Table

    from mec_cli import training
    from mec_cli.cli._common import refuse_given
    from mec_cli.launch import parse_cfg_options

    # every option must apply to the launch asked for: one that would change nothing is refused, not ignored
    if not slurm:
        refuse_given(("partition", "job_name", "cpus_per_task", "time_limit", "qos"), "without --slurm")
    if gpus > 0:
        refuse_given(("procs",), "with --gpus > 0 (it counts CPU processes, for --gpus 0)")
    if slurm:
        refuse_given(("node_rank", "master_addr"), "with --slurm (srun places the ranks)")
    elif nodes <= 1:
        refuse_given(("node_rank", "master_addr"), "to one node (they place it among several: --nodes > 1)")
        if (gpus if gpus > 0 else procs) <= 1:
            refuse_given(("master_port",), "to one process (it is torchrun's port, for several processes)")

    if recipe is None and config is None:
        from mec_cli.recipes import DEFAULT_RECIPE

        recipe = DEFAULT_RECIPE
    opts = TrainOptions(
        **launch_fields(recipe, config, dataset, data_root, groups, procs), gpus=gpus, nodes=nodes,
        node_rank=node_rank, master_addr=master_addr, master_port=master_port, slurm=slurm, partition=partition,
        job_name=job_name, cpus_per_task=cpus_per_task, time=time_limit, qos=qos,
        cfg_options=parse_cfg_options(cfg_options or []), schedule=schedule,
        work_dir=str(work_dir) if work_dir else None, resume=resume,
        pretrained=str(pretrained) if pretrained else None, no_pretrained=no_pretrained, amp=amp,
        auto_scale_lr=auto_scale_lr, max_iters=max_iters, seed=seed, dry_run=dry_run)
    run = training.prepare_training(opts)
    for note in run.notes:
        console.print(f"[yellow]{escape(cli_text(note, train))}[/]")
    if dry_run:
        console.print("# command", markup=False)
        console.print(shlex.join(run.command), markup=False, soft_wrap=True)
        console.print(f"# resolved config ({rel(run.work_dir / 'config.py')})")
        console.print(run.cfg.pretty_text, markup=False, soft_wrap=True)
        return
    console.print(f"[bold]training[/] {escape(run.recipe_name)} -> {rel(run.work_dir)}\n"
                  f"  {escape(shlex.join(run.command))}", soft_wrap=True)
    from mec_cli.hooks import TrainingStopped

    try:
        summary = training.train(run)
    except TrainingStopped as stop:
        console.print(f"[yellow]{escape(cli_text(str(stop), train))}[/]", soft_wrap=True)
        raise typer.Exit(stop.exit_code) from None
    table = Table(title="training finished", show_header=False)
    table.add_row("work dir", rel(Path(summary["work_dir"])))
    table.add_row("last checkpoint", rel(Path(summary["last_checkpoint"])) if summary["last_checkpoint"] else "-")
    table.add_row("wall time", f"{summary['wall_time_s']:.0f} s")
    console.print(table)
