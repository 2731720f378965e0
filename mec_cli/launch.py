"""Training launch: resolve a recipe into a ready config, and build the launcher command line as data.

One process runs mmengine's Runner in this process. Several processes (``gpus > 1``, ``procs > 1`` on
the CPU with gloo, or several nodes) go through ``torchrun``; ``slurm`` goes through ``srun``. Each of
those starts ``python -m mec_cli.worker train CONFIG`` per process, with the resolved config that
this module wrote into the work dir.
"""
from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

from mec_cli.errors import SEED_MAX, MecError, check_number

OFFLINE_WEIGHTS = ("torchvision://", "open-mmlab://", "http://", "https://", "mmcls://")


@dataclass
class TrainOptions:
    recipe: Optional[str] = None
    config: Optional[str] = None
    dataset: Optional[str] = None
    gpus: int = 1
    procs: int = 1
    nodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    slurm: bool = False
    partition: Optional[str] = None
    job_name: Optional[str] = None
    cpus_per_task: int = 5
    time: Optional[str] = None
    qos: Optional[str] = None
    srun_args: List[str] = field(default_factory=list)
    work_dir: Optional[str] = None
    resume: Optional[str] = None  # None, 'auto' or a checkpoint path
    groups: Optional[str] = None
    data_root: Optional[str] = None
    pretrained: Optional[str] = None
    no_pretrained: bool = False
    amp: bool = False
    auto_scale_lr: bool = False
    cfg_options: Dict = field(default_factory=dict)
    dry_run: bool = False
    max_iters: Optional[int] = None
    seed: Optional[int] = None
    schedule: Optional[str] = None

    def validate(self) -> None:
        """Refuse impossible options before any work starts (one MecError naming the option)."""
        check_number("gpus", self.gpus, 0, integer=True)
        check_number("procs", self.procs, 1, integer=True)
        check_number("nodes", self.nodes, 1, integer=True)
        check_number("node_rank", self.node_rank, 0, self.nodes - 1, integer=True)
        check_number("master_port", self.master_port, 1, 65535, integer=True)
        check_number("cpus_per_task", self.cpus_per_task, 1, integer=True)
        check_number("max_iters", self.max_iters, 1, integer=True)
        check_number("seed", self.seed, 0, SEED_MAX, integer=True)
        if self.no_pretrained and self.pretrained:
            raise MecError("give either pretrained weights or no_pretrained, not both", option="no_pretrained")

    @property
    def world_size(self) -> int:
        per_node = self.gpus if self.gpus > 0 else self.procs
        return max(1, per_node) * max(1, self.nodes)

    @property
    def distributed(self) -> bool:
        return self.slurm or self.world_size > 1


@dataclass
class PreparedRun:
    cfg: object
    work_dir: Path
    recipe_name: str
    notes: List[str]
    groups_doc: Optional[Dict] = None
    command: List[str] = field(default_factory=list)


def check_devices(gpus: int) -> None:
    """Refuse more GPUs than CUDA sees (none on a CPU machine) before anything starts."""
    if gpus <= 0:
        return
    import torch

    seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > seen:
        where = f"CUDA sees {seen}" if seen else "no CUDA device is visible (0 runs on the CPU)"
        raise MecError(f"asks for {gpus} GPUs, but {where}", option="gpus")


