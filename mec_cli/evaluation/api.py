"""Evaluation entry points and the metrics JSON that `mec eval` writes and `mec report` reads.

Metrics JSON, schema ``mec.metrics/2``::

    {"schema": "mec.metrics/2", "created": "...", "protocol": "lvis", "ann_file": "...",
     "detection_cap": {"evaluator_max_dets": 300, "evaluator_per": "image", "model_max_per_img": 300,
                       "model_score_thr": 0.0001, "fixed_ap_dets_per_class": 10000},
     "iou_thresholds": [0.5, 0.55, ..., 0.95], "boundary_dilation": 0.02,
     "checkpoint": "...", "recipe": "tiny", "config": "...", "results_file": null,
     "run": {"mec_loss": true, "lam": 0.7, "num_stages": 3, "tau": 1.0, "recipe_meta": {...}, "dataset": {...},
             "test_cfg": {"score_thr": ..., "max_per_img": ...}},
     "groups": {"file": "...", "names": ["rare", "common", "frequent"], "bins": [10, 100], "category_group": {...}},
     "versions": {"mec": "...", "torch": "...", ...},
     "modes": {"<mode>": {"bbox": {"AP": 0.31, "AP50": ..., "APr": ..., "AP_rare": 0.12,
                                   "AP_per_iou": {"AP": [10 values], "APr": [...], "AP_rare": [...], ...},
                                   "AP_fixed": ..., "APr_fixed": ..., "AP_rare_fixed": ...,
                                   "per_category": {"<id>": 0.5},
                                   "errors": {...}, "calibration": {...}, "confusion": {...}, "lrp": {...},
                                   "per_image": {...}},
                          "segm": {...}, "boundary": {...},
                          "stage_weights": {...}}}}

Mode names: ``results`` for a results-file evaluation, ``stage1``..``stageK`` for single stages, and
``mean_logits``, ``mean_probs``, ``sparse``, ``dynamic``, each optionally suffixed ``_ga`` (group
alignment). Metric values are fractions in [0, 1]; -1 means "no ground truth to measure". ``AP_per_iou``
(new in /2) holds AP at each IoU threshold for AP and every group metric; the ``*_fixed`` keys appear with
``--fixed-ap``. Schema /1 files (without ``AP_per_iou``) are still read.

The iou type ``boundary`` is Boundary AP (:mod:`mec_cli.evaluation.boundary`), with the same metric names as
bbox and segm; ``boundary_dilation`` (top level) is its dilation ratio, present when it was evaluated.

Study sections (all optional; ``mec report`` says how to make them when absent). Each is split by grouping:
``"lvis"`` (rare/common/frequent, when the annotations have LVIS frequencies) and ``"groups"`` (the groups of
groups.json, when given), each group in order from rare to frequent, then ``"all"`` (every category)::

    "errors": {"fg_iou": 0.5, "bg_iou": 0.1, "types": ["cls", "loc", "both", "dupe", "bkg", "miss"],
               "groupings": {"lvis": {"rare": {"AP50": 0.2, "dAP": {"cls": 0.01, ...}, "share": {"cls": 0.1, ...},
                                               "count": {"cls": 12, ...}, "cls_objects": 30,
                                               "cls_to_more_frequent": 0.7}, ..., "all": {...}},
                             "groups": {...}}}
    "calibration": {"bins": 10, "iou": 0.5,
                    "groupings": {"lvis": {"rare": {"count": [n per bin], "score": [mean score or null],
                                                    "precision": [fraction or null], "ece": 0.05,
                                                    "detections": 1234}, ..., "all": {...}}, ...}}
    "stage_weights": {"stages": 3,
                      "groupings": {"groups": {"rare": {"mean": [w_1, w_2, w_3], "detections": 321}, ...,
                                               "all": {...}}, "lvis": {...}}}

``errors`` and ``calibration`` (``mec eval --analysis``) sit in ``modes.<mode>.<iou type>``; their definitions
are in :mod:`mec_cli.evaluation.errors` and :mod:`mec_cli.evaluation.calibration` (dAP, AP50 and shares are
fractions; a group without ground truth has nulls). ``--analysis`` also stores, beside them (added within /2:
optional, so older files stay valid, and a reader of older files sees them absent)::

    "confusion": {"iou": 0.5,
                  "groupings": {"lvis": {"rare": {"objects": 120, "correct": 40, "as": {"rare": 3, "common": 9,
                                                                                       "frequent": 31}, "none": 37},
                                         ..., "all": {...}}, "groups": {...}},
                  "pairs": [{"gt": 12, "label": 45, "objects": 9, "gt_objects": 30, "gt_name": "...",
                             "label_name": "...", "lvis": ["rare", "frequent"], "groups": [...]}, ...]}
    "lrp": {"tau": 0.5, "overall": {"oLRP": 0.81, "loc": 0.16, "fp": 0.41, "fn": 0.55, "categories": 1203},
            "groupings": {"lvis": {"rare": {...}, ..., "all": {...}}, "groups": {...}},
            "per_category": {"<id>": {"oLRP": ..., "loc": ..., "fp": ..., "fn": ..., "threshold": ...}}}

``confusion`` (:mod:`mec_cli.evaluation.confusion`): per group of the objects, how many of its objects the
detector labels with their own category (``correct``), with a category of each group (``as``), or not at all
(``none``), and the most frequent (object category -> label category) confusions. ``lrp``
(:mod:`mec_cli.evaluation.lrp`): optimal LRP and its localisation, FP and FN components (fractions, lower is
better), their means overall and per group, and each category's values with its LRP-optimal score threshold;
null where nothing is measured. ``per_image`` (``mec eval --per-image``, :mod:`mec_cli.evaluation.bootstrap`):
each image's matched detections, compressed (format ``mec.per_image/1``), which ``mec report compare --ci``
resamples; a run evaluated from parts (:mod:`mec_cli.evaluation.partial`) has the same sections, bit for bit,
as one evaluated at once, except that Fixed AP and the ``--analysis`` sections need one process.
A results-file evaluation of several shards records ``results_file`` as the list of the files.

``stage_weights`` sits in ``modes.<mode>`` of the dynamic
modes of a checkpoint evaluation: the mean over the detections the model kept of the weight w^k (eq. 5) each
stage had in the detection's class; "mean" is null for a group without detections.
"""
from __future__ import annotations

