"""Figure 5 data: sorted per-category training instance counts from profiles, annotation files or COCO-LT manifests."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

from mec_cli.data.annotations import category_counts, validate_annotations
from mec_cli.data.profiles import PROFILES, load_profile
from mec_cli.errors import MecError
from mec_cli.io import read_json


def distribution_curves(items: Sequence[str]) -> Dict[str, List[int]]:
    """One curve per item; a COCO-LT manifest gives two (achieved counts and targets)."""
    curves: Dict[str, List[int]] = {}
    for item in items:
        if item in PROFILES:
            curves[f"{item} (profile)"] = [int(c["instance_count"]) for c in load_profile(item)["categories"]]
            continue
        path = Path(item)
        doc = read_json(path)
        if isinstance(doc, dict) and str(doc.get("schema", "")).startswith("mec.coco_lt_manifest/"):
            cats = doc.get("categories")
            fields = ("achieved", "target", "coco_count")
            if not (isinstance(cats, list) and cats and all(isinstance(c,
                                                                       dict) and all(type(c.get(f)) is int and c[f] >= 0
                                                                                       for f in fields) for c in cats)):
                raise MecError(f"malformed COCO-LT manifest: every category needs integer {', '.join(fields)}", path)
            curves[f"{path.stem} (COCO-LT)"] = [c["achieved"] for c in cats]
            curves[f"{path.stem} (targets)"] = [c["target"] for c in cats]
            curves[f"{path.stem} (source COCO)"] = [c["coco_count"] for c in cats]
        elif isinstance(doc, dict) and "categories" in doc:
            validate_annotations(doc, path, require_annotations=False)
            curves[path.stem] = list(category_counts(doc).values())
        else:
            raise MecError("not an annotation file, COCO-LT manifest or profile name (lvis_v1, lvis_v0.5, coco2017)",
                           path)
    return curves