def parse_cfg_options(items: List[str]) -> Dict:
    """``k=v`` pairs as mmengine's DictAction reads them (v parsed as a Python literal where it is one)."""
    import ast

    out: Dict = {}
    for item in items or []:
        if "=" not in item:
            raise MecError(f"--cfg-options takes key=value pairs, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _apply_pretrained(cfg, opts: TrainOptions, notes: List[str]) -> None:
    backbone = cfg.model.backbone
    if opts.no_pretrained:
        backbone.init_cfg = None
        return
    if opts.pretrained:
        from mec_cli.compat import check_checkpoint

        path = Path(opts.pretrained)
        if not path.is_file():
            raise MecError("pretrained backbone weights not found", path)
        check_checkpoint(path)
        backbone.init_cfg = dict(type="Pretrained", checkpoint=str(path.resolve()))
        return
    init = backbone.get("init_cfg") or {}
    ckpt = str(init.get("checkpoint", "")) if init.get("type") == "Pretrained" else ""
    if ckpt.startswith(OFFLINE_WEIGHTS):
        name = ckpt.split("://", 1)[-1].split("/")[-1]
        msg = (f"backbone weights {ckpt} cannot be fetched on this machine: download the ImageNet {name} "
               f"checkpoint (e.g. {name}-*.pth) elsewhere and pass --pretrained PATH, or train from scratch with --no-pretrained")
        if opts.dry_run:
            notes.append("note: " + msg)
        else:
            raise MecError(msg)


def _apply_groups(cfg, opts: TrainOptions, ann: Optional[Dict], notes: List[str]) -> Optional[Dict]:
    """Fill ``mec.class_groups`` from --groups or from the training annotations with the recipe's bins."""
    from mec_cli import recipes
    from mec_cli.data.annotations import category_counts
    from mec_cli.data.groups import build_groups, load_groups, parse_bins
    from mec_cli.io import sha256_file

    ann_path = recipes.annotation_path(cfg, "train")
    if opts.groups:
        spec = load_groups(opts.groups)
        doc = spec.doc
        if spec.num_groups != cfg.model.roi_head.num_stages:
            raise MecError(f"has {spec.num_groups} groups but the recipe has {cfg.model.roi_head.num_stages} stages", opts.groups)
        bins = list(recipes.mec_bins(cfg))
        if spec.bins != bins or spec.count_by != "instances":
            notes.append(f"warning: {opts.groups} groups categories by {spec.count_by} with bins {spec.bins}; the recipe's "
                         f"groups are by instances with bins {bins}. Training uses the file's groups.")
    elif ann is not None:
        doc = build_groups(category_counts(ann), parse_bins(recipes.mec_bins(cfg)), "instances", str(ann_path), sha256_file(ann_path))
    elif opts.dry_run:
        notes.append(f"note: {ann_path} not found here; a real run computes the class groups from it (or pass --groups)")
        return None
    else:
        raise MecError("training annotations not found (set --data-root, or pass --groups)", ann_path)
    if ann is None:
        notes.append(f"note: {ann_path} not found; groups are applied in category-id order")
        cat_ids = sorted(int(k) for k in doc["category_group"])
    else:
        cat_ids = recipes.label_category_ids(cfg, ann)
    groups = {int(k): int(v) for k, v in doc["category_group"].items()}
    missing = [c for c in cat_ids if c not in groups]
    if missing:
        raise MecError(f"groups have no entry for category id {missing[0]} of {ann_path}", opts.groups or ann_path)
    recipes.set_class_groups(cfg, [groups[c] for c in cat_ids])
    return doc


def _match_classes(cfg, ann: Optional[Dict], notes: List[str]) -> None:
    """Adapt the class count (and names) to the training annotation file when they differ from the recipe."""
    from mec_cli import recipes

    if ann is None or recipes.inner_dataset(cfg.train_dataloader.dataset).get("type") == "CocoDataset":
        return  # COCO datasets select classes by metainfo names
    cats = ann.get("categories", [])
    heads = cfg.model.roi_head.bbox_head
    current = (heads[0] if isinstance(heads, (list, tuple)) else heads)["num_classes"]
    if cats and len(cats) != current:
        recipes.set_num_classes(cfg, len(cats))
        names = tuple(c["name"] for c in cats)
        for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
            recipes.inner_dataset(cfg[key].dataset).metainfo = dict(classes=names)
        notes.append(f"note: {recipes.annotation_path(cfg, 'train')} has {len(cats)} categories; the model was set to {len(cats)} classes")


def prepare_training(opts: TrainOptions) -> PreparedRun:
    """Resolve the recipe into the exact config that will run (nothing is written or started)."""
    opts.validate()
    import torch

    from mec_cli import recipes
    from mec_cli.data.annotations import load_annotations

    path = recipes.config_path(opts.recipe, opts.config)
    cfg = recipes.load_config(path, dataset=opts.dataset)
    name = cfg.get("mec_recipe", {}).get("name", path.stem)
    notes: List[str] = []
    if opts.data_root:
        recipes.set_data_root(cfg, opts.data_root)
    if opts.cfg_options:
        cfg.merge_from_dict(opts.cfg_options)
    # The training annotations are read (and validated) once, for the class count and the groups.
    ann_path = recipes.annotation_path(cfg, "train")
    needs_ann = not opts.dry_run or (recipes.is_mec(cfg) and not opts.groups)
    ann = load_annotations(ann_path) if needs_ann and ann_path.is_file() else None
    _match_classes(cfg, ann, notes)
    _apply_pretrained(cfg, opts, notes)
    groups_doc = _apply_groups(cfg, opts, ann, notes) if recipes.is_mec(cfg) else None
    if opts.schedule:
        recipes.apply_schedule(cfg, opts.schedule)
    if opts.max_iters is not None:
        set_max_iters(cfg, opts.max_iters)
    cuda = torch.cuda.is_available()
    if not opts.dry_run and not opts.slurm and opts.nodes == 1:  # other nodes' GPUs cannot be counted from here
        check_devices(opts.gpus)
    if opts.amp:
        if not cuda and not opts.dry_run:
            raise MecError("--amp needs a CUDA device")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if opts.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    note = batch_note(cfg, opts.world_size)
    if note:
        notes.append(note)
    on_cpu = opts.gpus == 0 or (not cuda and not opts.dry_run)
    if on_cpu:
        cfg.env_cfg.dist_cfg = dict(backend="gloo")
        cfg.model_wrapper_cfg = dict(type="MECDistributedDataParallel", broadcast_buffers=False, find_unused_parameters=False)
    if opts.seed is not None:
        cfg.randomness = dict(seed=opts.seed, deterministic=False)
    work_dir = Path(opts.work_dir or Path("work_dirs") / name)
    cfg.work_dir = str(work_dir)
    if opts.resume:
        if opts.resume == "auto":
            found = resume_point(work_dir, notes)
            cfg.resume, cfg.load_from = found is not None, (str(found) if found else None)
        else:
            from mec_cli.compat import check_checkpoint

            check_checkpoint(opts.resume)
            cfg.resume, cfg.load_from = True, str(opts.resume)
    run = PreparedRun(cfg=cfg, work_dir=work_dir, recipe_name=name, notes=notes, groups_doc=groups_doc)
    run.command = launch_command(opts, work_dir / "config.py")
    return run


def set_max_iters(cfg, max_iters: int) -> None:
    """Shorten or lengthen an iteration-based schedule, moving its LR steps with it (in proportion to the
    recipe's own length)."""
    if cfg.train_cfg.get("type") != "IterBasedTrainLoop":
        raise MecError("--max-iters applies to iteration-based recipes (the tiny ones); use --cfg-options train_cfg.max_epochs=N")
    length = int(cfg.train_cfg.max_iters)
    cfg.train_cfg.max_iters = max_iters
    for sched in cfg.param_scheduler:
        if sched.get("type") == "MultiStepLR" and not sched.get("by_epoch", True):
            sched.end = max_iters
            sched.milestones = [int(max_iters * m / length) for m in sched.milestones]


def batch_note(cfg, world_size: int) -> Optional[str]:
    """A note when the total batch differs from the one the recipe's learning rate was set for (16 in the paper)."""
    per_gpu = int(cfg.train_dataloader.get("batch_size", 1))
    total, base = per_gpu * world_size, int(cfg.get("auto_scale_lr", {}).get("base_batch_size", 0) or 0)
    if not base or total == base:
        return None
    lr = cfg.optim_wrapper.optimizer.get("lr")
    if cfg.auto_scale_lr.get("enable"):
        return (f"note: total batch {total} ({world_size} x {per_gpu}) differs from the recipe's {base}; --auto-scale-lr "
                f"scales the learning rate linearly, {lr} -> {lr * total / base:g}")
    return (f"note: total batch {total} ({world_size} x {per_gpu}) differs from the recipe's {base} (the paper's 16 for the LVIS "
            f"and COCO-LT recipes); the learning rate stays {lr}. --auto-scale-lr scales it linearly to {lr * total / base:g}")


def launch_command(opts: TrainOptions, config_file: Path, task: str = "train", extra: Optional[List[str]] = None) -> List[str]:
    """The command line that starts the worker(s): python, torchrun or srun."""
    worker = ["-m", "mec_cli.worker", task, str(config_file)] + list(extra or [])
    if opts.slurm:
        if not opts.partition:
            raise MecError("--slurm needs --partition P")
        per_node = max(1, opts.gpus)
        cmd = ["srun", "-p", opts.partition, f"--job-name={opts.job_name or 'mec'}", f"--gres=gpu:{per_node}",
               f"--ntasks={per_node * max(1, opts.nodes)}", f"--ntasks-per-node={per_node}",
               f"--cpus-per-task={opts.cpus_per_task}", "--kill-on-bad-exit=1"]
        if opts.time:
            cmd.append(f"--time={opts.time}")
        if opts.qos:
            cmd.append(f"--qos={opts.qos}")
        return cmd + list(opts.srun_args) + [sys.executable, "-u"] + worker + ["--launcher", "slurm"]
    if opts.distributed:
        per_node = opts.gpus if opts.gpus > 0 else opts.procs
        torchrun = Path(sys.executable).with_name("torchrun")
        launcher = [str(torchrun)] if torchrun.is_file() else [sys.executable, "-m", "torch.distributed.run"]
        return launcher + [f"--nnodes={max(1, opts.nodes)}", f"--node_rank={opts.node_rank}",
                f"--master_addr={opts.master_addr}", f"--master_port={opts.master_port}", f"--nproc_per_node={per_node}"] \
            + worker + ["--launcher", "pytorch"]
    return [sys.executable] + worker


def write_run_files(run: PreparedRun) -> Path:
    """Write the resolved config (and groups.json for MEC) into the work dir; return the config path."""
    from mec_cli.io import atomic_path, write_json_atomic

    run.work_dir.mkdir(parents=True, exist_ok=True)
    config_file = run.work_dir / "config.py"
    with atomic_path(config_file) as tmp:
        run.cfg.dump(str(tmp))
    if run.groups_doc is not None:
        write_json_atomic(run.work_dir / "groups.json", run.groups_doc)
    return config_file


def _checkpoint_step(path: Path) -> int:
    stem = path.stem.split("_")[-1]
    return int(stem) if stem.isdigit() else -1


def resume_point(work_dir: Path, notes: List[str]) -> Optional[Path]:
    """The checkpoint `--resume` continues from: the one ``last_checkpoint`` names when it is complete, else the
    newest complete ``iter_N.pth``/``epoch_N.pth`` (each damaged file skipped is named in ``notes``).

    Returns None, with a note, when the work dir holds no checkpoint at all; raises MecError when it holds
    checkpoints but none is complete, so that a preempted run never silently starts over.
    """
    from mec_cli.compat import check_checkpoint

    work_dir = Path(work_dir)
    files = sorted((p for p in work_dir.glob("*.pth") if _checkpoint_step(p) >= 0 and not p.name.startswith(".")),
                   key=_checkpoint_step, reverse=True)
    marker = work_dir / "last_checkpoint"
    named = Path(marker.read_text().strip()) if marker.is_file() else None
    if named is not None and not named.is_absolute() and not named.exists():
        named = work_dir / named.name
    candidates = ([named] if named is not None else []) + [p for p in files if named is None or p.resolve() != named.resolve()]
    damaged = []
    for path in candidates:
        try:
            check_checkpoint(path)
        except MecError as e:
            damaged.append(str(e))
            continue
        for d in damaged:
            notes.append(f"note: skipping a damaged checkpoint: {d}")
        return path
    if damaged:
        raise MecError(f"nothing complete to resume from: {'; '.join(damaged)}. Remove the damaged files to start over", work_dir)
    notes.append(f"note: {work_dir} holds no checkpoint yet; --resume starts from iteration 0")
    return None


def last_checkpoint(work_dir: Path) -> Optional[Path]:
    marker = Path(work_dir) / "last_checkpoint"
    if marker.is_file():
        path = Path(marker.read_text().strip())
        return path if path.is_file() else None
    return None


def train(run: PreparedRun, env: Optional[Dict[str, str]] = None) -> Dict:
    """Run the prepared training (in this process, or through the launcher); return the summary."""
    import os

    from mec_cli.signals import run_child

    config_file = write_run_files(run)
    start = time.time()
    if run.command[1:3] == ["-m", "mec_cli.worker"] and len(run.command) == 5:
        from mec_cli.worker import run_train

        run_train(str(config_file), launcher="none")
    else:
        code = run_child(run.command, env={**os.environ, **(env or {})})
        if code != 0:
            raise MecError(f"training exited with code {code}: {shlex.join(run.command)}")
    return {"work_dir": str(run.work_dir), "config": str(config_file), "last_checkpoint": str(last_checkpoint(run.work_dir) or ""),
            "wall_time_s": round(time.time() - start, 1), "recipe": run.recipe_name}
