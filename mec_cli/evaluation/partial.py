"""Partial evaluations that merge into exactly the metrics of one evaluation in one process, bit for bit.

A part is one shard of the images: a rank of ``mec eval --checkpoint --gpus N``, one of several results files
(``mec eval --results A.json --results B.json``), or a file written by ``mec eval --results A.json --partial
A.partial.npz`` and merged later by ``mec eval --merge A.partial.npz --merge B.partial.npz``.

**Why merging is exact.** Everything before the accumulation is decided image by image: which detections count
(LVIS's 300 per image and federated rule, COCO's 100 per image and category), the greedy matching, and which
detections are ignored. A part keeps, for every detection that counts, its image and category index, its score,
its place in its image's detections (file order), and its true-positive and ignored bits at every IoU threshold
and area range (the evaluator's own, :func:`mec_cli.evaluation.engine.evaluate`). Merging concatenates the parts
and ranks each category's detections as the evaluator does (highest score first, ties in image order, then file
order within the image); the accumulation and the summaries are then the evaluator's own code on the same inputs
in the same order, so every number is the same. The single-process run a merge equals is the evaluation of the
parts' detections together (for results files: their concatenation, in any order; for ranks: the gathered
predictions, as mmengine gathers them).

**What it needs.** Every image's detections in one part: an image with detections in two parts is refused,
naming it and the parts (split results by image, not by detection). Parts evaluated against the same annotations
(a fingerprint of the image ids, category ids and ground-truth counts must agree) and with the same iou types.
Fixed AP (its per-category cap spans the dataset) and the ``--analysis`` studies (they re-rank errors over the
dataset) need every detection at once: they are refused on parts and stay single-process.

A partial file is a numpy ``.npz`` (no pickles): a JSON header (format ``mec.partial/1``, protocol, annotation
file and fingerprint, categories with their LVIS frequency, the groups of groups.json, iou types, sources) and,
per iou type, the columns above; plus the ground-truth counts, so a merge needs neither the annotations nor the
results files.
"""
from __future__ import annotations

import hashlib
import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from mec_cli.errors import MecError
from mec_cli.evaluation import kernels
from mec_cli.evaluation.api import (
    _group_info,
    _load_gt,
    detections_of,
    metrics_document,
    mode_detections,
    scorable_iou_types,
)
from mec_cli.evaluation.bootstrap import ImageMatches, gt_pairs_of, image_digest
from mec_cli.evaluation.boundary import check_dilation
from mec_cli.evaluation.engine import AREA_LABELS, IOU_THRS, REC_THRS, EvalResult, GroundTruth, evaluate
from mec_cli.evaluation.jsonscan import read_results_file
from mec_cli.evaluation.summary import category_sets, groupings_of, stage_weight_summary, summarize
from mec_cli.io import atomic_path

FORMAT = "mec.partial/1"
COLUMNS = {"image": np.int32, "category": np.int32, "score": np.float64, "tie": np.int64, "tp": np.uint64,
           "ig": np.uint64}
PARTIAL_REFUSED = ("Fixed AP and the --analysis studies need every detection at once; evaluate the whole results "
                   "in one process for them")


def fingerprint(gt: GroundTruth) -> str:
    """The annotations as far as a merge depends on them: image ids, category ids, ground-truth counts."""
    h = hashlib.sha256()
    for a in (gt.img_ids, gt.cat_ids, gt.gt_npig):
        h.update(np.ascontiguousarray(a, "<i8").tobytes())
    return h.hexdigest()[:32]


@dataclass
class Partial:
    """One part: ``meta`` (the header, module docstring), the image indices it holds detections of (``images``),
    the annotations' image ids (``image_ids``, sorted: index -> id), the ground truth's counts (``gt_npig`` (K, A),
    ``gt_pairs`` (P, 3): image, category, non-ignored ground truths at area 'all') and per iou type the columns of
    :data:`COLUMNS` for each detection that counts."""

    meta: Dict
    images: np.ndarray
    image_ids: Optional[np.ndarray]
    gt_npig: Optional[np.ndarray]
    gt_pairs: Optional[np.ndarray]
    sections: Dict[str, Dict[str, np.ndarray]] = field(default_factory=dict)
    origin: Optional[str] = None  # the partial file it was read from

    @property
    def label(self) -> str:
        return self.origin or ", ".join(self.meta.get("sources") or ["a part"])

    def save(self, path: Union[str, Path]) -> Path:
        """Write the part as an .npz, atomically."""
        arrays = {"meta": np.array(json.dumps(self.meta)), "images": self.images, "image_ids": self.image_ids,
                  "gt_npig": self.gt_npig, "gt_pairs": self.gt_pairs}
        for iou_type, cols in self.sections.items():
            arrays.update({f"{iou_type}.{name}": cols[name] for name in COLUMNS})
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        return Path(path)


