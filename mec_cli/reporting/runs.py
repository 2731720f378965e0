"""Runs for reports: metrics JSON files found by path, run directory or glob, with their labels."""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from mec_cli.data.groups import LVIS_FREQUENCY_NAMES, bin_ranges
from mec_cli.errors import MecError
from mec_cli.evaluation.api import load_metrics

LVIS_GROUPS = tuple(LVIS_FREQUENCY_NAMES.values())  # rare, common, frequent
LVIS_KEYS = {name: f"AP{f}" for f, name in LVIS_FREQUENCY_NAMES.items()}  # rare -> APr, ...
GROUPINGS = ("auto", "lvis", "groups")


@dataclass
class Run:
    path: Path
    doc: Dict
    label: str

    @property
    def recipe(self) -> Optional[str]:
        return self.doc.get("recipe")

    @property
    def info(self) -> Dict:
        return self.doc.get("run") or {}

    @property
    def mec_loss(self) -> bool:
        return bool(self.info.get("mec_loss", False))

    @property
    def lam(self) -> Optional[float]:
        return self.info.get("lam")

    @property
    def num_stages(self) -> int:
        stages = [m for m in self.doc["modes"] if m.startswith("stage")]
        return int(self.info.get("num_stages") or len(stages) or 3)

    @property
    def modes(self) -> List[str]:
        return list(self.doc["modes"])

    @property
    def dataset(self) -> Optional[str]:
        """The dataset the run was evaluated on, as its recipe recorded it (None for a results file)."""
        return ((self.info.get("recipe_meta") or {}).get("dataset")) or None

    def has_grouping(self, grouping: str) -> bool:
        """Whether the run holds group APs of ``grouping``: 'lvis' (APr/APc/APf) or 'groups' (AP_<name> of
        groups.json)."""
        keys = ([LVIS_KEYS[g] for g in LVIS_GROUPS] if grouping == "lvis"
                else [f"AP_{g}" for g in self.groups_file_names()])
        return bool(keys) and any(all(k in metrics for k in keys) for by_type in self.doc["modes"].values()
                                  for metrics in by_type.values())

    def groups_file_names(self) -> List[str]:
        return list((self.doc.get("groups") or {}).get("names") or [])

    def group_names(self, grouping: str = "groups") -> List[str]:
        return list(LVIS_GROUPS) if grouping == "lvis" else self.groups_file_names()

    def metric(self, mode: str, iou_type: str, name: str) -> Optional[float]:
        """A metric as a fraction, or None when absent or unmeasurable (-1)."""
        value = self.doc["modes"].get(mode, {}).get(iou_type, {}).get(name)
        return None if value is None or value < 0 else float(value)

    def group_ap(self, mode: str, iou_type: str, group: str, grouping: str) -> Optional[float]:
        """AP of one group of ``grouping``: LVIS's APr/APc/APf ('lvis') or AP_<group> of groups.json ('groups').

        The two groupings differ (LVIS counts training images, groups.json by default instances), so one never
        stands in for the other.
        """
        return self.metric(mode, iou_type, LVIS_KEYS[group] if grouping == "lvis" else f"AP_{group}")


def resolve_grouping(runs: Sequence[Run], grouping: str = "auto") -> str:
    """The grouping every row of a report uses: LVIS frequency ('lvis') or groups.json ('groups').

    'auto' takes LVIS frequency when every run has it (LVIS annotations), else groups.json when every run has
    that; a grouping some run lacks is an error naming the run.
    """
    if grouping not in GROUPINGS:
        raise MecError(f"must be one of {', '.join(GROUPINGS)}, got {grouping!r}", option="grouping")
    if grouping == "auto":
        for choice in ("lvis", "groups"):
            if all(r.has_grouping(choice) for r in runs):
                return choice
        grouping = "lvis"
    for r in runs:
        if not r.has_grouping(grouping):
            what = ("LVIS frequency groups (APr/APc/APf: its annotations have no 'frequency')" if grouping == "lvis"
                    else "groups.json groups (evaluate it with --groups)")
            raise MecError(f"run {r.label} has no {what}", r.path)
    return grouping


def grouping_note(runs: Sequence[Run], grouping: str) -> str:
    """What the group columns of a report mean, in one sentence."""
    if grouping == "lvis":
        return ("APr/APc/APf: LVIS frequency groups (rare/common/frequent: categories in 1-10, 11-100, >100 training "
                "images)")
    info = runs[0].doc.get("groups") or {}
    bins, unit = info.get("bins") or [], info.get("count_by", "instances")
    ranges = ", ".join(f"{n} {r}" for n, r in zip(runs[0].groups_file_names(), bin_ranges(bins)))
    return f"AP_<group>: the groups of groups.json, by training {unit}: {ranges}"


def grouping_axis(run: Run, grouping: str) -> str:
    """An axis label naming the grouping."""
    if grouping == "lvis":
        return "LVIS frequency group (by training images)"
    return f"group of groups.json (by training {(run.doc.get('groups') or {}).get('count_by', 'instances')})"


def find_metrics(spec: str) -> List[Path]:
    """Metrics files named by ``spec``: a file, a run directory holding metrics*.json, or a glob."""
    path = Path(spec)
    if path.is_file():
        return [path]
    if path.is_dir():
        found = sorted(path.glob("metrics*.json")) or sorted(path.glob("*/metrics*.json"))
        if not found:
            raise MecError("no metrics*.json in this run directory (write one with `mec eval --out`)", path)
        return found
    matches = sorted(Path(p) for p in glob.glob(spec))
    files = [p for m in matches for p in (find_metrics(str(m)) if m.is_dir() else [m])]
    if not files:
        raise MecError("no such metrics file, run directory or glob", spec)
    return files


def load_runs(specs: Sequence[str], labels: Optional[Sequence[str]] = None) -> List[Run]:
    """Load every run named by ``specs``; labels come from ``labels`` in order, else the recipe, else the file."""
    paths = [p for spec in specs for p in find_metrics(spec)]
    if labels and len(labels) != len(paths):
        raise MecError(f"gives {len(labels)} labels for {len(paths)} runs", option="labels")
    runs = []
    for i, p in enumerate(paths):
        doc = load_metrics(p)
        label = labels[i] if labels else (doc.get("recipe") or p.parent.name or p.stem)
        runs.append(Run(p, doc, label))
    return runs
