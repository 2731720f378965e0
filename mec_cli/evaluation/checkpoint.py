"""`mec eval --checkpoint`: one inference pass over the val set, every requested scoring mode evaluated.

A baseline (plain Cascade/HTC head) is evaluated through the MEC head class with ``loss=False``: the
weights are identical (MEC adds no parameters), and the head can then also score single stages and
the MEC ensembles, which is how the paper measures Figure 1 and the baseline row of Table 2(c).

The config, class count, groups, backend and worker come from the launch layer (:mod:`mec_cli.launch`), as for
`mec train`; this module adds the scoring modes, the metric and the metrics document.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from mec_cli import launch
from mec_cli.errors import MecError, check_number
from mec_cli.ops import modes as scoring_modes
from mec_cli.ops.modes import BASELINE_MODE, DEFAULT_GROUP_ALIGN, EVAL_ENSEMBLES, parse_mode

HEAD_FOR = {"CascadeRoIHead": "MECCascadeRoIHead", "HybridTaskCascadeRoIHead": "MECHTCRoIHead"}
TAU_RANGE = (1e-3, 1e3)  # the dynamic ensemble's temperatures: 1e-3 already selects, 1e3 already averages
FIXED_AP_MAX_PER_IMG = 1000  # detections per image the model keeps when Fixed AP is asked for


@dataclass
class EvalOptions(launch.LaunchOptions):
    """An evaluation of a checkpoint: the launch options (inference on the CPU in this process by default), and
    what only evaluation has."""

    gpus: int = 0
    master_port: int = 29510
    checkpoint: Optional[str] = None
    per_stage: bool = False
    modes: Sequence[str] = EVAL_ENSEMBLES
    group_align: str = DEFAULT_GROUP_ALIGN
    tau: Optional[float] = None
    iou_types: Sequence[str] = ("bbox", "segm")
    protocol: Optional[str] = None
    max_images: Optional[int] = None
    dump_dir: Optional[str] = None
    dets_per_class: Optional[int] = None  # Fixed AP's per-category cap; None: standard metrics only
    analysis: bool = False  # errors, calibration, confusion and oLRP per group (mec_cli.evaluation.analysis)
    per_image: bool = False  # each image's matched detections, for mec report compare --ci (evaluation.bootstrap)
    boundary_dilation: float = 0.02  # Boundary AP's dilation ratio, for iou type 'boundary'

    def validate(self) -> None:
        """Refuse impossible options before any work starts (one MecError naming the option)."""
        if not self.checkpoint:
            raise MecError("is needed to evaluate a model", option="checkpoint")
        check_number("tau", self.tau, 0, above=True)
        check_number("tau", self.tau, TAU_RANGE[0], TAU_RANGE[1])  # beyond, logits / tau leave float32's range
        super().validate()
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
        self.check_devices()


def requested_modes(num_stages: int, per_stage: bool, ensembles: Sequence[str], group_align: str) -> List[str]:
    """Mode names in report order (see :func:`mec_cli.ops.modes.requested_modes`); bad names are a MecError."""
    try:
        return scoring_modes.requested_modes(num_stages, per_stage, ensembles, group_align)
    except ValueError as e:
        raise MecError(str(e)) from None


@dataclass
class PreparedEval:
    """An evaluation resolved: the test config, what the metrics document records, and how the worker starts."""

    cfg: object
    config_path: Path  # the recipe's or the given config file
    groups_file: str
    protocol: str
    val_ann: Path
    run: Dict  # the metrics document's "run" section
    notes: List[str]
    launch: launch.Launch


def _find_groups(opts: EvalOptions) -> Optional[str]:
    if opts.groups:
        return opts.groups
    beside = Path(opts.checkpoint).resolve().parent / "groups.json"
    return str(beside) if beside.is_file() else None


def _groups(cfg, opts: EvalOptions, workdir: Path):
    """The groups (given, beside the checkpoint, or computed from the training annotations into ``workdir``) and
    the file that holds them."""
    from mec_cli import recipes
    from mec_cli.data.annotations import load_annotations
    from mec_cli.io import write_json_atomic

    groups_file = _find_groups(opts)
    train_ann = None
    if groups_file is None:
        train_path = recipes.annotation_path(cfg, "train")
        if not train_path.is_file():
            raise MecError("no groups.json beside the checkpoint and no training annotations to compute groups from; "
                           "pass `groups`", train_path)
        train_ann = load_annotations(train_path)
    spec = launch.resolve_groups(cfg, groups_file, train_ann)
    if groups_file is None:
        groups_file = str(workdir / "groups.json")
        write_json_atomic(groups_file, spec.doc)
    return spec, groups_file


def prepare_eval(opts: EvalOptions, workdir: Path) -> PreparedEval:
    """The test config: MEC head with every requested mode, MECMetric on the val annotations."""
    opts.validate()
    from mec_cli import recipes
    from mec_cli.compat import check_checkpoint
    from mec_cli.data.annotations import load_annotations
    from mec_cli.evaluation.api import detect_protocol

    check_checkpoint(opts.checkpoint)
    cfg, path, _ = launch.resolve_config(opts)
    roi = cfg.model.roi_head
    num_stages = int(roi.num_stages)
    val_ann = recipes.annotation_path(cfg, "val")
    if not val_ann.is_file():
        raise MecError("validation annotations not found (set `data_root`)", val_ann)
    val = load_annotations(val_ann)
    notes: List[str] = []
    launch.fit_classes(cfg, val, "val", notes)
    spec, groups_file = _groups(cfg, opts, workdir)
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
    if spec.num_groups != num_stages and any(parse_mode(m)[0] == "sparse" for m in modes):
        raise MecError(f"has {spec.num_groups} groups but the model has {num_stages} stages (the sparse ensemble needs "
                       "one per stage)", groups_file)
    launch.apply_groups(cfg, spec, cat_ids, groups_file)
    rcnn = cfg.model.test_cfg.rcnn
    rcnn.modes = modes
    rcnn.ensemble, rcnn.group_align, rcnn.stage = BASELINE_MODE, False, None
    if opts.tau is not None:
        rcnn.tau = float(opts.tau)
    if opts.dets_per_class:
        # Fixed AP needs more than the protocol's 300 per image: the model keeps up to FIXED_AP_MAX_PER_IMG per image
        # (at its usual score threshold); the standard metrics still see the top 300 per image, which this cannot
        # change, because every class's NMS output is the same and the cap takes the highest scores.
        rcnn.max_per_img = max(int(rcnn.max_per_img), FIXED_AP_MAX_PER_IMG)
    protocol = opts.protocol or detect_protocol(val)
    cfg.test_evaluator = dict(type="MECMetric", ann_file=str(val_ann), metric=list(opts.iou_types), protocol=protocol,
                              groups_file=groups_file, cat_ids=list(cat_ids), dets_per_class=opts.dets_per_class,
                              analysis=bool(opts.analysis), boundary_dilation=float(opts.boundary_dilation),
                              per_image=bool(opts.per_image),
                              results_dir=str(Path(opts.dump_dir).resolve()) if opts.dump_dir else None)
    if opts.max_images:
        cfg.test_dataloader.dataset.indices = int(opts.max_images)
    cfg.work_dir = str(workdir)
    cfg.load_from = str(opts.checkpoint)
    cfg.default_hooks.pop("visualization", None)
    cfg.log_level = "WARNING"
    launch.choose_backend(cfg, opts)
    run = {"mec_loss": mec_loss, "lam": lam, "num_stages": num_stages, "tau": float(rcnn.get("tau", 1.0)),
           "recipe_meta": dict(cfg.get("mec_recipe", {})), "dataset": dict(cfg.get("mec_dataset", {})), "modes": modes,
           "test_cfg": {"score_thr": float(rcnn.score_thr), "max_per_img": int(rcnn.max_per_img)}}
    return PreparedEval(cfg=cfg, config_path=path, groups_file=groups_file, protocol=protocol, val_ann=val_ann,
                        run=run, notes=notes,
                        launch=launch.plan(opts, "test", workdir / "config.py", out=workdir / "modes.json"))


def evaluate_checkpoint(opts: EvalOptions, on_note: Optional[Callable[[str], None]] = None) -> Dict:
    """Run inference once and return the metrics document (see :mod:`mec_cli.evaluation.api`); ``on_note`` gets
    each note on the resolved config (a class count fitted to the annotations)."""
    from mec_cli.evaluation.api import metrics_document

    with tempfile.TemporaryDirectory(prefix="mec-eval-") as tmp:
        workdir = Path(tmp)
        prep = prepare_eval(opts, workdir)
        if opts.dump_dir:  # each mode's results file, against the inputs, before the model runs
            from mec_cli.io import check_outputs

            check_outputs({f"the dump file {m}.json": Path(opts.dump_dir) / f"{m}.json" for m in prep.run["modes"]},
                          {"checkpoint": opts.checkpoint, "config": opts.config, "groups": prep.groups_file})
        for note in prep.notes:
            (on_note or (lambda _: None))(note)
        config_file = workdir / "config.py"
        prep.cfg.dump(str(config_file))
        modes = launch.run_worker(prep.launch, config_file, out=workdir / "modes.json")
        modes = {m: modes[m] for m in prep.run["modes"] if m in modes}
        return metrics_document(modes, prep.protocol, str(prep.val_ann), prep.groups_file,
                                dets_per_class=opts.dets_per_class, dilation_ratio=opts.boundary_dilation,
                                checkpoint=str(opts.checkpoint), recipe=prep.run["recipe_meta"].get("name"),
                                config=str(prep.config_path), results_file=None, run=prep.run)
