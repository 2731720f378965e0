"""Bad input of every kind ends in one line and exit 2, before any work and without touching an output.

The runs go through the real entry point (``main``), as a user's shell does; a hypothesis fuzzer mutates valid
inputs into invalid ones for each command.
"""
import copy
import json
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

RLE_20x20 = "e7d0l00000000000000000000000000000000000000[j1"  # pycocotools' RLE of a 20x20 square at (5, 5) in 48x64
VALID = {
    "images": [{"id": 1, "width": 64, "height": 48, "neg_category_ids": [2], "not_exhaustive_category_ids": []},
               {"id": 2, "width": 64, "height": 48, "neg_category_ids": [], "not_exhaustive_category_ids": [1]}],
    "categories": [{"id": 1, "name": "a", "frequency": "r"}, {"id": 2, "name": "b", "frequency": "f"}],
    "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1.0, 2.0, 10.0, 12.0], "area": 120.0,
                     "iscrowd": 0, "segmentation": [[1, 2, 11, 2, 11, 14, 1, 14]]},
                    {"id": 2, "image_id": 2, "category_id": 2, "bbox": [5, 5, 20, 20], "area": 400, "iscrowd": 0,
                     "segmentation": {"size": [48, 64], "counts": RLE_20x20}}],
}

# (path into VALID, a value no reader may accept there)
BAD_VALUES = st.sampled_from([None, "1", [1, 2], {"x": 1}, 2**70, -(2**70), True, 1.5, float("nan"), float("inf"), [],
                              ""])
FIELDS = [("images", 0, "id"), ("images", 1, "width"), ("images", 0, "neg_category_ids"), ("categories", 0, "id"),
          ("categories", 1, "name"), ("categories", 0, "frequency"), ("annotations", 0, "id"),
          ("annotations", 0, "image_id"),
          ("annotations", 1, "category_id"), ("annotations", 0, "bbox"), ("annotations", 1, "area"),
          ("annotations", 0, "iscrowd"), ("annotations", 1, "segmentation")]


def _acceptable(field, value, command) -> bool:
    """The few (field, value) pairs that are valid after all."""
    key = field[-1]
    if key == "segmentation" and command == "eval":
        # box evaluation never reads ground-truth segmentations (mec_cli.data.schema), but the file must still be
        # JSON: NaN and Infinity literals (which json.dumps writes) are not
        return not (isinstance(value, float) and value in (float("inf"),)) and value == value
    if key == "name":
        return isinstance(value, str)
    if key in ("width",):
        return type(value) is int and 0 < value < 2**31
    if key == "area":
        return type(value) in (int, float) and value == value and value not in (float("inf"),) and value >= 0
    if key == "iscrowd":
        return value is True  # True == 1 is accepted as 1, like pycocotools
    if key == "neg_category_ids":
        return value == [] or value == [1, 2]
    return False


def _write(path, obj):
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def _no_outputs(folder, *names):
    for name in names:
        assert not (folder / name).exists(), name
    assert not [p for p in folder.iterdir() if ".tmp" in p.name], list(folder.iterdir())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(FIELDS), value=BAD_VALUES,
       command=st.sampled_from(["groups", "build-coco-lt", "eval", "eval-segm"]))
