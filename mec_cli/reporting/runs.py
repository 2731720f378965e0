"""Runs for reports: metrics JSON files found by path, run directory or glob, with their labels."""
from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from mec_cli.errors import MecError

GROUP_KEYS = {"rare": "APr", "common": "APc", "frequent": "APf"}


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

    def group_names(self) -> List[str]:
        return list((self.doc.get("groups") or {}).get("names") or ["rare", "common", "frequent"])

    def metric(self, mode: str, iou_type: str, name: str) -> Optional[float]:
        """A metric as a fraction, or None when absent or unmeasurable (-1)."""
        value = self.doc["modes"].get(mode, {}).get(iou_type, {}).get(name)
        return None if value is None or value < 0 else float(value)

    def group_ap(self, mode: str, iou_type: str, group: str) -> Optional[float]:
        """AP of a frequency group: LVIS's APr/APc/APf for the 3-group split when present, else AP_<group>."""
        if group in GROUP_KEYS and self.metric(mode, iou_type, GROUP_KEYS[group]) is not None and len(self.group_names()) == 3:
            return self.metric(mode, iou_type, GROUP_KEYS[group])
        return self.metric(mode, iou_type, f"AP_{group}")


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
    from mec_cli.evaluation.api import load_metrics

    paths = [p for spec in specs for p in find_metrics(spec)]
    if labels and len(labels) != len(paths):
        raise MecError(f"{len(labels)} --label values for {len(paths)} runs")
    runs = []
    for i, p in enumerate(paths):
        doc = load_metrics(p)
        label = labels[i] if labels else (doc.get("recipe") or p.parent.name or p.stem)
        runs.append(Run(p, doc, label))
    return runs
