"""Frequency groups: the one place that maps categories to MEC groups.

With bins b_1 < ... < b_N, group 0 is [0, b_1), group n is [b_n, b_{n+1}) and the last group is
[b_N, inf). A category with zero training instances goes to group 0. The default bins (10, 100)
follow BAGS and the MEC paper; the 4-stage variant uses (10, 100, 500). These, and the group names, are
defined here once (:data:`DEFAULT_BINS`, :func:`default_bins`, :func:`group_names`) and imported everywhere else.

groups.json, written by ``mec groups`` and read by training, evaluation and reports::

    {"schema": "mec.groups/1", "source": ..., "source_sha256": ..., "count_by": "instances",
     "bins": [10, 100], "category_group": {"1": 0, ...},
     "groups": [{"index": 0, "name": "rare", "lower": 0, "upper": 10, "category_ids": [...],
                 "num_categories": ..., "num_instances": ...}, ...]}
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mec_cli.errors import MecError
from mec_cli.io import read_json, sha256_file

SCHEMA = "mec.groups/1"
DEFAULT_BINS = (10, 100)  # three groups: rare [0, 10), common [10, 100), frequent [100, inf) training instances
BINS_FOR_GROUPS = {3: DEFAULT_BINS, 4: (10, 100, 500)}  # the paper's 3- and 4-stage models (Table 3)
GROUP_NAMES = ("rare", "common", "frequent")  # the names of three groups; any other count is g0, g1, ...
LVIS_FREQUENCIES = ("r", "c", "f")
LVIS_FREQUENCY_NAMES = dict(zip(LVIS_FREQUENCIES, GROUP_NAMES))  # LVIS's own r/c/f groups (by training images)


def default_bins(num_groups: int) -> Tuple[int, ...]:
    """The bins for ``num_groups`` groups when a recipe names none: the paper's for 3 and 4 groups, else (10, 100)."""
    return BINS_FOR_GROUPS.get(num_groups, DEFAULT_BINS)


def parse_bins(bins: Union[str, Sequence[int]]) -> List[int]:
    """Parse and check bins: strictly increasing positive integers, e.g. '10,100'."""
    if isinstance(bins, str):
        parts = [p.strip() for p in bins.split(",")]
        if bins.strip() and not all(parts):
            raise MecError(f"has an empty edge in {bins!r}: write comma-separated integers such as 10,100",
                           option="bins")
        if not all(p.isascii() and p.lstrip("-").isdigit() for p in parts if p):
            raise MecError(f"must be comma-separated integers, got {bins!r}", option="bins")
        values = [int(p) for p in parts if p]
    else:
        if not isinstance(bins, (list, tuple)) or not all(type(b) is int for b in bins):
            raise MecError(f"must be a list of integers, got {bins!r}", option="bins")
        values = list(bins)
    if not values:
        raise MecError("needs at least one edge, e.g. 10,100", option="bins")
    if any(v <= 0 for v in values):
        raise MecError(f"must be positive integers, got {values}", option="bins")
    if any(b <= a for a, b in zip(values, values[1:])):
        raise MecError(f"must be strictly increasing, got {values}", option="bins")
    return values


def group_names(num_groups: int) -> List[str]:
    """Names of ``num_groups`` groups, rarest first: rare, common, frequent for three, else g0, g1, ..."""
    return list(GROUP_NAMES) if num_groups == len(GROUP_NAMES) else [f"g{i}" for i in range(num_groups)]


def bin_ranges(bins: Sequence[int]) -> List[str]:
    """The count range of each group, as text: (10, 100) -> ['[0,10)', '[10,100)', '[100,inf)']."""
    edges = [0, *bins, None]
    return [f"[{lo},{'inf' if hi is None else hi})" for lo, hi in zip(edges, edges[1:])]


def assign_groups(counts: Dict[int, int], bins: Sequence[int]) -> Dict[int, int]:
    """Group index of each category id: the number of bin edges at or below its count."""
    edges = parse_bins(bins)
    return {cat: bisect.bisect_right(edges, max(0, int(n))) for cat, n in counts.items()}


def build_groups(counts: Dict[int, int], bins: Sequence[int], count_by: str = "instances", source: str = "",
                 source_sha256: str = "", frequencies: Optional[Dict[int, str]] = None) -> Dict:
    """The groups.json document for per-category counts. ``frequencies`` (LVIS r/c/f) adds the agreement matrix."""
    edges = parse_bins(bins)
    assignment = assign_groups(counts, edges)
    names = group_names(len(edges) + 1)
    bounds = [0, *edges, None]
    groups = []
    for g, name in enumerate(names):
        ids = sorted(c for c, gi in assignment.items() if gi == g)
        groups.append({"index": g, "name": name, "lower": bounds[g], "upper": bounds[g + 1], "category_ids": ids,
                       "num_categories": len(ids), "num_instances" if count_by == "instances" else "num_images":
                       int(sum(counts[c] for c in ids))})
    doc = {"schema": SCHEMA, "source": source, "source_sha256": source_sha256, "count_by": count_by, "bins": edges,
           "category_group": {str(c): g for c, g in sorted(assignment.items())}, "groups": groups}
    if frequencies:
        matrix = {name: {f: 0 for f in LVIS_FREQUENCIES} for name in names}
        for c, g in assignment.items():
            f = frequencies.get(c)
            if f in LVIS_FREQUENCIES:
                matrix[names[g]][f] += 1
        doc["lvis_frequency_agreement"] = matrix
    return doc


