"""Loading and validating COCO / LVIS annotation files, shared by every command that reads one.

Every problem becomes a :class:`~mec_cli.errors.MecError` naming the file and the first offending
record, which the CLI prints on one line with exit code 2.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Union

from mec_cli.errors import MecError
from mec_cli.io import read_json

REQUIRED_TOP = ("images", "annotations", "categories")
REQUIRED_IMAGE = ("id",)
REQUIRED_ANN = ("id", "image_id", "category_id", "bbox")
REQUIRED_CAT = ("id", "name")


def _first_duplicate(ids: List) -> Union[int, None]:
    seen = set()
    for i in ids:
        if i in seen:
            return i
        seen.add(i)
    return None


def validate_annotations(data: object, path: Union[str, Path], require_annotations: bool = True) -> Dict:
    """Check the structure and consistency of a COCO/LVIS dict; return it unchanged when valid.

    Checks, in order: top-level keys; required keys of every image, category and annotation;
    duplicate ids; annotations that point at unknown images or categories; boxes with a
    non-positive width or height.
    """
    if not isinstance(data, dict):
        raise MecError(f"expected a JSON object with keys {', '.join(REQUIRED_TOP)}, got {type(data).__name__}", path)
    needed = REQUIRED_TOP if require_annotations else ("categories",)
    for key in needed:
        if key not in data:
            raise MecError(f"missing top-level key '{key}'", path)
        if not isinstance(data[key], list):
            raise MecError(f"'{key}' must be a list, got {type(data[key]).__name__}", path)
    for key, required in (("images", REQUIRED_IMAGE), ("categories", REQUIRED_CAT), ("annotations", REQUIRED_ANN)):
        for idx, rec in enumerate(data.get(key, [])):
            if not isinstance(rec, dict):
                raise MecError(f"{key}[{idx}] is not an object", path)
            for field in required:
                if field not in rec:
                    ident = f" (id {rec['id']})" if "id" in rec else ""
                    raise MecError(f"{key}[{idx}]{ident} is missing key '{field}'", path)
    for key, what in (("images", "image"), ("categories", "category"), ("annotations", "annotation")):
        dup = _first_duplicate([r["id"] for r in data.get(key, [])])
        if dup is not None:
            raise MecError(f"duplicate {what} id {dup}", path)
    image_ids = {r["id"] for r in data.get("images", [])}
    cat_ids = {r["id"] for r in data["categories"]}
    for idx, ann in enumerate(data.get("annotations", [])):
        if ann["image_id"] not in image_ids:
            raise MecError(f"annotation id {ann['id']} points at unknown image id {ann['image_id']}", path)
        if ann["category_id"] not in cat_ids:
            raise MecError(f"annotation id {ann['id']} points at unknown category id {ann['category_id']}", path)
        box = ann["bbox"]
        if not (isinstance(box, (list, tuple)) and len(box) == 4):
            raise MecError(f"annotation id {ann['id']} has a bbox that is not [x, y, w, h]: {box!r}", path)
        if not (box[2] > 0 and box[3] > 0):
            raise MecError(f"annotation id {ann['id']} has a non-positive box size (w={box[2]}, h={box[3]})", path)
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
