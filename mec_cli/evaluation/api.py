"""Evaluation entry points and the metrics JSON that `mec eval` writes and `mec report` reads.

Metrics JSON, schema ``mec.metrics/1``::

    {"schema": "mec.metrics/1", "created": "...", "protocol": "lvis", "ann_file": "...",
     "checkpoint": "...", "recipe": "tiny", "config": "...", "results_file": null,
     "run": {"mec_loss": true, "lam": 0.7, "num_stages": 3, "tau": 1.0, "recipe_meta": {...}},
     "groups": {"file": "...", "names": ["rare", "common", "frequent"], "bins": [10, 100], "category_group": {...}},
     "versions": {"mec": "...", "torch": "...", ...},
     "modes": {"<mode>": {"bbox": {"AP": 0.31, ..., "AP_rare": 0.12, "per_category": {"<id>": 0.5}},
                          "segm": {...}}}}

Mode names: ``results`` for a results-file evaluation, ``stage1``..``stageK`` for single stages, and
``mean_logits``, ``mean_probs``, ``sparse``, ``dynamic``, each optionally suffixed ``_ga`` (group
alignment). Metric values are fractions in [0, 1]; -1 means "no ground truth to measure".
"""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from mec_cli.errors import MecError

SCHEMA = "mec.metrics/1"


def detect_protocol(data: Dict) -> str:
    """'lvis' when the images carry LVIS's federated fields, else 'coco'."""
    images = data.get("images") or []
    return "lvis" if images and "neg_category_ids" in images[0] else "coco"


def _load_gt(ann_file: Union[str, Path], protocol: Optional[str]):
    from mec_cli.data.annotations import load_annotations
    from mec_cli.evaluation.engine import GroundTruth

    data = load_annotations(ann_file)
    protocol = protocol or detect_protocol(data)
    if protocol == "lvis":
        missing = next((im for im in data["images"] if "neg_category_ids" not in im or "not_exhaustive_category_ids" not in im), None)
        if missing is not None:
            raise MecError(f"image id {missing['id']} lacks neg_category_ids/not_exhaustive_category_ids needed by "
                           f"the LVIS protocol (use --protocol coco)", ann_file)
    return GroundTruth(data, protocol)


def _group_info(groups_file: Optional[Union[str, Path]]):
    if not groups_file:
        return None, None, None
    from mec_cli.data.groups import load_groups

    spec = load_groups(groups_file)
    info = {"file": str(groups_file), "names": spec.names, "bins": spec.bins, "count_by": spec.count_by,
            "category_group": {str(k): v for k, v in spec.category_group.items()}}
    return spec.category_group, spec.names, info


def _summaries(gt, dets, iou_types: Sequence[str], groups, names, source: str) -> Dict:
    from mec_cli.evaluation.engine import evaluate
    from mec_cli.evaluation.summary import summarize

    out = {}
    for iou_type in iou_types:
        res = evaluate(gt, dets, iou_type, source=source)
        out[iou_type] = summarize(res, gt.frequency, groups, names)
    return out


def evaluate_mode_arrays(records: List[Dict], ann_file: str, iou_types: Sequence[str], protocol: Optional[str] = None,
                         groups_file: Optional[str] = None) -> Dict:
    """Evaluate detections collected per mode (dicts of arrays from :class:`MECMetric`): mode -> iou type -> metrics."""
    from mec_cli.evaluation.engine import Detections

    gt = _load_gt(ann_file, protocol)
    groups, names, _ = _group_info(groups_file)
    by_mode: Dict[str, List[Dict]] = {}
    for rec in records:
        by_mode.setdefault(rec["mode"], []).append(rec)
    out = {}
    for mode, recs in by_mode.items():
        segm = [r for rec in recs for r in rec.get("segm", [])] if all("segm" in rec for rec in recs) else None
        dets = Detections(np.concatenate([r["image_id"] for r in recs]), np.concatenate([r["category_id"] for r in recs]),
                          np.concatenate([r["score"] for r in recs]), np.concatenate([r["bbox"] for r in recs]), segm, True)
        types = [t for t in iou_types if t == "bbox" or segm is not None]
        out[mode] = _summaries(gt, dets, types, groups, names, mode)
    return out


def dump_results(records: List[Dict], out_dir: Union[str, Path]) -> List[Path]:
    """Write one LVIS/COCO results JSON per mode (``<out_dir>/<mode>.json``): image_id, category_id, bbox, score, segmentation."""
    from mec_cli.io import write_json_atomic

    by_mode: Dict[str, List[Dict]] = {}
    for rec in records:
        rows = by_mode.setdefault(rec["mode"], [])
        segm = rec.get("segm")
        for k in range(len(rec["score"])):
            row = {"image_id": int(rec["image_id"][k]), "category_id": int(rec["category_id"][k]),
                   "bbox": [round(float(v), 2) for v in rec["bbox"][k]], "score": round(float(rec["score"][k]), 6)}
            if segm is not None:
                rle = segm[k]
                row["segmentation"] = {"size": list(rle["size"]), "counts": rle["counts"].decode() if isinstance(rle["counts"], bytes)
                                       else rle["counts"]}
            rows.append(row)
    return [write_json_atomic(Path(out_dir) / f"{mode}.json", rows, indent=None) for mode, rows in by_mode.items()]


def tool_versions() -> Dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("mec", "torch", "mmcv", "mmengine", "mmdet", "lvis", "pycocotools", "numpy", "numba"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            pass
    return out


def metrics_document(modes: Dict, protocol: str, ann_file: str, groups_file: Optional[str] = None, **fields) -> Dict:
    _, _, ginfo = _group_info(groups_file)
    return {"schema": SCHEMA, "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "protocol": protocol, "ann_file": str(ann_file), **fields, "groups": ginfo, "versions": tool_versions(),
            "modes": modes}


def evaluate_results_file(results: Union[str, Path], ann: Union[str, Path], iou_types: Sequence[str] = ("bbox",),
                          protocol: Optional[str] = None, groups_file: Optional[str] = None) -> Dict:
    """Evaluate an LVIS/COCO results JSON (e.g. from MMDetection's tools/test.py); mode name ``results``."""
    from mec_cli.evaluation.engine import Detections
    from mec_cli.io import read_json

    gt = _load_gt(ann, protocol)
    dets = Detections.from_records(read_json(results), str(results))
    groups, names, _ = _group_info(groups_file)
    modes = {"results": _summaries(gt, dets, iou_types, groups, names, str(results))}
    return metrics_document(modes, gt.protocol, str(ann), groups_file, results_file=str(results), checkpoint=None,
                            recipe=None, config=None, run=None)


def load_metrics(path: Union[str, Path]) -> Dict:
    """Read a metrics JSON and check its schema version."""
    from mec_cli.io import read_json

    doc = read_json(path)
    if not isinstance(doc, dict) or "schema" not in doc:
        raise MecError("not a mec metrics file (no 'schema')", path)
    if doc["schema"] != SCHEMA:
        raise MecError(f"metrics schema {doc['schema']!r} is not supported (expected {SCHEMA})", path)
    if not isinstance(doc.get("modes"), dict) or not doc["modes"]:
        raise MecError("metrics file has no modes", path)
    return doc