import datetime
import os
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from mec_cli.errors import MecError

SCHEMA = "mec.metrics/2"
STANDARD_IOU_THRESHOLDS = [round(0.5 + 0.05 * t, 2) for t in range(10)]  # as metrics_document writes them
READABLE_SCHEMAS = ("mec.metrics/1", "mec.metrics/2")


def detect_protocol(data: Dict) -> str:
    """'lvis' when the images carry LVIS's federated fields, else 'coco'."""
    images = data.get("images") or []
    return "lvis" if images and "neg_category_ids" in images[0] else "coco"


def _load_gt(ann_file: Union[str, Path], protocol: Optional[str]):
    """Read, check and index the ground truth once (the protocol from the file unless given)."""
    from mec_cli.evaluation.engine import GroundTruth

    if protocol not in (None, "lvis", "coco"):
        raise MecError(f"must be lvis or coco, got {protocol!r}", option="protocol")
    return GroundTruth.from_file(ann_file, protocol)


def _group_info(groups_file: Optional[Union[str, Path]]):
    if not groups_file:
        return None, None, None
    from mec_cli.data.groups import load_groups

    spec = load_groups(groups_file)
    info = {"file": str(groups_file), "names": spec.names, "bins": spec.bins, "count_by": spec.count_by,
            "category_group": {str(k): v for k, v in spec.category_group.items()}}
    return spec.category_group, spec.names, info


IOU_TYPES = ("bbox", "segm", "boundary")
STUDY_KEYS = ("errors", "calibration", "confusion", "lrp", "per_image")  # sections inside modes.<mode>.<iou type>
MODE_KEYS = ("stage_weights",)  # study sections inside modes.<mode>, beside the iou types


def iou_types_of(mode: Dict) -> List[str]:
    """The iou types a mode's entry holds (its other keys are study sections such as ``stage_weights``)."""
    return [k for k in mode if k not in MODE_KEYS]


