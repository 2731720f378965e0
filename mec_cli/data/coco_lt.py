"""COCO-LT: a subset of COCO whose per-category instance counts follow the LVIS long tail.

The construction follows the MEC paper's Appendix B (after BAGS, whose script was never released):

1. Targets. L = the LVIS training instance counts sorted in descending order (length M); COCO
   categories are ranked by their instance count in the given file, most frequent first (r = 0..K-1).
   * ``rank`` alignment (default): category of rank r gets L[floor(r (M-1)/(K-1) + 0.5)].
   * ``synset`` alignment: a category gets the count of the LVIS category with the same WordNet
     synset (lvis-api's coco_to_synset mapping, shipped in the coco2017 profile). A category with
     no LVIS counterpart (hot dog in v1; hot dog and oven in v0.5) gets its rank-aligned target.
2. Image-level sampling. An image always comes with all of its annotations. The ``keep_top`` most
   frequent COCO categories are *unconstrained*: Appendix B "ignores" their targets in the sense that
   "the instance number of these classes might be less than their target". Every other category is
   *constrained*: it may never exceed its target. Constrained categories are filled from the rarest
   target upward; for each, images are taken in order of how few instances of *other* constrained
   categories they add (ties broken by the seeded random order), skipping any image that would push a
   constrained category over its target or overshoot the current one.
3. Swaps. A category still short of its target takes an image that would overflow a full category b
   when a selected image holding only b, in the same number, can leave (every other total unchanged).
4. Top fill (``fill_top=True``, the default). With the constrained categories as exact as they get,
   the unconstrained categories are filled toward their own targets, smallest target first: images
   that hold the category are added, fewest instances over the targets of the *other* unconstrained
   categories first, never overshooting the category being filled and never pushing a constrained
   category over its target. An unconstrained category may therefore end below its target, and above
   it only through images added for other categories. ``fill_top=False`` stops after step 3 (the
   constrained-only behaviour of mec 0.1). The paper's COCO-LT (16,966 images, 128,615 instances)
   must have filled the top categories: with LVIS v1 rank alignment the 70 constrained targets sum to
   only 21,015 instances (our computation from the LVIS v1 statistics, not a published number), and
   all 80 targets to 122,617.

The result is deterministic given the seed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple, Union

import numpy as np

from mec_cli.data.annotations import category_counts, load_annotations
from mec_cli.data.profiles import load_profile
from mec_cli.errors import SEED_MAX, MecError, check_number
from mec_cli.io import check_outputs, json_text, sha256_file, text_writer, write_outputs

ALIGNMENTS = ("rank", "synset")
MANIFEST_SCHEMA = "mec.coco_lt_manifest/2"  # /2 adds top_mode and the totals of the unconstrained categories
SUMMARY_BINS = ((1, 10), (10, 100), (100, 1000), (1000, None))


@dataclass
class CocoLtResult:
    """What the builder produced: the output dataset and the manifest describing it."""

    dataset: Dict
    manifest: Dict
    missed: List[Dict] = field(default_factory=list)


def rank_targets(lvis_counts: List[int], num_coco: int) -> List[int]:
    """Target of each COCO rank r: L[floor(r (M-1)/(K-1) + 0.5)] with L sorted descending."""
    ordered = sorted((int(c) for c in lvis_counts), reverse=True)
    m = len(ordered)
    if m == 0 or num_coco == 0:
        raise MecError("rank alignment needs at least one LVIS and one COCO category")
    if num_coco == 1:
        return [ordered[0]]
    return [ordered[int(math.floor(r * (m - 1) / (num_coco - 1) + 0.5))] for r in range(num_coco)]


def coco_ranking(counts: Dict[int, int]) -> List[int]:
    """COCO category ids, most instances first; ties broken by category id."""
    return sorted(counts, key=lambda c: (-counts[c], c))


def compute_targets(coco_counts: Dict[int, int], coco_names: Dict[int, str], lvis_categories: List[Dict],
                    align: str = "rank") -> Tuple[List[int], Dict[int, int], Dict[int, str]]:
    """Targets for every COCO category.

    Args:
        coco_counts: instance count per COCO category id in the input file.
        coco_names: COCO category id -> name (used to find its LVIS synset).
        lvis_categories: LVIS categories with ``instance_count`` (and ``synset`` for synset alignment).

    Returns:
        (ranking, target per category id, how each target was set: 'rank' or 'synset:<synset>').
    """
    if align not in ALIGNMENTS:
        raise MecError(f"must be one of {', '.join(ALIGNMENTS)}, got {align!r}", option="align")
    ranking = coco_ranking(coco_counts)
    by_rank = rank_targets([c["instance_count"] for c in lvis_categories], len(ranking))
    targets = {cat: by_rank[r] for r, cat in enumerate(ranking)}
    how = {cat: "rank" for cat in ranking}
    if align == "synset":
        synset_of_name = {c["name"]: c.get("lvis_synset") for c in load_profile("coco2017")["categories"]}
        lvis_by_synset = {c.get("synset"): int(c["instance_count"]) for c in lvis_categories if c.get("synset")}
        for cat in ranking:
            syn = synset_of_name.get(coco_names.get(cat, ""))
            if syn in lvis_by_synset:
                targets[cat] = lvis_by_synset[syn]
                how[cat] = f"synset:{syn}"
    return ranking, targets, how


def sample_images(image_ids: np.ndarray, counts: np.ndarray, constrained: np.ndarray, targets: np.ndarray, seed: int,
                  progress: Optional[Callable[[int], None]] = None, fill_top: bool = False) -> np.ndarray:
    """Choose images so that constrained columns meet their targets and never exceed them.

    Args:
        image_ids: (I,) image ids (only used for the size).
        counts: (I, K) instances of each category column in each image.
        constrained: (K,) bool, the columns with a hard target.
        targets: (K,) target per column.
        fill_top: then fill the unconstrained columns toward their targets (step 4 of the module docstring).

    Returns:
        (I,) bool mask of selected images.
    """
    num_images, num_cats = counts.shape
    rng = np.random.default_rng(seed)
    tie = rng.permutation(num_images)  # seeded tie-break order
    selected = np.zeros(num_images, dtype=bool)
    remaining = np.where(constrained, targets, np.iinfo(np.int64).max).astype(np.int64)
    cons_idx = np.flatnonzero(constrained)
    cons_counts = counts[:, cons_idx]
    other_cost = cons_counts.sum(1)
    # With the top fill to come, images that also bring unconstrained instances are taken first among equals,
    # each instance weighted by 1/target, so that the scarce ones (not the abundant person) count most.
    top = np.flatnonzero(~constrained)
    top_gain = (counts[:, top] / np.maximum(targets[top], 1)).sum(1) if fill_top and top.size else np.zeros(num_images)
    order = cons_idx[np.lexsort((cons_idx, targets[cons_idx]))]  # rarest target first
    for col in order:
        need = int(remaining[col])
        if need > 0:
            cand = np.flatnonzero((counts[:, col] > 0) & ~selected & (counts[:, col] <= need))
            if cand.size:
                fits = (cons_counts[cand] <= remaining[cons_idx]).all(1)
                cand = cand[fits]
                cost = other_cost[cand] - counts[cand, col]
                cand = cand[np.lexsort((tie[cand], -top_gain[cand], -counts[cand, col], cost))]
                for img in cand:
                    row = cons_counts[img]
                    if counts[img, col] <= remaining[col] and (row <= remaining[cons_idx]).all():
                        selected[img] = True
                        remaining[cons_idx] -= row
                        if remaining[col] == 0:
                            break
        if progress:
            progress(1)
    _swap_repair(counts, cons_idx, cons_counts, other_cost, tie, order, selected, remaining)
    if fill_top:
        _fill_unconstrained(counts, constrained, targets, cons_idx, cons_counts, tie, selected, remaining, progress)
    return selected


def _fill_unconstrained(counts: np.ndarray, constrained: np.ndarray, targets: np.ndarray, cons_idx: np.ndarray,
                        cons_counts: np.ndarray, tie: np.ndarray, selected: np.ndarray, remaining: np.ndarray,
                        progress: Optional[Callable[[int], None]] = None) -> None:
    """Step 4: fill each unconstrained column toward its target, smallest target first.

    An image is added for column c only when it does not overshoot c and every constrained column still
    fits (``remaining`` of the constrained columns is never driven below zero). Candidates are taken
    fewest instances over the targets of the other unconstrained columns first (as their totals stood
    when c's turn began), then most instances of c, then the seeded order. Updates ``selected`` (and
    ``remaining`` of the constrained columns) in place.
    """
    top = np.flatnonzero(~constrained)
    if top.size == 0:
        return
    top_left = targets[top].astype(np.int64) - counts[selected][:, top].sum(0)  # may be negative already
    order = np.lexsort((top, targets[top]))
    for pos in order:
        col = int(top[pos])
        if top_left[pos] > 0:
            cand = np.flatnonzero((counts[:, col] > 0) & ~selected & (counts[:, col] <= top_left[pos]))
            if cand.size:
                cand = cand[(cons_counts[cand] <= remaining[cons_idx]).all(1)]
                cand = cand[np.lexsort((tie[cand], -counts[cand, col],
                                        _top_overshoot(counts, top, top_left, pos, cand)))]
                for img in cand:
                    row = cons_counts[img]
                    if counts[img, col] <= top_left[pos] and (row <= remaining[cons_idx]).all():
                        selected[img] = True
                        remaining[cons_idx] -= row
                        top_left -= counts[img, top]
                        if top_left[pos] == 0:
                            break
        if progress:
            progress(1)
    _swap_fill(counts, top, top_left, order, cons_idx, cons_counts, tie, selected, remaining)


def _top_overshoot(counts: np.ndarray, top: np.ndarray, top_left: np.ndarray, pos: int, cand: np.ndarray) -> np.ndarray:
    """Instances each candidate image would add beyond the targets of the unconstrained columns other than ``pos``."""
    others = np.delete(np.arange(top.size), pos)
    return np.maximum(counts[np.ix_(cand, top[others])] - np.maximum(top_left[others], 0), 0).sum(1)


def _swap_fill(counts: np.ndarray, top: np.ndarray, top_left: np.ndarray, order: np.ndarray, cons_idx: np.ndarray,
               cons_counts: np.ndarray, tie: np.ndarray, selected: np.ndarray, remaining: np.ndarray) -> None:
    """Step 4's second pass: reach more of an unconstrained column through images that also hold full constrained ones.

    An unselected image I holding column c is added when the instances it would put over the targets of full
    constrained columns can be given back exactly: by one selected image J holding exactly those constrained
    instances and no others, or by one such J per column. J must hold none of c and no more of any other
    unconstrained column than that column has above its target. Every constrained total is unchanged, and no
    unconstrained total falls below its target because of a swap.
    """
    top_counts = counts[:, top]
    holders = np.flatnonzero(selected & (cons_counts > 0).any(1))
    # signature ((column position, count), ...) -> selected images with exactly those constrained instances
    pure: dict = {}
    for img in holders[np.lexsort((tie[holders], -top_counts[holders].sum(1)))]:  # pop() takes the fewest top instances
        ks = np.flatnonzero(cons_counts[img])
        pure.setdefault(tuple((int(k), int(cons_counts[img, k])) for k in ks), []).append(int(img))

    def take(key, pos) -> int:
        spare = np.maximum(-top_left, 0)
        spare[pos] = 0
        js = pure.get(key) or []
        for i in range(len(js) - 1, max(-1, len(js) - 65), -1):  # the last few candidates: the cheapest ones
            if (top_counts[js[i]] <= spare).all():
                return js.pop(i)
        return -1

    for pos in order:
        col = int(top[pos])
        if top_left[pos] <= 0:
            continue
        cand = np.flatnonzero((counts[:, col] > 0) & ~selected & (counts[:, col] <= top_left[pos]))
        cand = cand[np.lexsort((tie[cand], -counts[cand, col], _top_overshoot(counts, top, top_left, pos, cand)))]
        for img in cand:
            if top_left[pos] <= 0:
                break
            row = cons_counts[img]
            left = remaining[cons_idx]
            if counts[img, col] > top_left[pos] or ((row > left) & (left > 0)).any():
                continue  # a column pushed over target that is not yet full cannot be compensated exactly
            over = [(int(k), int(row[k])) for k in np.flatnonzero(row > left)]
            whole = take(tuple(over), pos) if len(over) > 1 else -1
            keys = [tuple(over)] if whole >= 0 else [(kn,) for kn in over]
            taken = [(keys[0], whole)] if whole >= 0 else []
            for key in keys[len(taken):]:
                j = take(key, pos)
                if j < 0:
                    break
                taken.append((key, j))
            else:
                for _, j in taken:
                    selected[j] = False
                    remaining[cons_idx] += cons_counts[j]
                    top_left += top_counts[j]
                selected[img] = True
                remaining[cons_idx] -= row
                top_left -= top_counts[img]
                continue
            for key, j in taken:  # not every column could be swapped: put the images back
                pure[key].append(j)


def _swap_repair(counts: np.ndarray, cons_idx: np.ndarray, cons_counts: np.ndarray, other_cost: np.ndarray,
                 tie: np.ndarray, order: np.ndarray, selected: np.ndarray, remaining: np.ndarray) -> None:
    """Close the targets the greedy pass missed with swaps that leave every other total unchanged.

    For a category c short of its target, an unselected image I holding c is added when each constrained
    category b it would push over target can be compensated by removing a selected image J that holds
    only b among the constrained categories, in the same number as I. Totals of every b stay the same,
    c moves towards its target, and nothing ever exceeds a target. Updates ``selected`` and ``remaining``.
    """
    pos_of = {int(col): k for k, col in enumerate(cons_idx)}
    nonzero = (cons_counts > 0).sum(1)
    pure: dict = {}  # (position of b, count) -> selected images holding only b among constrained
    for img in np.flatnonzero(selected & (nonzero == 1)):
        k = int(np.flatnonzero(cons_counts[img])[0])
        pure.setdefault((k, int(cons_counts[img, k])), []).append(int(img))
    for col in order:
        need = int(remaining[col])
        if need <= 0:
            continue
        cand = np.flatnonzero((counts[:, col] > 0) & ~selected & (counts[:, col] <= need))
        cand = cand[np.lexsort((tie[cand], other_cost[cand] - counts[cand, col]))]
        for img in cand:
            if remaining[col] <= 0:
                break
            row = cons_counts[img]
            if counts[img, col] > remaining[col]:
                continue
            over = np.flatnonzero(row > remaining[cons_idx])
            swaps = []
            for k in over:
                js = pure.get((int(k), int(row[k])))
                if not js or k == pos_of[int(col)]:
                    break
                swaps.append((int(k), int(row[k]), js[-1]))
            else:
                for k, n, j in swaps:
                    pure[(k, n)].pop()
                    selected[j] = False
                    remaining[cons_idx] += cons_counts[j]
                selected[img] = True
                remaining[cons_idx] -= row


TOP_MODES = {True: "fill", False: "constrained_only"}


def build_coco_lt(coco: Dict, lvis_categories: List[Dict], align: str = "rank", keep_top: int = 10, seed: int = 0,
                  progress: Optional[Callable[[int], None]] = None, provenance: Optional[Dict] = None,
                  fill_top: bool = True) -> CocoLtResult:
    """Build COCO-LT from a validated COCO dict; see the module docstring for the method.

    ``fill_top`` fills the ``keep_top`` unconstrained categories toward their targets (step 4); without
    it they keep only what the images of the constrained categories bring.
    """
    check_number("seed", seed, 0, SEED_MAX, integer=True)
    cats = coco["categories"]
    cat_ids = [c["id"] for c in cats]
    col_of = {c: i for i, c in enumerate(cat_ids)}
    if not 0 <= keep_top <= len(cat_ids):
        raise MecError(f"must be between 0 and {len(cat_ids)} (the number of categories), got {keep_top}",
                       option="keep_top")
    images = coco["images"]
    row_of = {img["id"]: i for i, img in enumerate(images)}
    ann_rows = np.fromiter((row_of[a["image_id"]] for a in coco["annotations"]), dtype=np.int64,
                           count=len(coco["annotations"]))
    ann_cols = np.fromiter((col_of[a["category_id"]] for a in coco["annotations"]), dtype=np.int64,
                           count=len(coco["annotations"]))
    counts = np.zeros((len(images), len(cat_ids)), dtype=np.int32)
    np.add.at(counts, (ann_rows, ann_cols), 1)
    coco_counts = dict(zip(cat_ids, counts.sum(0).tolist()))
    ranking, targets, how = compute_targets(coco_counts, {c["id"]: c.get("name", "") for c in cats}, lvis_categories,
                                            align)
    rank_of = {c: r for r, c in enumerate(ranking)}
    constrained = np.array([rank_of[c] >= keep_top for c in cat_ids])
    target_vec = np.array([targets[c] for c in cat_ids], dtype=np.int64)
    selected = sample_images(np.arange(len(images)), counts, constrained, target_vec, seed, progress, fill_top=fill_top)
    achieved = counts[selected].sum(0)

    keep_rows = np.flatnonzero(selected)
    keep_ids = {images[i]["id"] for i in keep_rows.tolist()}
    out = {k: v for k, v in coco.items() if k not in ("images", "annotations")}
    out["images"] = [images[i] for i in keep_rows.tolist()]
    out["annotations"] = [a for a in coco["annotations"] if a["image_id"] in keep_ids]
    out["categories"] = cats

    per_cat = []
    missed = []
    for c in cats:
        col = col_of[c["id"]]
        rec = {"id": c["id"], "name": c.get("name", ""), "rank": rank_of[c["id"]],
               "coco_count": int(coco_counts[c["id"]]),
               "target": int(targets[c["id"]]), "target_from": how[c["id"]], "constrained": bool(constrained[col]),
               "achieved": int(achieved[col])}
        per_cat.append(rec)
        if rec["constrained"] and rec["achieved"] != rec["target"]:
            missed.append(rec)
    cons = [r for r in per_cat if r["constrained"]]
    top = [r for r in per_cat if not r["constrained"]]
    manifest = {
        "schema": MANIFEST_SCHEMA,
        **(provenance or {}),
        "alignment": align, "keep_top": keep_top, "top_mode": TOP_MODES[bool(fill_top)], "seed": seed,
        "categories": sorted(per_cat, key=lambda r: r["rank"]),
        "totals": {
            "images": len(out["images"]), "instances": len(out["annotations"]),
            "input_images": len(images), "input_instances": len(coco["annotations"]),
            "target_sum": int(sum(r["target"] for r in per_cat)),
            "constrained_categories": len(cons), "constrained_target_sum": int(sum(r["target"] for r in cons)),
            "constrained_achieved_sum": int(sum(r["achieved"] for r in cons)),
            "constrained_hit_exactly": int(sum(r["achieved"] == r["target"] for r in cons)),
            "constrained_over_target": int(sum(r["achieved"] > r["target"] for r in cons)),
            "top_categories": len(top), "top_target_sum": int(sum(r["target"] for r in top)),
            "top_achieved_sum": int(sum(r["achieved"] for r in top)),
            "top_min_fill": round(min((r["achieved"] / r["target"] for r in top), default=1.0), 4),
            "categories_per_instance_bin": instance_bins([r["achieved"] for r in per_cat]),
        },
    }
    return CocoLtResult(out, manifest, missed)


def instance_bins(values: List[int]) -> Dict[str, int]:
    """Number of categories per instance bin [1,10), [10,100), [100,1000), [1000,inf); zero counts apart."""
    res = {"0": sum(1 for v in values if v == 0)}
    for lo, hi in SUMMARY_BINS:
        res[f"[{lo},{'inf' if hi is None else hi})"] = sum(1 for v in values if v >= lo and (hi is None or v < hi))
    return res


def build_coco_lt_files(coco_ann: Union[str, Path], out: Union[str, Path], lvis_ann: Optional[Union[str, Path]] = None,
                        profile: str = "lvis_v1", align: str = "rank", keep_top: int = 10, seed: int = 0,
                        manifest_path: Optional[Union[str, Path]] = None,
                        progress: Optional[Callable[[int], None]] = None, fill_top: bool = True) -> Tuple[CocoLtResult,
                                                                                                          Path, Path]:
    """Read, build and atomically write COCO-LT and its manifest. Returns (result, out path, manifest path).
    The options are checked before any file is read (``keep_top`` again against the categories once they are)."""
    check_number("seed", seed, 0, SEED_MAX, integer=True)
    check_number("keep_top", keep_top, 0, integer=True)
    if align not in ALIGNMENTS:
        raise MecError(f"must be one of {', '.join(ALIGNMENTS)}, got {align!r}", option="align")
    out = Path(out)
    manifest_path = Path(manifest_path) if manifest_path else out.with_name(out.stem + ".manifest.json")
    check_outputs({"the dataset": out, "the manifest": manifest_path},
                  {"COCO annotations": coco_ann, "LVIS annotations": lvis_ann})
    coco = load_annotations(coco_ann)
    provenance = {"input": str(coco_ann), "input_sha256": sha256_file(coco_ann)}
    if lvis_ann is not None:
        lvis = load_annotations(lvis_ann, require_annotations=False)
        counts = category_counts(lvis, "instances")
        lvis_cats = [{**c, "instance_count": counts[c["id"]]} for c in lvis["categories"]]
        provenance.update(profile=None, lvis_ann=str(lvis_ann), lvis_sha256=sha256_file(lvis_ann))
    else:
        lvis_cats = load_profile(profile)["categories"]
        provenance.update(profile=profile)
    result = build_coco_lt(coco, lvis_cats, align, keep_top, seed, progress, provenance, fill_top=fill_top)
    # the dataset and the manifest that describes it are committed together or not at all
    write_outputs({out: text_writer(json_text(result.dataset, indent=None)),
                   manifest_path: text_writer(json_text(result.manifest))})
    return result, out, manifest_path