def load_partial(path: Union[str, Path]) -> Partial:
    """Read a partial file (one MecError naming it when it is not one)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if not isinstance(meta, dict) or meta.get("format") != FORMAT:
                raise MecError(f"not a partial evaluation of format {FORMAT} (write one with `mec eval --results "
                               "... --partial`)", path)
            part = Partial(meta, z["images"].astype(np.int64), z["image_ids"].astype(np.int64),
                           z["gt_npig"].astype(np.int64), z["gt_pairs"].astype(np.int64))
            for iou_type in meta["iou_types"]:
                part.sections[iou_type] = {name: z[f"{iou_type}.{name}"].astype(dtype)
                                           for name, dtype in COLUMNS.items()}
    except FileNotFoundError:
        raise MecError("no such partial file", path) from None
    except MecError:
        raise
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as e:
        raise MecError(f"not a readable partial evaluation ({type(e).__name__}: {e})", path) from None
    k, n_img = len(meta.get("cat_ids", [])), int(meta.get("num_images", -1))
    lengths_ok = all(len({len(c) for c in cols.values()}) == 1 for cols in part.sections.values())
    if (not lengths_ok or part.gt_npig.shape != (k, len(AREA_LABELS)) or len(part.image_ids) != n_img
            or part.gt_pairs.ndim != 2 or part.gt_pairs.shape[1] != 3):
        raise MecError("partial evaluation is inconsistent (columns of different lengths or wrong shapes)", path)
    for cols in part.sections.values():
        if len(cols["image"]) and (cols["image"].min() < 0 or cols["image"].max() >= n_img
                                   or cols["category"].min() < 0 or cols["category"].max() >= k):
            raise MecError("partial evaluation has image or category indices out of range", path)
    part.origin = str(path)
    return part


def load_ground_truth(ann_file: Union[str, Path], protocol: Optional[str] = None) -> GroundTruth:
    """The annotations read, checked and indexed (the protocol from the file unless given), as every part needs."""
    return _load_gt(ann_file, protocol)


def gt_header(gt: GroundTruth, groups_info: Optional[Dict], iou_types: Sequence[str], dilation_ratio: float,
              sources: Sequence[str]) -> Dict:
    """The header of a part of an evaluation against ``gt``."""
    return {"format": FORMAT, "protocol": gt.protocol, "ann_file": gt.source, "fingerprint": fingerprint(gt),
            "num_images": int(len(gt.img_ids)), "image_digest": image_digest(gt.img_ids),
            "cat_ids": [int(c) for c in gt.cat_ids], "frequency": {str(k): v for k, v in gt.frequency.items()},
            "groups": groups_info, "iou_types": list(iou_types), "boundary_dilation": float(dilation_ratio),
            "sources": list(sources)}


def partial_of(gt: GroundTruth, dets, iou_types: Sequence[str], groups_info: Optional[Dict] = None,
               sources: Sequence[str] = (), dilation_ratio: float = 0.02, source: str = "results",
               with_gt: bool = True) -> Partial:
    """The part of an evaluation made of ``dets`` (:class:`mec_cli.evaluation.engine.Detections`): every image they
    hold detections of must be theirs alone among the parts merged with it. ``with_gt`` False leaves out the
    ground truth's arrays (a rank's part: rank 0 has them, :func:`with_ground_truth`)."""
    img_idx = gt.images.lookup(dets.image_id)
    part = Partial(gt_header(gt, groups_info, iou_types, dilation_ratio, sources),
                   np.unique(img_idx[img_idx >= 0]).astype(np.int64), None, None, None)
    if with_gt:
        with_ground_truth(part, gt)
    for iou_type in iou_types:
        res = evaluate(gt, dets, iou_type, source=source, dilation_ratio=dilation_ratio)
        order = res.order
        part.sections[iou_type] = {"image": img_idx[order].astype(np.int32),
                                   "category": gt.cats.lookup(dets.category_id[order]).astype(np.int32),
                                   "score": dets.score[order].astype(np.float64), "tie": order.astype(np.int64),
                                   "tp": res.det_tp, "ig": res.det_ig}
    return part


def with_ground_truth(part: Partial, gt: GroundTruth) -> Partial:
    """``part`` with the ground truth's arrays (image ids, counts) of ``gt``, which must be its annotations."""
    if part.meta["fingerprint"] != fingerprint(gt):
        raise MecError(f"the part {part.label} was not evaluated against these annotations", gt.source)
    part.image_ids, part.gt_npig, part.gt_pairs = gt.img_ids.astype(np.int64), gt.gt_npig.astype(np.int64), \
        gt_pairs_of(gt)
    return part