def _summaries(gt, dets, iou_types: Sequence[str], groups, names, source: str, dets_per_class: Optional[int] = None,
               analysis: bool = False, dilation_ratio: float = 0.02, per_image: bool = False) -> Dict:
    """Metrics per iou type; with ``dets_per_class`` also Fixed AP (``AP_fixed`` and every group's), beside them;
    with ``analysis`` the ``errors``, ``calibration``, ``confusion`` and ``lrp`` sections, with ``per_image`` the
    ``per_image`` section (module docstring). Errors name ``source``."""
    return _summaries_many(gt, {"": dets}, {"": list(iou_types)}, groups, names, dets_per_class, analysis,
                           dilation_ratio, sources={"": source}, per_image=per_image)[""]


def _summaries_many(gt, named: Dict, iou_types: Dict[str, List[str]], groups, names,
                    dets_per_class: Optional[int] = None, analysis: bool = False, dilation_ratio: float = 0.02,
                    sources: Optional[Dict[str, str]] = None, per_image: bool = False) -> Dict[str, Dict]:
    """:func:`_summaries` of several detection sets (the modes of one model, named by mode), side by side
    (:func:`mec_cli.evaluation.engine.evaluate_many`): mode -> iou type -> metrics. Errors name ``sources[mode]``
    (default: the mode)."""
    from mec_cli.evaluation.engine import evaluate, evaluate_many
    from mec_cli.evaluation.summary import fixed_metrics, groupings_of, summarize

    def summary(iou_type):
        def then(mode, res):
            dets = named[mode]
            out = summarize(res, gt.frequency, groups, names)
            if dets_per_class:
                fixed = evaluate(gt, dets, iou_type, source=(sources or {}).get(mode, mode),
                                 max_dets_per_class=dets_per_class,
                                 dilation_ratio=dilation_ratio)
                out.update(fixed_metrics(fixed, gt.frequency, groups, names))
            if analysis:
                from mec_cli.evaluation.analysis import analysis_sections

                groupings = groupings_of(res.cat_ids, gt.frequency, groups, names)
                out.update(analysis_sections(gt, dets, res, groupings, dilation_ratio))
            if per_image:
                from mec_cli.evaluation.bootstrap import image_matches
                from mec_cli.evaluation.summary import category_sets

                sets = category_sets(res.cat_ids, gt.frequency, groups, names)
                out["per_image"] = image_matches(gt, dets, res, sets).to_json()
            return out
        return then

    out: Dict[str, Dict] = {mode: {} for mode in named}
    for iou_type in dict.fromkeys(t for types in iou_types.values() for t in types):
        sets = {mode: named[mode] for mode in named if iou_type in iou_types[mode]}
        for mode, metrics in evaluate_many(gt, sets, iou_type, then=summary(iou_type), sources=sources,
                                           dilation_ratio=dilation_ratio).items():
            out[mode][iou_type] = metrics
    return {mode: {t: out[mode][t] for t in iou_types[mode]} for mode in named}


def mode_detections(recs: List[Dict], iou_types: Sequence[str]):
    """(Detections, the iou types they can be scored by) of one mode's records from :class:`MECMetric`, in order."""
    from mec_cli.evaluation.engine import Detections

    segm = [r for rec in recs for r in rec.get("segm", [])] if all("segm" in rec for rec in recs) else None
    dets = Detections(np.concatenate([r["image_id"] for r in recs]), np.concatenate([r["category_id"] for r in recs]),
                      np.concatenate([r["score"] for r in recs]), np.concatenate([r["bbox"] for r in recs]), segm, True)
    return dets, [t for t in iou_types if t == "bbox" or segm is not None]


def evaluate_mode_arrays(records: List[Dict], ann_file: str, iou_types: Sequence[str], protocol: Optional[str] = None,
                         groups_file: Optional[str] = None, dets_per_class: Optional[int] = None,
                         analysis: bool = False, dilation_ratio: float = 0.02, per_image: bool = False) -> Dict:
    """Evaluate detections collected per mode (dicts of arrays from :class:`MECMetric`): mode -> iou type -> metrics.

    A mode whose records carry ``stage_weights`` ((N, K) per image, the dynamic modes) also gets the
    ``stage_weights`` section (module docstring).
    """
    from mec_cli.evaluation.summary import groupings_of, stage_weight_summary

    gt = _load_gt(ann_file, protocol)
    groups, names, _ = _group_info(groups_file)
    by_mode: Dict[str, List[Dict]] = {}
    for rec in records:
        by_mode.setdefault(rec["mode"], []).append(rec)
    named, types = {}, {}
    for mode, recs in by_mode.items():
        named[mode], types[mode] = mode_detections(recs, iou_types)
    out = _summaries_many(gt, named, types, groups, names, dets_per_class, analysis, dilation_ratio,
                          per_image=per_image)
    for mode, recs in by_mode.items():
        if recs and all("stage_weights" in rec for rec in recs):
            weights = np.concatenate([np.asarray(r["stage_weights"], np.float64).reshape(len(r["score"]), -1)
                                      for r in recs])
            groupings = groupings_of(gt.cat_ids, gt.frequency, groups, names)
            out[mode]["stage_weights"] = stage_weight_summary(gt.cats.lookup(named[mode].category_id), weights,
                                                              groupings, gt.num_cats)
    return out