def test_fuzzed_annotation_files_end_in_one_line(run_mec, tmp_path_factory, field, value, command):
    tmp = tmp_path_factory.mktemp("fuzz")
    doc = copy.deepcopy(VALID)
    section, index, key = field
    doc[section][index][key] = value
    ann = _write(tmp / "ann.json", json.dumps(doc, allow_nan=True))
    out = tmp / "out.json"
    if command == "groups":
        res = run_mec("groups", ann, "--out", out)
    elif command == "build-coco-lt":
        res = run_mec("build-coco-lt", "--coco-ann", ann, "--keep-top", "1", "--out", out)
    else:
        det = {"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 12], "score": 0.9}
        if command == "eval-segm":
            det["segmentation"] = {"size": [48, 64], "counts": RLE_20x20}
        dets = _write(tmp / "dets.json", [det])
        res = run_mec("eval", "--results", dets, "--ann", ann, "--out", out)
    if _acceptable(field, value, command):
        assert res.code == 0, res.err
        return
    line = res.one_error_line()
    assert str(ann) in line
    _no_outputs(tmp, "out.json", "out.manifest.json")


@pytest.mark.parametrize("content,needle", [
    ("", "malformed JSON"),
    ("[" * 100000, "expected a JSON object"),
    ('{"images": [], "annotations": [], "categories": [{"id": "7", "name": "x"}]}',
     "categories[0].id: expected an integer, got a string"),
    ('{"images": [{"id": [1]}], "annotations": [], "categories": []}', "images[0].id: expected an integer, got a list"),
    ('{"categories": [{"id": 1, "name": "a", "x": ' + "[" * 5000 + "]" * 5000 + '}]}', "nested too deeply"),
    ('{"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}], "annotations": '
     '[{"id": 1, "image_id": 1, "category_id": 1, "bbox": ["1", "2", "3", "4"]}]}', "4 finite numbers"),
    ('{"images": [{"id": 1}], "categories": [{"id": 1, "name": "a"}], "annotations": '
     '[{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 2, null, 4]}]}', "4 finite numbers"),
    ('{"images": [{"id": 1}], "categories": [{"id": 1180591620717411303424, "name": "a"}], "annotations": []}',
     "64-bit"),
])
def test_hostile_annotation_files(run_mec, tmp_path, content, needle):
    ann = _write(tmp_path / "a[1].json", content)
    line = run_mec("groups", ann, "--out", tmp_path / "g.json").one_error_line()
    assert needle in line and "a[1].json" in line  # brackets in a path survive Rich
    _no_outputs(tmp_path, "g.json")


def _groups_doc():
    from mec_cli.data.groups import build_groups

    return build_groups({1: 3, 2: 500}, [10, 100])


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d.pop("category_group"), "category_group"),
    (lambda d: d.update(category_group={"1": "rare"}), "not an index"),
    (lambda d: d.update(category_group={"x": 0}), "not a category id"),
    (lambda d: d.update(bins=[100, 10]), "strictly increasing"),
    (lambda d: d.update(bins="10,100"), "list of integers"),
    (lambda d: d.update(groups=[{"name": "a"}]), "one per bin range"),
    (lambda d: d.update(schema="other"), "schema"),
    (lambda d: d["category_group"].update({"2": 7}), "not an index"),
])
def test_malformed_groups_files(run_mec, tmp_path, mutate, needle):
    doc = _groups_doc()
    mutate(doc)
    groups = _write(tmp_path / "groups.json", doc)
    ann = _write(tmp_path / "ann.json", VALID)
    dets = _write(tmp_path / "dets.json", [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 12], "score": 0.9}])
    line = run_mec("eval", "--results", dets, "--ann", ann, "--groups", groups, "--out",
                   tmp_path / "m.json").one_error_line()
    assert needle in line and "groups.json" in line
    _no_outputs(tmp_path, "m.json")


def _metrics_doc():
    from mec_cli.evaluation.api import SCHEMA

    modes = {m: {"bbox": {"AP": 0.3, "APr": 0.1, "APc": 0.2, "APf": 0.4},
                 "segm": {"AP": 0.2, "APr": 0.1, "APc": 0.2, "APf": 0.3}}
             for m in ("stage1", "stage2", "stage3", "mean_logits", "dynamic_ga")}
    return {"schema": SCHEMA, "protocol": "lvis", "recipe": "tiny",
            "run": {"mec_loss": True, "lam": 0.7, "num_stages": 3},
            "groups": {"names": ["rare", "common", "frequent"], "bins": [10, 100]}, "modes": modes}


@pytest.mark.parametrize("mutate,needle", [
    (lambda d: d.update(modes=[]), "no modes"),
    (lambda d: d["modes"].update(stage1="x"), "no iou types"),
    (lambda d: d["modes"]["stage1"].update(bbox=[1]), "not an object"),
    (lambda d: d["modes"]["stage1"]["bbox"].update(AP="high"), "not a number"),
    (lambda d: d.update(run="x"), "'run'"),
    (lambda d: d["run"].update(num_stages="3"), "num_stages"),
    (lambda d: d.update(groups={"names": "rare"}), "groups.names"),
    (lambda d: d.update(recipe=7), "'recipe'"),
])
@pytest.mark.parametrize("command", ["ablation", "stages"])
def test_malformed_metrics_files(run_mec, tmp_path, mutate, needle, command):
    doc = _metrics_doc()
    mutate(doc)
    metrics = _write(tmp_path / "m[0].json", doc)
    line = run_mec("report", command, metrics, "--out",
                   tmp_path / ("t.md" if command == "ablation" else "s.png")).one_error_line()
    assert needle in line and "m[0].json" in line
    _no_outputs(tmp_path, "t.md", "s.png", "s.svg")