@dataclass
class Merged:
    """Parts merged: per iou type the evaluator's result (``results``) and the detections in accumulation order
    (``columns``, for the per-image records), with the header of the first part."""

    meta: Dict
    gt_pairs: np.ndarray
    results: Dict[str, EvalResult]
    columns: Dict[str, Dict[str, np.ndarray]]

    @property
    def frequency(self) -> Dict[int, Optional[str]]:
        return {int(k): v for k, v in self.meta["frequency"].items()}

    def groups(self):
        """(category id -> group index, group names) of groups.json as the parts recorded it, or (None, None)."""
        info = self.meta.get("groups")
        if not info:
            return None, None
        return {int(k): int(v) for k, v in info["category_group"].items()}, list(info["names"])


def _check_compatible(parts: Sequence[Partial]) -> None:
    first = parts[0].meta
    for part in parts[1:]:
        m = part.meta
        for key, what in (("fingerprint", "annotations (images, categories or ground truths differ)"),
                          ("protocol", "protocol"), ("iou_types", "iou types"), ("groups", "groups.json groups"),
                          ("boundary_dilation", "Boundary AP dilation ratio")):
            if m.get(key) != first.get(key):
                raise MecError(f"the parts {parts[0].label} and {part.label} differ in their {what}: they cannot be "
                               "merged")
    images = np.concatenate([p.images for p in parts])
    owner = np.concatenate([np.full(len(p.images), i) for i, p in enumerate(parts)])
    order = np.argsort(images, kind="stable")
    dup = np.flatnonzero(np.diff(images[order]) == 0)
    if dup.size:
        a, b = owner[order[dup[0]]], owner[order[dup[0] + 1]]
        image_id = int(parts[0].image_ids[int(images[order[dup[0]]])])
        raise MecError(f"image id {image_id} has detections in two parts ({parts[a].label} and {parts[b].label}): "
                       "parts must split the results by image")


def merge(parts: Sequence[Partial]) -> Merged:
    """Merge parts (module docstring): the evaluator's result per iou type, as one evaluation of all of them."""
    if not parts:
        raise MecError("no parts to merge")
    _check_compatible(parts)
    meta = parts[0].meta
    k, num_thr = len(meta["cat_ids"]), len(IOU_THRS)
    results, columns = {}, {}
    for iou_type in meta["iou_types"]:
        cols = {name: np.concatenate([p.sections[iou_type][name] for p in parts]) for name in COLUMNS}
        # the evaluator's ranking: category, highest score first, then image, then file order within the image
        order = np.lexsort((cols["tie"], cols["image"], -cols["score"], cols["category"]))
        cols = {name: c[order] for name, c in cols.items()}
        cat_ptr = np.zeros(k + 1, np.int64)
        np.cumsum(np.bincount(cols["category"], minlength=k), out=cat_ptr[1:])
        precision = np.empty((num_thr, len(REC_THRS), k, len(AREA_LABELS)))
        recall = np.empty((num_thr, k, len(AREA_LABELS)))
        cat_mean = np.empty(k)
        kernels.accumulate(np.ascontiguousarray(cols["tp"]), np.ascontiguousarray(cols["ig"]), cat_ptr,
                           parts[0].gt_npig, num_thr, REC_THRS, precision, recall, cat_mean, AREA_LABELS.index("all"))
        results[iou_type] = EvalResult(precision, recall, np.asarray(meta["cat_ids"], np.int64), meta["protocol"],
                                       iou_type, len(order), None, cols["tp"], cols["ig"], cat_mean)
        columns[iou_type] = cols
    return Merged(meta, parts[0].gt_pairs, results, columns)


