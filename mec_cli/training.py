"""`mec train`: what only training adds to the launch layer (:mod:`mec_cli.launch`).

Pretrained backbone weights, the schedule and its length, mixed precision, the learning-rate scaling note,
the seed, the work dir and resuming. :func:`prepare_training` resolves a recipe into the exact config that will
run, without writing or starting anything; :func:`train` writes it into the work dir and runs the worker.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional

from mec_cli import launch
from mec_cli.errors import SEED_MAX, MecError, check_number

OFFLINE_WEIGHTS = ("torchvision://", "open-mmlab://", "http://", "https://", "mmcls://")


@dataclass
class TrainOptions(launch.LaunchOptions):
    """A training run: the launch options, and what only training has."""

    schedule: Optional[str] = None  # a part of recipes/_base_/schedules instead of the recipe's own
    work_dir: Optional[str] = None  # default work_dirs/<recipe>
    resume: Optional[str] = None  # None, 'auto' (the work dir's last complete checkpoint) or a checkpoint path
    pretrained: Optional[str] = None
    no_pretrained: bool = False
    amp: bool = False
    auto_scale_lr: bool = False
    max_iters: Optional[int] = None
    seed: Optional[int] = None
    dry_run: bool = False

    def validate(self) -> None:
        """Refuse impossible options before any work starts (one MecError naming the option)."""
        super().validate()
        check_number("max_iters", self.max_iters, 1, integer=True)
        check_number("seed", self.seed, 0, SEED_MAX, integer=True)
        if self.no_pretrained and self.pretrained:
            raise MecError("and `pretrained` exclude each other", option="no_pretrained")
        if self.work_dir is not None:  # (the default one, named by the recipe, is checked once it is resolved)
            from mec_cli.io import check_output_dir

            check_output_dir(self.work_dir)


@dataclass
class PreparedRun:
    """A training run resolved: the config to write, where, and how its worker starts."""

    cfg: object
    work_dir: Path
    recipe_name: str
    notes: List[str]
    groups_doc: Optional[Dict] = None
    launch: Optional[launch.Launch] = None

    @property
    def command(self) -> List[str]:
        return self.launch.command if self.launch else []


def _apply_pretrained(cfg, opts: TrainOptions, notes: List[str]) -> None:
    from mec_cli.compat import check_checkpoint

    backbone = cfg.model.backbone
    if opts.no_pretrained:
        backbone.init_cfg = None
        return
    if opts.pretrained:
        from mec_cli.io import check_input

        path = check_input(opts.pretrained, "weights file", missing="pretrained backbone weights not found")
        check_checkpoint(path)
        backbone.init_cfg = dict(type="Pretrained", checkpoint=str(path.resolve()))
        return
    init = backbone.get("init_cfg") or {}
    ckpt = str(init.get("checkpoint", "")) if init.get("type") == "Pretrained" else ""
    if ckpt.startswith(OFFLINE_WEIGHTS):
        name = ckpt.split("://", 1)[-1].split("/")[-1]
        msg = (f"backbone weights {ckpt} cannot be fetched on this machine: download the ImageNet {name} checkpoint "
               f"(e.g. {name}-*.pth) elsewhere and pass its path as `pretrained`, or train from scratch with "
               "`no_pretrained`")
        if opts.dry_run:
            notes.append("note: " + msg)
        else:
            raise MecError(msg)


def _apply_groups(cfg, opts: TrainOptions, ann: Optional[Dict], notes: List[str]) -> Optional[Dict]:
    """Give the MEC head its class groups (the launch layer's, checked against the stages); the groups document."""
    from mec_cli import recipes

    ann_path = recipes.annotation_path(cfg, "train")
    spec = launch.resolve_groups(cfg, opts.groups, ann)
    if spec is None:
        if opts.dry_run:
            notes.append(f"note: {ann_path} not found here; a real run computes the class groups from it "
                         "(or pass `groups`)")
            return None
        raise MecError("training annotations not found (set `data_root`, or pass `groups`)", ann_path)
    if opts.groups:  # its group count against the stages: launch.apply_groups, below
        bins = recipes.group_bins(cfg)
        if spec.bins != bins or spec.count_by != "instances":
            notes.append(f"warning: {opts.groups} groups categories by {spec.count_by} with bins {spec.bins}; the "
                         f"recipe's groups are by instances with bins {bins}. Training uses the file's groups.")
    if ann is None:
        notes.append(f"note: {ann_path} not found; groups are applied in category-id order")
        cat_ids = sorted(spec.category_group)
    else:
        cat_ids = recipes.label_category_ids(cfg, ann)
    launch.apply_groups(cfg, spec, cat_ids, opts.groups or ann_path)
    return spec.doc


def prepare_training(opts: TrainOptions) -> PreparedRun:
    """Resolve the recipe into the exact config that will run (nothing is written or started)."""
    opts.validate()
    import torch

    from mec_cli import recipes
    from mec_cli.data.annotations import load_annotations
    from mec_cli.io import check_output_dir

    cfg, _, name = launch.resolve_config(opts)
    check_output_dir(Path(opts.work_dir or Path("work_dirs") / name))
    notes: List[str] = []
    # The training annotations are read (and validated) once, for the class count and the groups.
    ann_path = recipes.annotation_path(cfg, "train")
    needs_ann = not opts.dry_run or (recipes.is_mec(cfg) and not opts.groups)
    ann = load_annotations(ann_path) if needs_ann and ann_path.is_file() else None
    launch.fit_classes(cfg, ann, "train", notes)
    _apply_pretrained(cfg, opts, notes)
    groups_doc = _apply_groups(cfg, opts, ann, notes) if recipes.is_mec(cfg) else None
    if opts.schedule:
        recipes.apply_schedule(cfg, opts.schedule)
    if opts.max_iters is not None:
        set_max_iters(cfg, opts.max_iters)
    cuda = torch.cuda.is_available()
    if not opts.dry_run:
        opts.check_devices()
    if opts.amp:
        if not cuda and not opts.dry_run:
            raise MecError("needs a CUDA device", option="amp")
        cfg.optim_wrapper.type = "AmpOptimWrapper"
        cfg.optim_wrapper.loss_scale = "dynamic"
    if opts.auto_scale_lr:
        cfg.auto_scale_lr.enable = True
    note = batch_note(cfg, opts.world_size)
    if note:
        notes.append(note)
    launch.choose_backend(cfg, opts)
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

            check_checkpoint(opts.resume, resume=True)
            cfg.resume, cfg.load_from = True, str(opts.resume)
    return PreparedRun(cfg=cfg, work_dir=work_dir, recipe_name=name, notes=notes, groups_doc=groups_doc,
                       launch=launch.plan(opts, "train", work_dir / "config.py"))


def set_max_iters(cfg, max_iters: int) -> None:
    """Shorten or lengthen an iteration-based schedule, moving its LR steps with it (in proportion to the
    recipe's own length)."""
    if cfg.train_cfg.get("type") != "IterBasedTrainLoop":
        raise MecError("applies to iteration-based recipes (the tiny ones); use `cfg_options` train_cfg.max_epochs=N",
                       option="max_iters")
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
        return (f"note: total batch {total} ({world_size} x {per_gpu}) differs from the recipe's {base}; "
                f"`auto_scale_lr` scales the learning rate linearly, {lr} -> {lr * total / base:g}")
    return (f"note: total batch {total} ({world_size} x {per_gpu}) differs from the recipe's {base} (the paper's 16 "
            f"for the LVIS and COCO-LT recipes); the learning rate stays {lr}. `auto_scale_lr` scales it linearly to "
            f"{lr * total / base:g}")


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
    """The checkpoint a resumed run continues from: the one ``last_checkpoint`` names when it is complete, else
    the newest complete ``iter_N.pth``/``epoch_N.pth`` (each damaged file skipped is named in ``notes``).

    Returns None, with a note, when the work dir holds no checkpoint at all; raises MecError when it holds
    checkpoints but none is complete, so that a preempted run never silently starts over.
    """
    from mec_cli.compat import check_checkpoint

    work_dir = Path(work_dir)
    files = sorted((p for p in work_dir.glob("*.pth") if _checkpoint_step(p) >= 0 and not p.name.startswith(".")),
                   key=_checkpoint_step, reverse=True)
    named = _marked_checkpoint(work_dir)
    if named is not None and not named.is_absolute() and not named.exists():
        named = work_dir / named.name
    candidates = ([named] if named is not None else []) + [p for p in files
                                                           if named is None or p.resolve() != named.resolve()]
    damaged = []
    for path in candidates:
        try:
            check_checkpoint(path, resume=True)
        except MecError as e:
            damaged.append(str(e))
            continue
        for d in damaged:
            notes.append(f"note: skipping a damaged checkpoint: {d}")
        return path
    if damaged:
        raise MecError(f"nothing complete to resume from: {'; '.join(damaged)}. Remove the damaged files to start "
                       "over", work_dir)
    notes.append(f"note: {work_dir} holds no checkpoint yet; `resume` starts from iteration 0")
    return None


def _marked_checkpoint(work_dir: Path) -> Optional[Path]:
    """The checkpoint the work dir's ``last_checkpoint`` names (read only when it is a regular, UTF-8 file), or
    None."""
    from mec_cli.io import read_input_bytes

    marker = Path(work_dir) / "last_checkpoint"
    if not marker.is_file():
        return None
    text = read_input_bytes(marker, "last_checkpoint file").decode("utf-8").strip()
    return Path(text) if text and "\0" not in text else None


def last_checkpoint(work_dir: Path) -> Optional[Path]:
    path = _marked_checkpoint(work_dir)
    return path if path is not None and path.is_file() else None


class _WorkDirState:
    """What a work dir held before a run started, so that a run that fails to start leaves it as it was: the files
    the run rewrites (their bytes) and the names of everything else."""

    REWRITTEN = ("config.py", "groups.json")

    def __init__(self, work_dir: Path):
        self.work_dir = work_dir
        self.existed = work_dir.is_dir()
        self.names = set(os.listdir(work_dir)) if self.existed else set()
        self.saved = {name: (work_dir / name).read_bytes() for name in self.REWRITTEN
                      if name in self.names and (work_dir / name).is_file()}

    def checkpoints_added(self) -> bool:
        return self.work_dir.is_dir() and any(p.suffix == ".pth" and p.name not in self.names
                                              for p in self.work_dir.iterdir())

    def restore(self) -> None:
        """Remove what the run added and put back the files it rewrote (or the whole work dir it made)."""
        import shutil

        from mec_cli.io import write_bytes_atomic

        if not self.work_dir.is_dir():
            return
        if not self.existed:
            shutil.rmtree(self.work_dir, ignore_errors=True)
            return
        for p in self.work_dir.iterdir():
            if p.name not in self.names:
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        for name, data in self.saved.items():
            write_bytes_atomic(self.work_dir / name, data)


def train(run: PreparedRun, env: Optional[Dict[str, str]] = None) -> Dict:
    """Write the prepared run's files and run its worker (in this process, or through the launcher); return the
    summary.

    A run that fails before it saved any checkpoint (a model the config cannot build, a worker that exits at once)
    leaves the work dir as it found it, and its error is one MecError; a failure after a checkpoint keeps
    everything, for ``resume`` and for reading the logs.
    """
    from mec_cli.hooks import TrainingStopped

    state = _WorkDirState(run.work_dir)
    start = time.time()
    try:
        config_file = write_run_files(run)
        launch.run_worker(run.launch, config_file, env=env)
    except TrainingStopped:
        raise
    except BaseException as e:
        if state.checkpoints_added():
            raise
        state.restore()
        if isinstance(e, MecError) or not isinstance(e, Exception):
            raise
        text = " ".join(str(e).split())[:300]
        raise MecError(f"training could not start ({type(e).__name__}: {text}); the work dir is as it was",
                       run.work_dir) from None
    return {"work_dir": str(run.work_dir), "config": str(config_file),
            "last_checkpoint": str(last_checkpoint(run.work_dir) or ""), "wall_time_s": round(time.time() - start, 1),
            "recipe": run.recipe_name}