def dump_results(records: List[Dict], out_dir: Union[str, Path]) -> List[Path]:
    """Write one LVIS/COCO results JSON per mode (``<out_dir>/<mode>.json``): image_id, category_id, bbox, score,
    segmentation."""
    from mec_cli.io import write_json_atomic

    by_mode: Dict[str, List[Dict]] = {}
    for rec in records:
        rows = by_mode.setdefault(rec["mode"], [])
        segm = rec.get("segm")
        for k in range(len(rec["score"])):
            row = {"image_id": int(rec["image_id"][k]), "category_id": int(rec["category_id"][k]),
                   "bbox": [float(v) for v in rec["bbox"][k]], "score": float(rec["score"][k])}  # exact, as MMDetection
            if segm is not None:
                rle = segm[k]
                counts = rle["counts"]
                row["segmentation"] = {"size": list(rle["size"]),
                                       "counts": counts.decode() if isinstance(counts, bytes) else counts}
            rows.append(row)
    return [write_json_atomic(Path(out_dir) / f"{mode}.json", rows, indent=None) for mode, rows in by_mode.items()]


VERSIONED = ("mec", "torch", "mmcv", "mmengine", "mmdet", "lvis", "pycocotools", "numpy", "numba")
_DIST_INFO = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._]*?)-(?P<version>[^-/]+?)\.dist-info$")