def merged_metrics(merged: Merged, per_image: bool = False) -> Dict[str, Dict]:
    """iou type -> metrics of merged parts, as :func:`mec_cli.evaluation.api._summaries` gives them for the
    evaluation of everything at once (Fixed AP and the analysis studies excepted)."""
    groups, names = merged.groups()
    out = {}
    for iou_type, res in merged.results.items():
        metrics = summarize(res, merged.frequency, groups, names)
        if per_image:
            cols = merged.columns[iou_type]
            sets = category_sets(res.cat_ids, merged.frequency, groups, names)
            metrics["per_image"] = ImageMatches.build(
                merged.meta["num_images"], merged.meta["image_digest"], res.cat_ids, cols["category"], cols["image"],
                cols["score"], cols["tp"], cols["ig"], merged.gt_pairs,
                {"AP": list(range(len(res.cat_ids))), **sets}).to_json()
        out[iou_type] = metrics
    return out


def merged_document(merged: Merged, per_image: bool = False, **fields) -> Dict:
    """The metrics document (:func:`mec_cli.evaluation.api.metrics_document`) of merged parts: mode ``results``."""
    meta = merged.meta
    iou_types = list(meta["iou_types"])
    doc = metrics_document({"results": merged_metrics(merged, per_image)}, meta["protocol"], meta["ann_file"],
                           None, dilation_ratio=meta["boundary_dilation"] if "boundary" in iou_types else None,
                           checkpoint=None, recipe=None, config=None, run=None, **fields)
    doc["groups"] = meta.get("groups")  # as the parts recorded them (groups.json need not be here)
    return doc


def read_part(results: Union[str, Path], gt: GroundTruth, iou_types: Optional[Sequence[str]],
              groups_info: Optional[Dict], dilation_ratio: float, progress=None) -> Partial:
    """The part of one results file (read as ``mec eval --results`` reads it) against ``gt``."""
    arrays, buf = read_results_file(results, progress=progress)
    dets = detections_of(arrays, buf, results, gt)
    del arrays, buf
    types = scorable_iou_types(dets, iou_types, results)
    return partial_of(gt, dets, types, groups_info, [str(results)], dilation_ratio, str(results))


def _prepared(ann, protocol, groups_file, dilation_ratio, iou_types):
    if "boundary" in (iou_types or ()):
        check_dilation(dilation_ratio)
    _, _, info = _group_info(groups_file)
    return _load_gt(ann, protocol), info


def evaluate_shards(results: Sequence[Union[str, Path]], ann: Union[str, Path],
                    iou_types: Optional[Sequence[str]] = None, protocol: Optional[str] = None,
                    groups_file: Optional[str] = None, dilation_ratio: float = 0.02, progress=None,
                    per_image: bool = False) -> Dict:
    """Several results files as shards of one (each image's detections in one file): each evaluated apart, then
    merged; the metrics document equals that of their concatenation evaluated at once. ``iou_types`` default to
    what the first file holds."""
    report = progress or (lambda step, done=0, total=0: None)
    report("reading the annotations")
    gt, info = _prepared(ann, protocol, groups_file, dilation_ratio, iou_types)
    parts: List[Partial] = []
    for i, path in enumerate(results):
        report(f"reading and matching {Path(path).name} ({i + 1} of {len(results)})")
        parts.append(read_part(path, gt, iou_types or (parts[0].meta["iou_types"] if parts else None), info,
                               dilation_ratio))
    report("merging")
    return merged_document(merge(parts), per_image, results_file=[str(r) for r in results])


