"""Every validation error: one line naming the file and the first offending record, exit 2, no output."""
import pytest
from typer.testing import CliRunner

from mec_cli.cli import app

GOOD = {"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 2, 2]}]}

CASES = {
    "malformed": ('{"images": [', "malformed JSON"),
    "missing_top": ({"images": [], "annotations": []}, "missing top-level key 'categories'"),
    "missing_key": ({**GOOD, "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 1, 1]}]},
                    "annotations[0] (id 1) is missing key 'category_id'"),
    "dup_image": ({**GOOD, "images": [{"id": 1}, {"id": 1}]}, "duplicate image id 1"),
    "dup_ann": ({**GOOD, "annotations": GOOD["annotations"] * 2}, "duplicate annotation id 1"),
    "dup_cat": ({**GOOD, "categories": GOOD["categories"] * 2}, "duplicate category id 1"),
    "unknown_image": ({**GOOD, "annotations": [{"id": 1, "image_id": 5, "category_id": 1, "bbox": [0, 0, 1, 1]}]},
                      "unknown image id 5"),
    "unknown_cat": ({**GOOD, "annotations": [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [0, 0, 1, 1]}]},
                    "unknown category id 9"),
    "bad_box": ({**GOOD, "annotations": [{"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 0, 4]}]},
                "annotation id 3 has a non-positive box size"),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("command", ["groups", "build-coco-lt"])
def test_bad_annotation_files_exit_2_with_one_line_and_no_output(case, command, write_json, tmp_path):
    content, message = CASES[case]
    path = write_json(f"{case}.json", content)
    out = tmp_path / "out.json"
    args = ["groups", str(path), "--out", str(out)] if command == "groups" else ["build-coco-lt", "--coco-ann",
                                                                                 str(path), "--out", str(out)]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and message in lines[0], res.output
    assert "Traceback" not in res.output
    assert not out.exists() and not list(tmp_path.glob(".out.json*"))


@pytest.mark.parametrize("bins", ["100,10", "0,5", "x"])
def test_bins_that_make_no_sense_exit_2(bins, write_json, tmp_path):
    res = CliRunner().invoke(app, ["groups", str(write_json("a.json", GOOD)), "--bins", bins, "--out",
                                   str(tmp_path / "g.json")])
    assert res.exit_code == 2 and "bins" in res.output and not (tmp_path / "g.json").exists()


def test_failed_write_keeps_the_previous_good_file(write_json, tmp_path):
    out = tmp_path / "g.json"
    assert CliRunner().invoke(app, ["groups", str(write_json("a.json", GOOD)), "--out", str(out)]).exit_code == 0
    before = out.read_bytes()
    res = CliRunner().invoke(app, ["groups", str(write_json("b.json", CASES["bad_box"][0])), "--out", str(out)])
    assert res.exit_code == 2 and out.read_bytes() == before


def test_empty_top_level_lists_are_not_missing_ones(write_json):
    """`[]` in the file is read as empty; only a key the file lacks is 'missing' (the evaluator's reader too)."""
    from mec_cli.data.schema import read_dataset
    from mec_cli.errors import MecError
    from mec_cli.evaluation.engine import GroundTruth

    path = write_json("empty.json", {"images": [{"id": 1}], "categories": GOOD["categories"], "annotations": []})
    assert read_dataset(path).annotations == []
    assert GroundTruth.from_file(path).gt_box.shape[0] == 0
    for key in ("images", "annotations"):
        lacking = write_json(f"no_{key}.json", {k: v for k, v in GOOD.items() if k != key})
        for read in (read_dataset, GroundTruth.from_file):
            with pytest.raises(MecError, match=f"missing top-level key '{key}'"):
                read(lacking)