def _project(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def tool_versions() -> Dict[str, str]:
    """The installed versions of mec and the tools its numbers depend on (:data:`VERSIONED`, those installed).

    Read, as importlib.metadata finds them (the first on ``sys.path``), from the names of the distributions'
    ``<name>-<version>.dist-info`` folders: one listing of each ``sys.path`` folder, where importlib.metadata parses
    every package's METADATA file (0.1 to 0.2 s of each ``mec eval``). A package found no such way is asked of
    importlib.metadata.
    """
    wanted = {_project(p): p for p in VERSIONED}
    out: Dict[str, str] = {}
    for folder in sys.path:
        try:
            names = os.listdir(folder or ".")
        except OSError:
            continue
        for name in names:
            m = _DIST_INFO.match(name) if name.endswith(".dist-info") else None
            pkg = wanted.get(_project(m["name"])) if m else None
            if pkg and pkg not in out:
                out[pkg] = m["version"]
    missing = [p for p in VERSIONED if p not in out]
    if missing:
        from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415  (only for an unusual install)

        for pkg in missing:
            try:
                out[pkg] = version(pkg)
            except PackageNotFoundError:
                pass
    return {p: out[p] for p in VERSIONED if p in out}


def detection_cap(protocol: str, test_cfg: Optional[Dict] = None) -> Dict:
    """What limited the detections: the evaluator's cap of the protocol and, for a model, its own test settings."""
    from mec_cli.evaluation.engine import PROTOCOLS

    cap = {"evaluator_max_dets": PROTOCOLS[protocol],
           "evaluator_per": "image" if protocol == "lvis" else "image and category"}
    if test_cfg:
        cap.update(model_max_per_img=int(test_cfg["max_per_img"]), model_score_thr=float(test_cfg["score_thr"]))
    return cap


def describe_cap(protocol: str, cap: Dict) -> str:
    """One line for the terminal: which protocol and which detection caps made the numbers."""
    text = (f"{protocol.upper()} protocol: the evaluator keeps the {cap['evaluator_max_dets']} highest-scoring "
            f"detections per {cap['evaluator_per']}")
    if "model_max_per_img" in cap:
        text += f"; the model kept at most {cap['model_max_per_img']} per image at score >= {cap['model_score_thr']:g}"
    if "fixed_ap_dets_per_class" in cap:
        text += (f"; AP fixed: the {cap['fixed_ap_dets_per_class']:,} highest-scoring detections per category over "
                 "the dataset, no per-image cap")
    return text + "."


def metrics_document(modes: Dict, protocol: str, ann_file: str, groups_file: Optional[str] = None,
                     dets_per_class: Optional[int] = None, dilation_ratio: Optional[float] = None, **fields) -> Dict:
    """The metrics JSON (module docstring); ``dilation_ratio`` is recorded when Boundary AP was evaluated."""
    from mec_cli.evaluation.engine import IOU_THRS

    _, _, ginfo = _group_info(groups_file)
    test_cfg = (fields.get("run") or {}).get("test_cfg")
    cap = detection_cap(protocol, test_cfg)
    if dets_per_class:
        cap["fixed_ap_dets_per_class"] = int(dets_per_class)
    boundary = any("boundary" in m for m in modes.values())
    extra = {"boundary_dilation": float(dilation_ratio)} if boundary and dilation_ratio is not None else {}
    return {"schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "protocol": protocol, "detection_cap": cap, "iou_thresholds": [round(float(t), 2) for t in IOU_THRS],
            **extra,
            "ann_file": str(ann_file), **fields, "groups": ginfo, "versions": tool_versions(), "modes": modes}


def evaluate_results_file(results: Union[str, Path, Sequence[Union[str, Path]]], ann: Union[str, Path],
                          iou_types: Optional[Sequence[str]] = None,
                          protocol: Optional[str] = None, groups_file: Optional[str] = None,
                          dets_per_class: Optional[int] = None, analysis: bool = False,
                          dilation_ratio: float = 0.02, progress=None, per_image: bool = False) -> Dict:
    """Evaluate an LVIS/COCO results JSON (MMDetection, detectron2, pycocotools...); mode name ``results``.

    ``iou_types`` defaults to what the results hold: bbox when the records carry boxes, segm when they carry
    segmentations, both when they carry both; boundary (Boundary AP, from the segmentations) only when asked
    for, with ``dilation_ratio``. ``analysis`` adds the errors, calibration, confusion and lrp sections,
    ``per_image`` the per_image section (for ``mec report compare --ci``).
    ``progress(step, done, total)``, when given, hears of each step as it goes (``total`` 0: no count).
    Inputs are checked in the order groups, results, annotations, before any evaluation: the results are read
    (in their own threads; a large file of boxes is never held whole) while the annotations are indexed here,
    and a problem with the results is reported before one with the annotations.
    Several results files are shards of one (each image's detections in one of them): each is matched apart and
    the parts merged (:mod:`mec_cli.evaluation.partial`), which gives the metrics of their concatenation.
    """
    from concurrent.futures import ThreadPoolExecutor

    if not isinstance(results, (str, Path)):
        shards = list(results)
        if len(shards) > 1:
            from mec_cli.evaluation.partial import PARTIAL_REFUSED, evaluate_shards

            if dets_per_class or analysis:
                raise MecError(f"several results files are evaluated shard by shard: {PARTIAL_REFUSED}")
            return evaluate_shards(shards, ann, iou_types, protocol, groups_file, dilation_ratio, progress, per_image)
        results = shards[0]

    from mec_cli.evaluation.jsonscan import read_results_file

    if "boundary" in (iou_types or ()):
        from mec_cli.evaluation.boundary import check_dilation

        check_dilation(dilation_ratio)
    groups, names, _ = _group_info(groups_file)
    report = progress or (lambda step, done=0, total=0: None)
    with ThreadPoolExecutor(1) as pool:
        reading = pool.submit(read_results_file, results,
                              progress=lambda done, total: report("reading the results", done, total))
        report("reading the annotations")
        try:
            gt, gt_error = _load_gt(ann, protocol), None
        except MecError as exc:
            gt, gt_error = None, exc
        arrays, buf = reading.result()  # the results' own problem first
    if gt_error is not None:
        raise gt_error
    dets = detections_of(arrays, buf, results, gt)
    del arrays, buf  # box-only results keep nothing of the file's bytes (masks keep them through dets.segm)
    iou_types = scorable_iou_types(dets, iou_types, results)
    report("evaluating " + ", ".join(iou_types) + (" and Fixed AP" if dets_per_class else "")
           + (" with the error, calibration, confusion and oLRP studies" if analysis else ""))
    modes = {"results": _summaries(gt, dets, iou_types, groups, names, str(results), dets_per_class, analysis,
                                   dilation_ratio, per_image)}
    return metrics_document(modes, gt.protocol, str(ann), groups_file, results_file=str(results), checkpoint=None,
                            recipe=None, config=None, run=None, dets_per_class=dets_per_class,
                            dilation_ratio=dilation_ratio)


def detections_of(arrays, buf, results, gt):
    """:class:`mec_cli.evaluation.engine.Detections` of a scanned results file, read against ``gt`` (polygons are
    rasterised at its images' sizes); every mask is checked first, as pycocotools would decode it."""
    from mec_cli.evaluation.engine import KIND_POLYGONS, Detections
    from mec_cli.evaluation.masks import check_results_masks

    check_results_masks(arrays, buf, gt.image_size, str(results))  # before anything decodes a mask
    polygons = (arrays.segm_kind == KIND_POLYGONS).any()  # they need the images' sizes
    dets = Detections.from_scan(arrays, buf, str(results), gt.image_size if polygons else None)
    if dets.segm is not None:
        dets.segm.image_size = gt.image_size
    return dets


def scorable_iou_types(dets, iou_types: Optional[Sequence[str]], results) -> List[str]:
    """``iou_types``, or by default what the results hold; a MecError naming ``results`` for one they cannot give."""
    if not iou_types:
        iou_types = dets.iou_types()
    scorable = dets.scorable_by() + (["boundary"] if "segm" in dets.scorable_by() else [])
    missing = [t for t in iou_types if t not in scorable]
    if missing:
        what = "boxes" if missing[0] == "bbox" else "segmentations"
        raise MecError(f"evaluation by {missing[0]} asked for, but the results hold no {what}", results)
    return list(iou_types)


def load_metrics(path: Union[str, Path]) -> Dict:
    """Read a metrics JSON and check it: schema version, and the shapes ``mec report`` reads (one MecError naming
    the file and the field otherwise)."""
    from mec_cli.io import read_json

    doc = read_json(path)
    if not isinstance(doc, dict) or "schema" not in doc:
        raise MecError("not a mec metrics file (no 'schema')", path)
    if doc["schema"] not in READABLE_SCHEMAS:
        raise MecError(f"metrics schema {doc['schema']!r} is not supported (expected one of "
                       f"{', '.join(READABLE_SCHEMAS)})", path)
    check_metrics_document(doc, path)
    return doc


def _number_or_none(v) -> bool:
    return v is None or (type(v) in (int, float) and v == v)


def check_metrics_document(doc: Dict, path) -> None:
    """The structure every reader relies on: modes -> iou type -> metric name -> number (or a per-category or
    per-threshold table), plus optional run, groups and recipe fields of the right types."""
    modes = doc.get("modes")
    if not isinstance(modes, dict) or not modes:
        raise MecError("metrics file has no modes", path)
    thresholds = doc.get("iou_thresholds", STANDARD_IOU_THRESHOLDS)
    if thresholds != STANDARD_IOU_THRESHOLDS:
        raise MecError(f"iou_thresholds must be the evaluator's ten, {STANDARD_IOU_THRESHOLDS[0]} to "
                       f"{STANDARD_IOU_THRESHOLDS[-1]} in steps of 0.05, got {thresholds!r}"[:300], path)
    for mode, by_type in modes.items():
        if not isinstance(by_type, dict) or not iou_types_of(by_type):
            raise MecError(f"mode {mode!r} holds no iou types", path)
        if "stage_weights" in by_type:
            _check_study(by_type["stage_weights"], f"modes.{mode}.stage_weights", _STAGE_WEIGHTS, path)
        for iou_type in iou_types_of(by_type):
            metrics = by_type[iou_type]
            if not isinstance(metrics, dict):
                raise MecError(f"modes.{mode}.{iou_type} is not an object of metrics", path)
            for key, shape in (("errors", _ERRORS), ("calibration", _CALIBRATION)):
                if key in metrics:
                    _check_study(metrics[key], f"modes.{mode}.{iou_type}.{key}", shape, path)
            per_iou = metrics.get("AP_per_iou")
            if per_iou is not None:
                if not isinstance(per_iou, dict):
                    raise MecError(f"modes.{mode}.{iou_type}.AP_per_iou is not an object of lists", path)
                bad = next((k for k, v in per_iou.items() if not _numbers(len(STANDARD_IOU_THRESHOLDS))(v)), None)
                if bad is not None:
                    raise MecError(f"modes.{mode}.{iou_type}.AP_per_iou.{bad} is not a list of "
                                   f"{len(STANDARD_IOU_THRESHOLDS)} numbers (one per IoU threshold)", path)
            for key, check in (("confusion", _check_confusion), ("lrp", _check_lrp), ("per_image", _check_per_image)):
                if key in metrics:
                    check(metrics[key], f"modes.{mode}.{iou_type}.{key}", path)
            for name, value in metrics.items():
                if name in STUDY_KEYS:
                    continue
                if isinstance(value, dict):
                    bad = next((k for k, v in value.items()
                                if not _number_or_none(v) and not isinstance(v, (dict, list))), None)
                elif isinstance(value, list):
                    bad = None if all(_number_or_none(v) or isinstance(v, list) for v in value) else name
                else:
                    bad = None if _number_or_none(value) else name
                if bad is not None:
                    raise MecError(f"modes.{mode}.{iou_type}.{name} is not a number", path)
    run = doc.get("run")
    if run is not None:
        if not isinstance(run, dict):
            raise MecError("'run' is not an object", path)
        if "num_stages" in run and run["num_stages"] is not None and type(run["num_stages"]) is not int:
            raise MecError(f"run.num_stages is not an integer: {run['num_stages']!r}", path)
        if "lam" in run and not _number_or_none(run["lam"]):
            raise MecError(f"run.lam is not a number: {run['lam']!r}", path)
        if "recipe_meta" in run and not isinstance(run["recipe_meta"], (dict, type(None))):
            raise MecError("run.recipe_meta is not an object", path)
    groups = doc.get("groups")
    if groups is not None:
        names = groups.get("names") if isinstance(groups, dict) else None
        if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
            raise MecError("groups.names is not a list of group names", path)
        bins = groups.get("bins", [])
        if not (isinstance(bins, list) and all(type(b) is int for b in bins)):
            raise MecError("groups.bins is not a list of integers", path)
    for key in ("recipe", "protocol"):
        if doc.get(key) is not None and not isinstance(doc[key], str):
            raise MecError(f"'{key}' is not a string", path)
    if not _number_or_none(doc.get("boundary_dilation")):
        raise MecError("'boundary_dilation' is not a number", path)


def _is_count(v) -> bool:
    return type(v) is int and v >= 0


def _numbers(n: Optional[int] = None):
    """A list of numbers or nulls (of length ``n`` when given)."""
    return lambda v: isinstance(v, list) and all(_number_or_none(x) for x in v) and (n is None or len(v) == n)


def _typed(keys: Sequence[str], check):
    """An object with every one of ``keys``, each passing ``check``."""
    return lambda v: isinstance(v, dict) and all(k in v and check(v[k]) for k in keys)


def _section_checks(shape: str, top: Dict):
    """The fields each group's section must have, and their checks."""
    from mec_cli.evaluation.errors import ERROR_TYPES

    if shape == _ERRORS:
        return {"AP50": _number_or_none, "dAP": _typed(ERROR_TYPES, _number_or_none),
                "share": _typed(ERROR_TYPES, _number_or_none), "count": _typed(ERROR_TYPES, _is_count),
                "cls_objects": _is_count, "cls_to_more_frequent": _number_or_none}
    if shape == _CALIBRATION:
        n = top.get("bins")
        return {"count": lambda v: isinstance(v, list) and len(v) == n and all(_is_count(x) for x in v),
                "score": _numbers(n), "precision": _numbers(n), "ece": _number_or_none, "detections": _is_count}
    k = top.get("stages")
    return {"mean": lambda v: v is None or _numbers(k)(v), "detections": _is_count}


_ERRORS, _CALIBRATION, _STAGE_WEIGHTS = "errors", "calibration", "stage_weights"
_TOP = {_ERRORS: {"fg_iou": _number_or_none, "bg_iou": _number_or_none},
        _CALIBRATION: {"bins": lambda v: type(v) is int and v >= 1, "iou": _number_or_none},
        _STAGE_WEIGHTS: {"stages": lambda v: type(v) is int and v >= 1}}


def _check_study(value, where: str, shape: str, path) -> None:
    """A study section (module docstring): its top fields, then grouping -> group -> section fields."""
    if not isinstance(value, dict):
        raise MecError(f"{where} is not an object", path)
    for field, ok in _TOP[shape].items():
        if field not in value or not ok(value[field]):
            raise MecError(f"{where}.{field} is missing or malformed", path)
    groupings = value.get("groupings")
    if not isinstance(groupings, dict):  # empty for COCO annotations evaluated without groups.json: no groups
        raise MecError(f"{where}.groupings is missing", path)
    checks = _section_checks(shape, value)
    for grouping, sections in groupings.items():
        if not isinstance(sections, dict) or "all" not in sections:
            raise MecError(f"{where}.groupings.{grouping} is not an object of groups with 'all'", path)
        for group, section in sections.items():
            if not isinstance(section, dict):
                raise MecError(f"{where}.groupings.{grouping}.{group} is not an object", path)
            for field, ok in checks.items():
                if field not in section or not ok(section[field]):
                    raise MecError(f"{where}.groupings.{grouping}.{group}.{field} is missing or malformed", path)


def _check_confusion(value, where: str, path) -> None:
    """The ``confusion`` section: grouping -> group (then 'all') -> objects, correct, as {group: n}, none; pairs."""
    def row_ok(row) -> bool:
        return (isinstance(row, dict) and all(_is_count(row.get(f)) for f in ("objects", "correct", "none"))
                and isinstance(row.get("as"), dict) and all(_is_count(v) for v in row["as"].values()))

    if not (isinstance(value, dict) and _number_or_none(value.get("iou")) and isinstance(value.get("groupings"), dict)
            and isinstance(value.get("pairs"), list)):
        raise MecError(f"{where} is not a confusion section (iou, groupings, pairs)", path)
    for grouping, rows in value["groupings"].items():
        if not isinstance(rows, dict) or "all" not in rows or not all(row_ok(r) for r in rows.values()):
            raise MecError(f"{where}.groupings.{grouping} is malformed", path)
    for pair in value["pairs"]:
        if not (isinstance(pair, dict) and type(pair.get("gt")) is int and type(pair.get("label")) is int
                and _is_count(pair.get("objects")) and _is_count(pair.get("gt_objects"))):
            raise MecError(f"{where}.pairs holds a malformed pair", path)


def _check_lrp(value, where: str, path) -> None:
    """The ``lrp`` section: tau, overall and per-group blocks of oLRP and its components, per-category values."""
    def block_ok(block) -> bool:
        return (isinstance(block, dict) and all(_number_or_none(block.get(f)) for f in ("oLRP", "loc", "fp", "fn"))
                and _is_count(block.get("categories")))

    if not (isinstance(value, dict) and _number_or_none(value.get("tau")) and block_ok(value.get("overall"))
            and isinstance(value.get("groupings"), dict) and isinstance(value.get("per_category", {}), dict)):
        raise MecError(f"{where} is not an oLRP section (tau, overall, groupings)", path)
    for grouping, blocks in value["groupings"].items():
        if not isinstance(blocks, dict) or "all" not in blocks or not all(block_ok(b) for b in blocks.values()):
            raise MecError(f"{where}.groupings.{grouping} is malformed", path)
    for cat, entry in value.get("per_category", {}).items():
        if not (isinstance(entry, dict) and all(_number_or_none(v) for v in entry.values())):
            raise MecError(f"{where}.per_category.{cat} is malformed", path)


def _check_per_image(value, where: str, path) -> None:
    """The ``per_image`` section is decoded and checked where it is used (``mec report compare --ci``); here only its
    header, so that reading a metrics file stays fast."""
    if not (isinstance(value, dict) and isinstance(value.get("format"), str) and _is_count(value.get("images"))
            and _is_count(value.get("detections"))):
        raise MecError(f"{where} is not per-image data (format, images, detections)", path)