def write_partial(results: Union[str, Path], ann: Union[str, Path], out: Union[str, Path],
                  iou_types: Optional[Sequence[str]] = None, protocol: Optional[str] = None,
                  groups_file: Optional[str] = None, dilation_ratio: float = 0.02, progress=None) -> Dict:
    """Evaluate one shard of the results (``results``) against ``ann`` and write its part to ``out`` (an .npz) for a
    later :func:`evaluate_partial_files`. Returns what was written: images, detections that count, iou types."""
    report = progress or (lambda step, done=0, total=0: None)
    report("reading the annotations")
    gt, info = _prepared(ann, protocol, groups_file, dilation_ratio, iou_types)
    report("reading and matching the results")
    part = read_part(results, gt, iou_types, info, dilation_ratio,
                     progress=lambda done, total: report("reading the results", done, total))
    part.save(out)
    return {"out": str(out), "images": int(len(part.images)), "iou_types": part.meta["iou_types"],
            "detections": {t: int(len(c["image"])) for t, c in part.sections.items()}}


def evaluate_partial_files(paths: Sequence[Union[str, Path]], per_image: bool = False) -> Dict:
    """Merge partial files (written by :func:`write_partial`) into the metrics document of all their shards."""
    parts = [load_partial(p) for p in paths]
    return merged_document(merge(parts), per_image, results_file=[s for p in parts for s in p.meta["sources"]])


# --- the ranks of `mec eval --checkpoint --gpus N` --------------------------------------------------------------

def rank_part(per_image: Sequence[List[Dict]], positions: Sequence[int], ann_file: str, iou_types: Sequence[str],
              protocol: Optional[str], groups_file: Optional[str], dilation_ratio: float, rank: int,
              gt: Optional[GroundTruth] = None) -> Dict:
    """This rank's part of a checkpoint evaluation, from :class:`mec_cli.evaluation.metric.MECMetric`'s records of
    its own images (``per_image``: each image's records, one per mode; ``positions``: each image's place in the
    dataset order, which orders the stage weights as mmengine's gathering would): per mode, the part of the
    evaluation (no ground-truth arrays: rank 0 has them) and the images' stage weights. ``gt``: the annotations
    already read (else read here)."""
    gt = gt or _load_gt(ann_file, protocol)
    _, _, info = _group_info(groups_file)
    by_mode: Dict[str, List] = {}
    for pos, records in zip(positions, per_image):
        for rec in records:
            by_mode.setdefault(rec["mode"], []).append((int(pos), rec))
    parts, weights = {}, {}
    for mode, items in by_mode.items():
        dets, types = mode_detections([rec for _, rec in items], iou_types)
        parts[mode] = partial_of(gt, dets, types, info, [f"rank {rank}"], dilation_ratio, mode, with_gt=False)
        if all("stage_weights" in rec for _, rec in items):
            weights[mode] = [(pos, np.asarray(rec["category_id"]),
                              np.asarray(rec["stage_weights"], np.float64).reshape(len(rec["score"]), -1))
                             for pos, rec in items]
    return {"parts": parts, "weights": weights, "modes": list(by_mode)}


def merge_rank_parts(payloads: Sequence[Dict], ann_file: str, protocol: Optional[str], groups_file: Optional[str],
                     per_image: bool = False, gt: Optional[GroundTruth] = None) -> Dict:
    """mode -> iou type -> metrics of every rank's :func:`rank_part` merged: exactly
    :func:`mec_cli.evaluation.api.evaluate_mode_arrays` of all the ranks' records gathered in dataset order.
    ``gt``: the annotations already read (else read here)."""
    gt = gt or _load_gt(ann_file, protocol)
    groups, names, _ = _group_info(groups_file)
    modes = list(dict.fromkeys(m for p in payloads for m in p["modes"]))
    out = {}
    for mode in modes:
        parts = [with_ground_truth(p["parts"][mode], gt) for p in payloads if mode in p["parts"]]
        out[mode] = merged_metrics(merge(parts), per_image)
        holders = [p for p in payloads if mode in p["parts"]]
        if holders and all(mode in p["weights"] for p in holders):
            items = sorted((it for p in holders for it in p["weights"][mode]), key=lambda it: it[0])
            det_cat = gt.cats.lookup(np.concatenate([it[1] for it in items]).astype(np.int64))
            groupings = groupings_of(gt.cat_ids, gt.frequency, groups, names)
            out[mode]["stage_weights"] = stage_weight_summary(det_cat, np.concatenate([it[2] for it in items]),
                                                              groupings, gt.num_cats)
    return out
