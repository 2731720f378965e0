"""`mec eval --checkpoint`: one inference pass over the val set, every requested scoring mode evaluated.

A baseline (plain Cascade/HTC head) is evaluated through the MEC head class with ``loss=False``: the
weights are identical (MEC adds no parameters), and the head can then also score single stages and
the MEC ensembles, which is how the paper measures Figure 1 and the baseline row of Table 2(c).
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from mec_cli.errors import MecError, check_number

HEAD_FOR = {"CascadeRoIHead": "MECCascadeRoIHead", "HybridTaskCascadeRoIHead": "MECHTCRoIHead"}
FIXED_AP_MAX_PER_IMG = 1000  # detections per image the model keeps when Fixed AP is asked for


@dataclass
class EvalOptions:
    checkpoint: str
    recipe: Optional[str] = None
    config: Optional[str] = None
    dataset: Optional[str] = None
    data_root: Optional[str] = None
    per_stage: bool = False
    modes: Sequence[str] = ("mean_probs", "mean_logits", "sparse", "dynamic")
    group_align: str = "both"
    tau: Optional[float] = None
    groups: Optional[str] = None
    iou_types: Sequence[str] = ("bbox", "segm")
    protocol: Optional[str] = None
    gpus: int = 0
    procs: int = 1
    master_port: int = 29510
    max_images: Optional[int] = None
    dump_dir: Optional[str] = None
    dets_per_class: Optional[int] = None  # Fixed AP's per-category cap; None: standard metrics only
    analysis: bool = False  # errors and calibration per group (mec_cli.evaluation.errors, .calibration)
    boundary_dilation: float = 0.02  # Boundary AP's dilation ratio, for iou type 'boundary'
    cfg_options: Dict = field(default_factory=dict)

    def validate(self) -> None:
        """Refuse impossible options before any work starts (one MecError naming the option)."""
        check_number("tau", self.tau, 0, above=True)
        check_number("gpus", self.gpus, 0, integer=True)
        check_number("procs", self.procs, 1, integer=True)
        check_number("master_port", self.master_port, 1, 65535, integer=True)
        check_number("max_images", self.max_images, 1, integer=True)
        check_number("dets_per_class", self.dets_per_class, 1, integer=True)
        from mec_cli.evaluation.api import IOU_TYPES
        from mec_cli.evaluation.boundary import check_dilation

        bad = [t for t in self.iou_types if t not in IOU_TYPES]
        if bad or not self.iou_types:
            raise MecError(f"must name iou types among {', '.join(IOU_TYPES)}, got {','.join(self.iou_types)!r}",
                           option="iou_type")
        check_dilation(self.boundary_dilation)
        if self.protocol not in (None, "lvis", "coco"):
            raise MecError(f"must be lvis or coco, got {self.protocol!r}", option="protocol")
        if not self.modes:
            raise MecError("names no ensemble", option="modes")
        requested_modes(1, self.per_stage, self.modes, self.group_align)  # names checked before the model is built
        from mec_cli.launch import check_devices

        check_devices(self.gpus)


def requested_modes(num_stages: int, per_stage: bool, ensembles: Sequence[str], group_align: str) -> List[str]:
    """Mode names in report order (see :func:`mec_cli.ops.modes.requested_modes`); bad names are a MecError."""
    from mec_cli.ops import modes

    try:
        return modes.requested_modes(num_stages, per_stage, ensembles, group_align)
    except ValueError as e:
        raise MecError(str(e)) from None


def _find_groups(opts: EvalOptions) -> Optional[str]:
    if opts.groups:
        return opts.groups
    beside = Path(opts.checkpoint).resolve().parent / "groups.json"
    return str(beside) if beside.is_file() else None


def prepare_eval_config(opts: EvalOptions, workdir: Path):
    """The test config: MEC head with every requested mode, MECMetric on the val annotations."""
    opts.validate()
    from mec_cli import recipes
    from mec_cli.data.annotations import category_counts, load_annotations
    from mec_cli.data.groups import build_groups, load_groups
    from mec_cli.io import sha256_file, write_json_atomic

    from mec_cli.compat import check_checkpoint

    check_checkpoint(opts.checkpoint)
    path = recipes.config_path(opts.recipe, opts.config)
    cfg = recipes.load_config(path, dataset=opts.dataset)
    if opts.data_root:
        recipes.set_data_root(cfg, opts.data_root)
    if opts.cfg_options:
        cfg.merge_from_dict(opts.cfg_options)
    roi = cfg.model.roi_head
    num_stages = int(roi.num_stages)
    val_ann = recipes.annotation_path(cfg, "val")
    if not val_ann.is_file():
        raise MecError("validation annotations not found (set --data-root)", val_ann)
    val = load_annotations(val_ann)
    heads = roi.bbox_head
    if len(val["categories"]) != (heads[0] if isinstance(heads, (list, tuple)) else heads)["num_classes"]:
        recipes.set_num_classes(cfg, len(val["categories"]))
    groups_file = _find_groups(opts)
    if groups_file is None:
        train_ann = recipes.annotation_path(cfg, "train")
        if not train_ann.is_file():
            raise MecError("no groups.json beside the checkpoint and no training annotations to compute groups from; pass --groups",
                           train_ann)
        bins = recipes.mec_bins(cfg) if recipes.is_mec(cfg) else ([10, 100, 500] if num_stages == 4 else [10, 100])
        doc = build_groups(category_counts(load_annotations(train_ann)), bins, "instances", str(train_ann), sha256_file(train_ann))
        groups_file = str(workdir / "groups.json")
        write_json_atomic(groups_file, doc)
    spec = load_groups(groups_file)
    modes = requested_modes(num_stages, opts.per_stage, opts.modes, opts.group_align)
    was_mec = recipes.is_mec(cfg)
    mec_loss = bool(roi.get("mec", {}).get("loss", False)) if was_mec else False
    lam = float(roi.get("mec", {}).get("lam", 0.7)) if was_mec else None
    if not was_mec:
        if roi.type not in HEAD_FOR:
            raise MecError(f"per-stage and MEC modes need a Cascade or HTC RoI head, not {roi.type}", path)
        roi.type = HEAD_FOR[roi.type]
        roi.mec = dict(loss=False)
    cat_ids = recipes.label_category_ids(cfg, val, "val")
    if spec.num_groups != num_stages and any(m.startswith("sparse") for m in modes):
        raise MecError(f"has {spec.num_groups} groups but the model has {num_stages} stages (the sparse ensemble needs one per stage)",
                       groups_file)
    roi.mec.class_groups = spec.class_groups(cat_ids)
    rcnn = cfg.model.test_cfg.rcnn
    rcnn.modes = modes
    rcnn.ensemble, rcnn.group_align, rcnn.stage = "mean_logits", False, None
    if opts.tau is not None:
        rcnn.tau = float(opts.tau)
    if opts.dets_per_class:
        # Fixed AP needs more than the protocol's 300 per image: the model keeps up to FIXED_AP_MAX_PER_IMG per image
        # (at its usual score threshold); the standard metrics still see the top 300 per image, which this cannot
        # change, because every class's NMS output is the same and the cap takes the highest scores.
        rcnn.max_per_img = max(int(rcnn.max_per_img), FIXED_AP_MAX_PER_IMG)
    from mec_cli.evaluation.api import detect_protocol

    protocol = opts.protocol or detect_protocol(val)
    cfg.test_evaluator = dict(type="MECMetric", ann_file=str(val_ann), metric=list(opts.iou_types), protocol=protocol,
                              groups_file=groups_file, cat_ids=list(cat_ids), dets_per_class=opts.dets_per_class,
                              analysis=bool(opts.analysis), boundary_dilation=float(opts.boundary_dilation),
                              results_dir=str(Path(opts.dump_dir).resolve()) if opts.dump_dir else None)
    if opts.max_images:
        cfg.test_dataloader.dataset.indices = int(opts.max_images)
    cfg.work_dir = str(workdir)
    cfg.load_from = str(opts.checkpoint)
    cfg.default_hooks.pop("visualization", None)
    cfg.log_level = "WARNING"
    if opts.gpus > 0:
        cfg.env_cfg.dist_cfg = dict(backend="nccl")
    else:  # CPU processes: gloo, and the DDP wrapper without device ids
        cfg.env_cfg.dist_cfg = dict(backend="gloo")
        cfg.model_wrapper_cfg = dict(type="MECDistributedDataParallel", broadcast_buffers=False, find_unused_parameters=False)
    run = {"mec_loss": mec_loss, "lam": lam, "num_stages": num_stages, "tau": float(rcnn.get("tau", 1.0)),
           "recipe_meta": dict(cfg.get("mec_recipe", {})), "dataset": dict(cfg.get("mec_dataset", {})), "modes": modes,
           "test_cfg": {"score_thr": float(rcnn.score_thr), "max_per_img": int(rcnn.max_per_img)}}
    return cfg, str(path), groups_file, protocol, str(val_ann), run


def evaluate_checkpoint(opts: EvalOptions) -> Dict:
    """Run inference once and return the metrics document (see :mod:`mec_cli.evaluation.api`)."""
    from mec_cli.evaluation.api import metrics_document
    from mec_cli.io import read_json

    with tempfile.TemporaryDirectory(prefix="mec-eval-") as tmp:
        workdir = Path(tmp)
        cfg, config_path, groups_file, protocol, val_ann, run = prepare_eval_config(opts, workdir)
        config_file = workdir / "config.py"
        cfg.dump(str(config_file))
        if opts.gpus > 1 or (opts.gpus == 0 and opts.procs > 1):
            from mec_cli.launch import TrainOptions, launch_command

            out = workdir / "modes.json"
            cmd = launch_command(TrainOptions(gpus=opts.gpus, procs=opts.procs, master_port=opts.master_port), config_file,
                                 task="test", extra=["--out", str(out)])
            proc = subprocess.run(cmd, env=dict(os.environ))
            if proc.returncode != 0 or not out.is_file():
                raise MecError(f"inference exited with code {proc.returncode}: {' '.join(cmd)}")
            modes = read_json(out)
        else:
            from mec_cli.worker import run_test

            modes = run_test(str(config_file), "none")
        modes = {m: modes[m] for m in run["modes"] if m in modes}
        return metrics_document(modes, protocol, val_ann, groups_file, dets_per_class=opts.dets_per_class,
                                dilation_ratio=opts.boundary_dilation, checkpoint=str(opts.checkpoint),
                                recipe=run["recipe_meta"].get("name"), config=config_path, results_file=None, run=run)
