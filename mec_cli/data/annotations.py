"""Loading and validating COCO / LVIS annotation files, shared by every command that reads one.

Every problem becomes a :class:`~mec_cli.errors.MecError` naming the file and the first offending
record, which the CLI prints on one line with exit code 2.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Union

from mec_cli.errors import MecError
from mec_cli.io import read_json

REQUIRED_TOP = ("images", "annotations", "categories")
REQUIRED_IMAGE = ("id",)
REQUIRED_ANN = ("id", "image_id", "category_id", "bbox")
REQUIRED_CAT = ("id", "name")


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
FREQUENCIES = ("r", "c", "f")


def _first_duplicate(ids: List) -> Union[int, None]:
    seen = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return None


def _is_int(v) -> bool:
    return type(v) is int and INT64_MIN <= v <= INT64_MAX


def _is_num(v) -> bool:
    return (type(v) is int or type(v) is float) and math.isfinite(v)


def _show(v) -> str:
    text = repr(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _segmentation_problem(seg) -> str:
    """'' when ``seg`` is a polygon list or an RLE dict as pycocotools reads them, else what is wrong with it."""
    if type(seg) is list:
        if not seg:
            return "a segmentation is an empty list of polygons"
        if not all(type(p) is list and len(p) >= 6 and len(p) % 2 == 0 for p in seg):
            return "a segmentation polygon must be a list of x, y numbers (at least 3 points)"
        return ""
    if type(seg) is dict:
        size, counts = seg.get("size"), seg.get("counts")
        if not (type(size) is list and len(size) == 2 and all(_is_int(v) and v >= 0 for v in size)):
            return f"an RLE segmentation needs 'size' [height, width], got {_show(size)}"
        if not (type(counts) is str or (type(counts) is list and all(_is_int(v) and v >= 0 for v in counts))):
            return "an RLE segmentation needs 'counts' as a string or a list of non-negative integers"
        return ""
    return f"segmentation must be polygons or an RLE object, got {type(seg).__name__}"


def validate_annotations(data: object, path: Union[str, Path], require_annotations: bool = True) -> Dict:
    """Check the structure, types and consistency of a COCO/LVIS dict; return it unchanged when valid.

    Checks, in order: top-level keys; every record is an object with its required keys; ids are integers
    (64-bit) and unique; categories have a string name (and an LVIS ``frequency`` of r/c/f, counts >= 0 where
    given); images have positive integer sizes where given and LVIS's neg/not-exhaustive lists name known
    categories; annotations point at known images and categories, have a bbox of 4 finite numbers with a
    positive width and height, a finite non-negative area, an iscrowd/ignore of 0 or 1, and a segmentation
    shaped as pycocotools reads it. The first problem raises a MecError naming the file and the record.
    """
    if not isinstance(data, dict):
        raise MecError(f"expected a JSON object with keys {', '.join(REQUIRED_TOP)}, got {type(data).__name__}", path)
    needed = REQUIRED_TOP if require_annotations else ("categories",)
    for key in needed:
        if key not in data:
            raise MecError(f"missing top-level key '{key}'", path)
    for key in REQUIRED_TOP:
        if key in data and not isinstance(data[key], list):
            raise MecError(f"'{key}' must be a list, got {type(data[key]).__name__}", path)
    for key, required in (("images", REQUIRED_IMAGE), ("categories", REQUIRED_CAT), ("annotations", REQUIRED_ANN)):
        for idx, rec in enumerate(data.get(key, [])):
            if not isinstance(rec, dict):
                raise MecError(f"{key}[{idx}] is not an object", path)
            for field in required:
                if field not in rec:
                    ident = f" (id {_show(rec['id'])})" if "id" in rec else ""
                    raise MecError(f"{key}[{idx}]{ident} is missing key '{field}'", path)
            if not _is_int(rec["id"]):
                raise MecError(f"{key}[{idx}] has an id that is not a 64-bit integer: {_show(rec['id'])}", path)
    for key, what in (("images", "image"), ("categories", "category"), ("annotations", "annotation")):
        dup = _first_duplicate([r["id"] for r in data.get(key, [])])
        if dup is not None:
            raise MecError(f"duplicate {what} id {dup}", path)
    cat_ids = set()
    for c in data["categories"]:
        cid = c["id"]
        if type(c["name"]) is not str:
            raise MecError(f"category id {cid} has a name that is not a string: {_show(c['name'])}", path)
        if "frequency" in c and c["frequency"] not in FREQUENCIES:
            raise MecError(f"category id {cid} has frequency {_show(c['frequency'])}, not one of r, c, f", path)
        for field in ("instance_count", "image_count"):
            if field in c and not (_is_int(c[field]) and c[field] >= 0):
                raise MecError(f"category id {cid} has {field} {_show(c[field])}, not a non-negative integer", path)
        cat_ids.add(cid)
    image_ids = set()
    for im in data.get("images", []):
        iid = im["id"]
        for field in ("width", "height"):
            if field in im and not (_is_int(im[field]) and im[field] > 0):
                raise MecError(f"image id {iid} has {field} {_show(im[field])}, not a positive integer", path)
        for field in ("neg_category_ids", "not_exhaustive_category_ids"):
            if field in im:
                ids = im[field]
                if type(ids) is not list or not all(_is_int(c) for c in ids):
                    raise MecError(f"image id {iid} has {field} that is not a list of category ids", path)
                unknown = next((c for c in ids if c not in cat_ids), None)
                if unknown is not None:
                    raise MecError(f"image id {iid} lists unknown category id {unknown} in {field}", path)
        image_ids.add(iid)
    isfinite, nums = math.isfinite, {int, float}
    for ann in data.get("annotations", []):  # the hot loop (1.27 M records for LVIS v1 train): checks inlined
        aid, iid, cid, box = ann["id"], ann["image_id"], ann["category_id"], ann["bbox"]
        if type(iid) is not int or iid not in image_ids:
            raise MecError(f"annotation id {aid} points at unknown image id {_show(iid)}", path)
        if type(cid) is not int or cid not in cat_ids:
            raise MecError(f"annotation id {aid} points at unknown category id {_show(cid)}", path)
        if type(box) is not list or len(box) != 4 or not set(map(type, box)) <= nums or not isfinite(sum(box)):
            raise MecError(f"annotation id {aid} has a bbox that is not [x, y, w, h] of 4 finite numbers: {_show(box)}", path)
        if not (box[2] > 0 and box[3] > 0):
            raise MecError(f"annotation id {aid} has a non-positive box size (w={box[2]}, h={box[3]})", path)
        if "area" in ann and not (type(ann["area"]) in nums and isfinite(ann["area"]) and ann["area"] >= 0):
            raise MecError(f"annotation id {aid} has area {_show(ann['area'])}, not a finite number >= 0", path)
        for field in ("iscrowd", "ignore"):
            if field in ann and (ann[field] not in (0, 1) or type(ann[field]) not in (int, bool)):
                raise MecError(f"annotation id {aid} has {field} {_show(ann[field])}, not 0 or 1", path)
        if "segmentation" in ann:
            problem = _segmentation_problem(ann["segmentation"])
            if problem:
                raise MecError(f"annotation id {aid}: {problem}", path)
    return data


def load_annotations(path: Union[str, Path], require_annotations: bool = True) -> Dict:
    """Read and validate a COCO/LVIS annotation file."""
    return validate_annotations(read_json(path), path, require_annotations=require_annotations)


def category_counts(data: Dict, count_by: str = "instances") -> Dict[int, int]:
    """Training instance (or image) count of every category id, zero for categories never annotated.

    Counts come from the annotations when the file has any; a file without annotations (a
    statistics profile) supplies them through each category's ``instance_count``/``image_count``.
    """
    if count_by not in ("instances", "images"):
        raise MecError(f"--count must be 'instances' or 'images', got {count_by!r}")
    anns = data.get("annotations") or []
    if not anns:
        field = "instance_count" if count_by == "instances" else "image_count"
        missing = next((c for c in data["categories"] if field not in c), None)
        if missing is not None:
            raise MecError(f"has no annotations and category id {missing['id']} has no '{field}'")
        return {c["id"]: int(c[field]) for c in data["categories"]}
    counts = {c["id"]: 0 for c in data["categories"]}
    if count_by == "instances":
        for a in anns:
            counts[a["category_id"]] += 1
    else:
        pairs = {(a["category_id"], a["image_id"]) for a in anns}
        for cat, _ in pairs:
            counts[cat] += 1
    return counts
