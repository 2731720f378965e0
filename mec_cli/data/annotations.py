"""Loading and validating COCO / LVIS annotation files, shared by every command that reads one.

Every problem becomes a :class:`~mec_cli.errors.MecError` naming the file and the first offending
record, which the CLI prints on one line with exit code 2.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Union

import msgspec

from mec_cli.data.schema import read_dataset, read_raw
from mec_cli.errors import MecError


def load_annotations(path: Union[str, Path], require_annotations: bool = True) -> Dict:
    """Read a COCO/LVIS annotation file, validated against :mod:`mec_cli.data.schema`, as plain dicts.

    Every problem is one MecError naming the file and the first offending record.
    """
    raw = read_raw(path)
    read_dataset(path, require_annotations, raw=raw)
    data = msgspec.json.decode(raw)
    data.setdefault("images", [])
    data.setdefault("annotations", [])
    return data


def validate_annotations(data: object, path: Union[str, Path], require_annotations: bool = True) -> Dict:
    """Validate an annotation dict already in memory by the same rules; return it unchanged."""
    try:
        raw = msgspec.json.encode(data)
    except (TypeError, OverflowError, ValueError) as e:
        raise MecError(f"not JSON data ({e})", path) from None
    read_dataset(path, require_annotations, raw=raw)
    return data


def category_counts(data: Dict, count_by: str = "instances") -> Dict[int, int]:
    """Training instance (or image) count of every category id, zero for categories never annotated.

    Counts come from the annotations when the file has any; a file without annotations (a
    statistics profile) supplies them through each category's ``instance_count``/``image_count``.
    """
    if count_by not in ("instances", "images"):
        raise MecError(f"must be 'instances' or 'images', got {count_by!r}", option="count_by")
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
