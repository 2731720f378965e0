"""Built-in long-tail profiles: per-category training statistics shipped inside the package.

* ``lvis_v1``, ``lvis_v0.5``: id, name, synset, frequency, image_count, instance_count of every LVIS category.
* ``coco2017``: instance and image counts (crowd included) of every COCO train2017 category, with its LVIS synset.

Each file names its public source in its ``source`` field.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Dict

from mec_cli.errors import MecError

_DIR = Path(__file__).with_name("stats")
PROFILES = {
    "lvis_v1": "lvis_v1_train_category_stats.json",
    "lvis_v0.5": "lvis_v0.5_train_category_stats.json",
    "coco2017": "coco2017_train_category_stats.json",
}


@functools.lru_cache(maxsize=None)
def load_profile(name: str) -> Dict:
    """The profile document: ``{"source": ..., "categories": [...]}``."""
    if name not in PROFILES:
        raise MecError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    with open(_DIR / PROFILES[name], encoding="utf-8") as f:
        return json.load(f)