def compute_groups(source: Union[str, Path], count_by: str = "instances",
                   bins: Union[str, Sequence[int]] = DEFAULT_BINS) -> Dict:
    """groups.json for an annotation file, or for a built-in profile name such as 'lvis_v1'."""
    # the CLI imports this module at start-up for DEFAULT_BINS: annotation reading (msgspec, numpy) loads here
    from mec_cli.data.annotations import category_counts, load_annotations  # noqa: PLC0415
    from mec_cli.data.profiles import PROFILES, load_profile  # noqa: PLC0415

    edges = parse_bins(bins)
    if str(source) in PROFILES:
        data = {"categories": load_profile(str(source))["categories"], "annotations": []}
        digest, label = "", f"profile:{source}"
    else:
        data = load_annotations(source, require_annotations=False)
        digest, label = sha256_file(source), str(source)
    try:
        counts = category_counts(data, count_by)
    except MecError as e:
        raise MecError(str(e), None if str(source) in PROFILES else source) from None
    freqs = {c["id"]: c["frequency"] for c in data["categories"] if "frequency" in c}
    return build_groups(counts, edges, count_by, label, digest, freqs or None)


@dataclass(frozen=True)
class GroupSpec:
    """groups.json loaded: the category-to-group map and what produced it."""

    category_group: Dict[int, int]
    bins: List[int]
    names: List[str]
    count_by: str
    doc: Dict

    @property
    def num_groups(self) -> int:
        return len(self.bins) + 1

    def class_groups(self, category_ids: Sequence[int], source: Optional[Union[str, Path]] = None) -> List[int]:
        """Group index per class, in the order of ``category_ids`` (the model's label order); a category without a
        group is a MecError naming ``source`` (the groups file, or the annotations they were computed from)."""
        missing = [c for c in category_ids if c not in self.category_group]
        if missing:
            raise MecError(f"the groups hold no group for category id {missing[0]} ({len(missing)} of the model's "
                           "categories missing)", source)
        return [self.category_group[c] for c in category_ids]


def load_groups(path: Union[str, Path]) -> GroupSpec:
    """Read and check a groups.json (see :func:`groups_from_doc`); every problem is one MecError naming the file."""
    return groups_from_doc(read_json(path), path)


def groups_from_doc(doc: Dict, path: Optional[Union[str, Path]] = None) -> GroupSpec:
    """Check a groups.json document: its schema, bins, one named group per bin range, and an integer group index
    in range for every category id. Every problem is one MecError naming ``path``."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise MecError(f"not a groups file of schema {SCHEMA} (write one with `mec groups`)", path)
    try:
        if not isinstance(doc.get("bins"), list):
            raise MecError(f"must be a list of integers, got {doc.get('bins')!r}")
        bins = parse_bins(doc["bins"])
    except (MecError, TypeError, ValueError) as e:
        raise MecError(f"malformed bins: {getattr(e, 'message', e)}", path) from None
    groups, raw = doc.get("groups"), doc.get("category_group")
    if not (isinstance(groups,
                       list) and len(groups) == len(bins) + 1 and all(isinstance(g, dict) and isinstance(g.get("name"),
                                                                                                         str)
                                                                             for g in groups)):
        raise MecError(f"'groups' must list {len(bins) + 1} groups with a name each (one per bin range)", path)
    names = [g["name"] for g in groups]
    if len(set(names)) != len(names):
        raise MecError(f"group names repeat: {names}", path)
    if not isinstance(raw, dict) or not raw:
        raise MecError("'category_group' must map category ids to group indices", path)
    cg: Dict[int, int] = {}
    for key, value in raw.items():
        if not (isinstance(key, str) and key.lstrip("-").isdigit() and len(key) < 19):
            raise MecError(f"category_group has a key that is not a category id: {key!r}", path)
        if type(value) is not int or not 0 <= value <= len(bins):
            raise MecError(f"category {key} has group {value!r}, not an index in 0..{len(bins)}", path)
        cg[int(key)] = value
    count_by = doc.get("count_by", "instances")
    if count_by not in ("instances", "images"):
        raise MecError(f"count_by must be 'instances' or 'images', got {count_by!r}", path)
    return GroupSpec(cg, bins, names, count_by, doc)