@pytest.mark.parametrize("args,needle", [
    (["train", "--recipe", "tiny", "--gpus", "0", "--max-iters", "0", "--dry-run"], "--max-iters must be >= 1"),
    (["train", "--recipe", "tiny", "--gpus", "0", "--seed", "-1", "--dry-run"], "--seed must be >= 0"),
    (["train", "--recipe", "tiny", "--gpus", "0", "--procs", "0", "--dry-run"], "--procs must be >= 1"),
    (["train", "--recipe", "tiny", "--nodes", "2", "--node-rank", "2", "--dry-run"], "--node-rank must be <= 1"),
    (["train", "--recipe", "tiny", "--gpus", "0", "--master-port", "70000", "--dry-run"], "--master-port"),
    (["train", "--recipe", "tiny", "--gpus", "-2"], "--gpus must be >= 0"),
    (["train", "--recipe", "tiny", "--gpus", "x"], "--gpus"),
    (["train", "--recipe", "no_such_recipe"], "unknown recipe"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--tau", "nan"], "--tau must be a finite number"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--tau", "0"], "--tau must be > 0"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--procs", "0"], "--procs must be >= 1"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--max-images", "0"], "--max-images must be >= 1"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--gpus", "8"], "--gpus asks for 8 GPUs"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--modes", "best"], "unknown ensemble 'best'"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--group-align", "maybe"], "on, off or both"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--iou-type", "mask"], "--iou-type"),
    (["synth", "--seed", "-3", "--out", "OUT"], "--seed must be >= 0"),
    (["synth", "--num-classes", "1", "--out", "OUT"], "--num-classes"),
    (["demo", "--iters", "0", "--out", "OUT"], "--iters must be >= 1"),
    (["groups", "--profile", "lvis_v1", "--bins", "10,10", "--out", "OUT"], "--bins must be strictly increasing"),
    (["build-coco-lt", "--coco-ann", "ANN", "--keep-top", "99", "--out", "OUT"], "--keep-top must be between 0 and 2"),
    (["build-coco-lt", "--coco-ann", "ANN", "--seed", "-1", "--out", "OUT"], "--seed must be >= 0"),
    (["report", "ablation", "M", "--format", "docx"], "--format must be one of"),
    (["report", "ablation", "M", "--grouping", "size"], "grouping must be one of"),
    (["nosuch"], "No such command"),
])
def test_nonsense_options_are_refused_before_any_work(run_mec, tmp_path, args, needle):
    from mec_cli.evaluation.api import SCHEMA

    ckpt = tmp_path / "ckpt.pth"
    import torch

    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": {}}, ckpt)
    metrics = _write(tmp_path / "m.json", {**_metrics_doc(), "schema": SCHEMA})
    subst = {"CKPT": ckpt, "OUT": tmp_path / "out", "ANN": _write(tmp_path / "ann.json", VALID), "M": metrics}
    res = run_mec(*[subst.get(a, a) for a in args])
    line = res.one_error_line()
    assert needle in line, line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["directory", "under_a_file", "equals_input", "manifest_equals_out", "read_only"])
def test_outputs_that_cannot_or_must_not_be_written(run_mec, tmp_path, monkeypatch, case):
    ann = _write(tmp_path / "ann.json", VALID)
    before = ann.read_bytes()
    args = {"directory": ["groups", ann, "--out", tmp_path],
            "under_a_file": ["groups", ann, "--out", ann / "g.json"],
            "equals_input": ["groups", ann, "--out", ann],
            "manifest_equals_out": ["build-coco-lt", "--coco-ann", ann, "--out", tmp_path / "x.json", "--manifest",
                                    tmp_path / "x.json"],
            "read_only": ["groups", ann, "--out", tmp_path / "ro" / "g.json"]}[case]
    if case == "read_only":
        (tmp_path / "ro").mkdir()
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p).endswith("ro") else real(p, mode, **kw))
    line = run_mec(*args).one_error_line()
    needle = {"directory": "is a directory", "under_a_file": "is a file, not a folder",
              "equals_input": "would overwrite the input",
              "manifest_equals_out": "the manifest would overwrite the dataset", "read_only": "permission denied"}[case]
    assert needle in line
    assert ann.read_bytes() == before and not (tmp_path / "x.json").exists()


def test_a_failed_build_keeps_the_previous_dataset_and_manifest_together(run_mec, tmp_path, monkeypatch):
    from mec_cli.data.profiles import load_profile
    from mec_cli.data.synth import synthetic_coco_annotations

    ann = _write(tmp_path / "coco.json", synthetic_coco_annotations(400, load_profile("coco2017")["categories"], seed=1,
                                                                    scale=0.003))
    out, manifest = tmp_path / "lt.json", tmp_path / "lt.manifest.json"
    assert run_mec("build-coco-lt", "--coco-ann", ann, "--out", out).code == 0
    old = (out.read_bytes(), manifest.read_bytes())
    import mec_cli.io as io_mod

    real = io_mod.os.replace
    calls = {"n": 0}

    def flaky(src, dst):  # the manifest's rename fails once, after the dataset was replaced
        if os.path.basename(dst) == "lt.manifest.json" and os.path.basename(src).startswith(".") and not calls["n"]:
            calls["n"] += 1
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(io_mod.os, "replace", flaky)
    line = run_mec("build-coco-lt", "--coco-ann", ann, "--out", out, "--seed", "3").one_error_line()
    assert "No space left on device" in line and "unchanged" in line
    assert calls["n"] == 1 and (out.read_bytes(), manifest.read_bytes()) == old  # both as they were
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_rich_markup_in_names_is_printed_as_text(run_mec, tmp_path):
    ann = _write(tmp_path / "[bold]ann.json", VALID)
    res = run_mec("groups", ann, "--out", tmp_path / "[red]g.json")
    assert res.code == 0, res.err
    assert "[red]g.json" in res.out
    bad = _write(tmp_path / "[x].json", {**VALID, "annotations": [{**VALID["annotations"][0], "bbox": [1, 2, 3]}]})
    line = run_mec("groups", bad, "--out", tmp_path / "h.json").one_error_line()
    assert "[x].json" in line and "[1, 2, 3]" in line  # bracketed text is not swallowed as markup
