"""Shared fixtures: the synthetic dataset is made once per session by mec_cli.data.synth."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from mec_cli.data.synth import SynthConfig, make_synthetic_dataset


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """A small synthetic LVIS-format dataset (the demo's data at reduced size)."""
    root = tmp_path_factory.mktemp("synth")
    make_synthetic_dataset(SynthConfig(out=root, seed=0, train_images=120, val_images=30, image_size=128,
                                       max_count=300, min_count=3))
    return root


@pytest.fixture()
def write_json(tmp_path):
    def _write(name: str, obj) -> Path:
        p = tmp_path / name
        p.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
        return p

    return _write
