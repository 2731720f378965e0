import hashlib
import json
from pathlib import Path

import pytest
from lvis import LVIS

from mec_cli.data.groups import compute_groups
from mec_cli.data.synth import SynthConfig, category_table, long_tail_counts, make_synthetic_dataset
from mec_cli.errors import MecError


def _digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def test_same_seed_gives_identical_bytes_and_other_seed_differs(tmp_path):
    kw = dict(train_images=12, val_images=4, image_size=96, max_count=40)
    make_synthetic_dataset(SynthConfig(out=tmp_path / "a", seed=0, **kw))
    make_synthetic_dataset(SynthConfig(out=tmp_path / "b", seed=0, **kw))
    make_synthetic_dataset(SynthConfig(out=tmp_path / "c", seed=1, **kw))
    a, b, c = _digest(tmp_path / "a"), _digest(tmp_path / "b"), _digest(tmp_path / "c")
    assert len(a) == 12 + 4 + 2 and a == b
    assert a != c


def test_lvis_loads_both_splits_with_lvis_fields(synth_data):
    for split in ("train", "val"):
        ds = LVIS(str(synth_data / "annotations" / f"lvis_v1_{split}.json"))
        assert len(ds.get_img_ids()) == (120 if split == "train" else 30)
        img = ds.load_imgs(ds.get_img_ids()[:1])[0]
        assert "neg_category_ids" in img and "not_exhaustive_category_ids" in img
        assert (synth_data / img["coco_url"].replace("http://images.cocodataset.org/", "")).is_file()
        for cat in ds.load_cats(None):
            assert cat["frequency"] in "rcf" and cat["image_count"] <= cat["instance_count"]


def test_default_distribution_fills_every_instance_group():
    counts = long_tail_counts(24, 1000, 3)
    assert counts[0] == 1000 and counts[-1] == 3
    assert (sum(c < 10 for c in counts) >= 3 and sum(10 <= c < 100 for c in counts) >= 3
            and sum(c >= 100 for c in counts) >= 3)


def test_category_statistics_match_annotations(synth_data):
    data = json.loads((synth_data / "annotations" / "lvis_v1_train.json").read_text())
    for cat in data["categories"]:
        anns = [a for a in data["annotations"] if a["category_id"] == cat["id"]]
        assert cat["instance_count"] == len(anns)
        assert cat["image_count"] == len({a["image_id"] for a in anns})
        assert cat["frequency"] == ("r" if cat["image_count"] <= 10 else "c" if cat["image_count"] <= 100 else "f")
    doc = compute_groups(synth_data / "annotations" / "lvis_v1_train.json")
    assert all(g["num_categories"] >= 3 for g in doc["groups"])


def test_categories_are_distinct_shape_colour_pairs():
    table = category_table(48)
    assert len(set(table)) == 48


def test_bad_config_is_a_clean_error(tmp_path):
    with pytest.raises(MecError, match="num-classes"):
        make_synthetic_dataset(SynthConfig(out=tmp_path, num_classes=99))
