import json

import pytest

from mec_cli.data.groups import assign_groups, build_groups, compute_groups, group_names, load_groups, parse_bins
from mec_cli.errors import MecError


def test_edges_belong_to_the_upper_group_and_zero_goes_to_group_0():
    counts = {1: 0, 2: 9, 3: 10, 4: 99, 5: 100, 6: 5000}
    assert assign_groups(counts, [10, 100]) == {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 2}
    assert assign_groups(counts, [10, 100, 500]) == {1: 0, 2: 0, 3: 1, 4: 1, 5: 2, 6: 3}


@pytest.mark.parametrize("bad", ["100,10", "10,10", "0,10", "-5", "", "a,b", "10.5"])
def test_bins_that_make_no_sense_are_rejected(bad):
    with pytest.raises(MecError):
        parse_bins(bad)


def test_names_and_document_fields():
    assert group_names(3) == ["rare", "common", "frequent"]
    assert group_names(4) == ["g0", "g1", "g2", "g3"]
    doc = build_groups({1: 3, 2: 50, 3: 700}, [10, 100], frequencies={1: "r", 2: "f", 3: "f"})
    assert doc["category_group"] == {"1": 0, "2": 1, "3": 2}
    assert [g["lower"] for g in doc["groups"]] == [0, 10, 100] and doc["groups"][-1]["upper"] is None
    assert [g["num_instances"] for g in doc["groups"]] == [3, 50, 700]
    assert doc["lvis_frequency_agreement"]["common"] == {"r": 0, "c": 0, "f": 1}


def test_lvis_profile_groups_differ_from_lvis_frequency():
    doc = compute_groups("lvis_v1")
    assert sum(g["num_categories"] for g in doc["groups"]) == 1203
    matrix = doc["lvis_frequency_agreement"]
    assert matrix["frequent"]["c"] > 0  # e.g. almond: 'c' by images, but 1,700 instances
    assert matrix["rare"]["c"] == 0 and matrix["rare"]["f"] == 0


def test_groups_from_file_count_instances_and_images(write_json):
    ann = {"images": [{"id": 1}, {"id": 2}], "categories": [{"id": 7, "name": "a"}, {"id": 8, "name": "b"},
                                                            {"id": 9, "name": "c"}],
           "annotations": [{"id": i, "image_id": 1 + i % 2, "category_id": 7, "bbox": [0, 0, 1, 1]} for i in range(12)]}
    path = write_json("ann.json", ann)
    doc = compute_groups(path, "instances", "10,100")
    assert doc["category_group"] == {"7": 1, "8": 0, "9": 0}
    assert len(doc["source_sha256"]) == 64
    assert compute_groups(path, "images", "10,100")["category_group"]["7"] == 0


def test_load_groups_round_trip_and_class_order(tmp_path):
    doc = build_groups({1: 3, 2: 50, 3: 700}, [10, 100])
    p = tmp_path / "g.json"
    p.write_text(json.dumps(doc))
    spec = load_groups(p)
    assert spec.num_groups == 3 and spec.class_groups([3, 1, 2]) == [2, 0, 1]
    with pytest.raises(MecError, match="no group for category id 4"):
        spec.class_groups([4])
    (tmp_path / "bad.json").write_text('{"schema": "other"}')
    with pytest.raises(MecError, match="schema"):
        load_groups(tmp_path / "bad.json")
