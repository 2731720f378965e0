"""Bad input of every kind ends in one line and exit 2, before any work and without touching an output.

The runs go through the real entry point (``main``), as a user's shell does; a hypothesis fuzzer mutates valid
inputs into invalid ones for each command.
"""
import contextlib
import copy
import json
import os
import stat
from pathlib import Path

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


# ---- hostile inputs, second round (issue 20): one test per class, each fast ---------------------------------------
def _unblock_after(path, mode, seconds=20.0):
    """If a regression ever opened the FIFO ``path`` blocking, open its other end after a while, so that the test
    fails on a wrong result instead of hanging (a correct run never opens it)."""
    import threading
    import time

    def opener():
        time.sleep(seconds)
        with contextlib.suppress(OSError):
            os.close(os.open(path, (os.O_WRONLY if mode == "r" else os.O_RDONLY) | os.O_NONBLOCK))

    threading.Thread(target=opener, daemon=True).start()


def _special(tmp_path, kind):
    """A path of ``kind``: fifo, socket, dir, chardev (a private /dev/null as root, who could rename over the real
    one; /dev/null itself otherwise, which no other user can replace), full (likewise /dev/full)."""
    import socket

    p = tmp_path / f"special-{kind}"
    if kind == "fifo":
        os.mkfifo(p)
    elif kind == "socket":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(p))
        s.close()
    elif kind == "dir":
        p.mkdir()
    elif kind in ("chardev", "full"):
        minor = 3 if kind == "chardev" else 7
        if os.geteuid() != 0:
            return Path("/dev/null" if kind == "chardev" else "/dev/full")
        os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
    return p


def _inputs(tmp_path):
    ann = _write(tmp_path / "ann.json", VALID)
    dets = _write(tmp_path / "dets.json", [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 12], "score": 0.9,
                                            "segmentation": {"size": [48, 64], "counts": RLE_20x20}}])
    return ann, dets


@pytest.mark.parametrize("kind", ["fifo", "socket", "dir", "chardev"])
@pytest.mark.parametrize("role", ["results", "ann", "groups", "checkpoint", "config", "metrics", "coco-ann"])
def test_inputs_that_are_not_regular_files_are_one_line_and_never_block(run_mec, tmp_path, kind, role):
    ann, dets = _inputs(tmp_path)
    bad = _special(tmp_path, kind)
    if kind == "fifo":
        _unblock_after(bad, "r")
    args = {"results": ["eval", "--results", bad, "--ann", ann],
            "ann": ["eval", "--results", dets, "--ann", bad],
            "groups": ["eval", "--results", dets, "--ann", ann, "--groups", bad],
            "checkpoint": ["eval", "--checkpoint", bad, "--recipe", "tiny"],
            "config": ["train", "--config", bad, "--gpus", "0", "--dry-run"],
            "metrics": ["report", "ablation", bad],
            "coco-ann": ["build-coco-lt", "--coco-ann", bad, "--out", tmp_path / "lt.json"]}[role]
    line = run_mec(*args).one_error_line()
    assert str(bad) in line or (role == "metrics" and kind == "dir")
    assert ("directory" in line or "metrics" in line) if kind == "dir" else "not a regular file" in line
    assert not (tmp_path / "lt.json").exists()


@pytest.mark.parametrize("command", ["groups", "build-coco-lt", "eval-ann", "eval-results", "eval-groups", "report"])
def test_invalid_utf8_is_one_line_naming_the_byte_in_every_reader(run_mec, tmp_path, command):
    ann, dets = _inputs(tmp_path)
    bad_doc = {**VALID, "info": {"description": "PLACEHOLDER"}}
    raw = json.dumps(bad_doc).encode().replace(b"PLACEHOLDER", b"caf\xe9 \xff")  # Latin-1 bytes in a string
    offset = raw.index(b"\xe9")
    bad = tmp_path / "bad.json"
    if command in ("eval-results",):
        raw = json.dumps([{"image_id": 1, "category_id": 1, "bbox": [1, 2, 3, 4], "score": 0.5,
                           "note": "PLACEHOLDER"}]).encode().replace(b"PLACEHOLDER", b"caf\xe9")
        offset = raw.index(b"\xe9")
    elif command == "eval-groups":
        raw = json.dumps({**_groups_doc(), "source": "PLACEHOLDER"}).encode().replace(b"PLACEHOLDER", b"caf\xe9")
        offset = raw.index(b"\xe9")
    elif command == "report":
        raw = json.dumps({**_metrics_doc(), "recipe": "PLACEHOLDER"}).encode().replace(b"PLACEHOLDER", b"caf\xe9")
        offset = raw.index(b"\xe9")
    bad.write_bytes(raw)
    args = {"groups": ["groups", bad, "--out", tmp_path / "out.json"],
            "build-coco-lt": ["build-coco-lt", "--coco-ann", bad, "--out", tmp_path / "out.json"],
            "eval-ann": ["eval", "--results", dets, "--ann", bad, "--out", tmp_path / "out.json"],
            "eval-results": ["eval", "--results", bad, "--ann", ann, "--out", tmp_path / "out.json"],
            "eval-groups": ["eval", "--results", dets, "--ann", ann, "--groups", bad, "--out", tmp_path / "out.json"],
            "report": ["report", "ablation", bad, "--out", tmp_path / "out.md"]}[command]
    line = run_mec(*args).one_error_line()
    assert "bad.json" in line and "UTF-8" in line and f"byte {offset}" in line, line
    _no_outputs(tmp_path, "out.json", "out.md")


def test_standard_input_is_not_read_where_no_command_reads_it(run_mec, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    line = run_mec("groups", "-", "--out", tmp_path / "g.json").one_error_line()
    assert "standard input" in line


@pytest.mark.parametrize("mutate,needle", [
    (lambda s: {**s, "counts": s["counts"][:4] + "~" + s["counts"][5:]}, "outside pycocotools' alphabet"),
    (lambda s: {**s, "counts": s["counts"] + "1"}, "add up to more than"),
    (lambda s: {**s, "counts": s["counts"][:-3]}, "add up to less than"),
    (lambda s: {**s, "counts": s["counts"] + "P"}, "end inside a number"),
    (lambda s: {**s, "counts": "1" + "P" * 8 + "0"}, "more than 6 characters"),
    (lambda s: {**s, "counts": ""}, "add up to less than"),
    (lambda s: {**s, "size": [64, 48]}, "differs from its image's"),
    (lambda s: {"size": [48, 64], "counts": [0, 30000]}, "add up to 30000"),  # hung pycocotools for 40 s
    (lambda s: {"size": [48, 64], "counts": [3000, 50]}, "add up to 3050"),
    (lambda s: [[0, 0, 1e9, 0, 1e9, 1e9]], "outside its 64x48 image"),
    (lambda s: {**s, "counts": "04\\100000Pj2"}, None),  # a 4x4 square; a backslash is an RLE digit (escaped in JSON)
])
@pytest.mark.parametrize("where,iou_type", [("results", "segm"), ("results", "boundary"), ("annotations", "segm"),
                                            ("annotations", "boundary")])
def test_masks_are_checked_as_pycocotools_reads_them(run_mec, tmp_path, mutate, needle, where, iou_type):
    seg = mutate({"size": [48, 64], "counts": RLE_20x20})
    doc = copy.deepcopy(VALID)
    det = {"image_id": 2, "category_id": 2, "score": 0.9, "segmentation": {"size": [48, 64], "counts": RLE_20x20}}
    if where == "results":
        det["segmentation"] = seg
    else:
        doc["annotations"][1]["segmentation"] = seg
    ann, dets = _write(tmp_path / "ann.json", doc), _write(tmp_path / "dets.json", [det])
    res = run_mec("eval", "--results", dets, "--ann", ann, "--iou-type", iou_type, "--out", tmp_path / "m.json")
    if needle is None:
        assert res.code == 0, res.err
        return
    line = res.one_error_line()
    assert needle in line and ("dets.json" if where == "results" else "ann.json") in line, line
    _no_outputs(tmp_path, "m.json")
    if where == "annotations" and isinstance(seg, dict):  # every reader of annotation files checks RLEs (polygons
        # are checked where they are rasterised: bounding them in `mec groups` would cost seconds on LVIS)
        assert needle in run_mec("groups", ann, "--out", tmp_path / "g.json").one_error_line()


def _checkpoint_files(tmp_path):
    import torch

    files = {"random": tmp_path / "random.pth", "state_dict_5": tmp_path / "sd5.pth", "list": tmp_path / "list.pth",
             "empty": tmp_path / "empty.pth", "strings": tmp_path / "strings.pth", "meta_only": tmp_path / "meta.pth",
             "zip_garbage": tmp_path / "zip.pth"}
    files["random"].write_bytes(os.urandom(4096))
    torch.save({"state_dict": 5}, files["state_dict_5"])
    torch.save([1, 2], files["list"])
    torch.save({}, files["empty"])
    torch.save({"state_dict": {"w": "x"}}, files["strings"])
    torch.save({"meta": {"epoch": 1}}, files["meta_only"])
    files["zip_garbage"].write_bytes(b"PK\x03\x04" + os.urandom(2000))
    return files


@pytest.mark.parametrize("name", ["random", "state_dict_5", "list", "empty", "strings", "meta_only", "zip_garbage"])
def test_anything_that_is_not_a_checkpoint_is_one_line(run_mec, tmp_path, name):
    ckpt = _checkpoint_files(tmp_path)[name]
    line = run_mec("eval", "--checkpoint", ckpt, "--recipe", "tiny").one_error_line()
    assert ckpt.name in line and ("checkpoint" in line or "refused" in line), line
    line = run_mec("train", "--recipe", "tiny", "--gpus", "0", "--pretrained", ckpt, "--dry-run").one_error_line()
    assert ckpt.name in line


def test_weights_of_another_model_are_refused_before_inference(run_mec, tmp_path, synth_data):
    import torch

    ckpt = tmp_path / "other.pth"
    torch.save({"state_dict": {"backbone.fc.weight": torch.zeros(3, 3)}, "meta": {}}, ckpt)
    line = run_mec("eval", "--checkpoint", ckpt, "--recipe", "tiny", "--data-root", synth_data).one_error_line()
    assert "other.pth" in line and "none of the model's" in line


def test_a_failed_start_leaves_the_work_dir_as_it_found_it(run_mec, tmp_path, synth_data):
    work = tmp_path / "work"
    base = ["train", "--recipe", "tiny", "--gpus", "0", "--data-root", synth_data, "--max-iters", "2"]
    line = run_mec(*base, "--work-dir", work, "--cfg-options", "model.nosuch.deep.key=1").one_error_line()
    assert "--cfg-options" in line and "'model.nosuch'" in line and not work.exists()
    line = run_mec(*base, "--work-dir", work, "--cfg-options", "model.roi_head.num_stages='x'").one_error_line()
    assert "an integer" in line and not work.exists()
    work.mkdir()
    (work / "config.py").write_text("# an earlier run's\n")
    (work / "notes.txt").write_text("mine\n")
    res = run_mec(*base, "--work-dir", work, "--cfg-options", "model.backbone.depth=7")  # fails building the model
    assert res.code == 2 and "Traceback" not in res.err
    assert "training could not start" in res.lines[-1] and "as it was" in res.lines[-1]
    assert sorted(p.name for p in work.iterdir()) == ["config.py", "notes.txt"]
    assert (work / "config.py").read_text() == "# an earlier run's\n"


@pytest.mark.parametrize("args,needle", [
    (["train", "--recipe", "tiny", "--gpus", "0", "--work-dir", "FILE", "--dry-run"], "is a file, not a folder"),
    (["train", "--config", "EXIT7", "--gpus", "0", "--dry-run"], "called exit(7)"),
    (["eval", "--checkpoint", "CKPT", "--config", "EXIT7"], "called exit(7)"),
    (["synth", "--image-size", "1099511627776", "--out", "OUT"], "--image-size must be between 64 and"),
    (["synth", "--out", "FILE"], "is a file, not a folder"),
    (["synth", "--train-images", "0", "--out", "OUT"], "--train-images must be >= 1"),
    (["groups", "--profile", "lvis_v1", "--bins", "10,,100", "--out", "OUT"], "--bins has an empty edge"),
    (["groups", "--profile", "lvis_v1", "--bins", "1_0", "--out", "OUT"], "--bins must be comma-separated"),
    (["eval", "--results", "DETS", "--ann", "ANN", "--max-images", "0"], "--max-images does not apply to --results"),
    (["eval", "--results", "DETS", "--ann", "ANN", "--max-images", "-1"], "--max-images does not apply"),
    (["eval", "--results", "DETS", "--ann", "ANN", "--tau", "nan"], "--tau does not apply to --results"),
    (["eval", "--results", "DETS", "--ann", "ANN", "--tau", "inf"], "--tau does not apply"),
    (["eval", "--results", "DETS", "--ann", "ANN", "--tau", "1"], "--tau does not apply"),
    (["eval", "--results", "DETS", "--ann", "ANN", "--per-stage"], "--per-stage does not apply"),
    (["eval", "--results", "DETS", "--ann", "ANN", "--dump-dir", "OUT"], "--dump-dir does not apply"),
    (["eval", "--results", "DETS", "--ann", "ANN", "--dets-per-class", "5"], "--dets-per-class does not apply without"),
    (["eval", "--results", "DETS", "--ann", "ANN", "--boundary-dilation", "0.1"], "--boundary-dilation does not"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--ann", "ANN"], "--ann does not apply to --checkpoint"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--master-port", "3000"], "--master-port does not apply"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--tau", "inf"], "--tau must be a finite number"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--tau", "1e-320"], "--tau must be >= 0.001"),  # NaN weights
    (["train", "--recipe", "tiny", "--gpus", "0", "--cfg-options", "model=1", "--dry-run"], "holds a dict there"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--max-images", "-1"], "--max-images must be >= 1"),
    (["train", "--recipe", "tiny", "--gpus", "0", "--partition", "gpu", "--dry-run"], "--partition does not apply"),
    (["train", "--recipe", "tiny", "--gpus", "0", "--time", "1:00", "--dry-run"], "--time does not apply"),
    (["train", "--recipe", "tiny", "--gpus", "2", "--procs", "2", "--dry-run"], "--procs does not apply"),
    (["train", "--recipe", "tiny", "--gpus", "0", "--master-port", "3000", "--dry-run"], "--master-port does not"),
    (["train", "--recipe", "tiny", "--gpus", "0", "--master-addr", "10.0.0.1", "--dry-run"], "--master-addr does"),
    (["report", "errors", "M", "--mode", "nosuch"], "--mode unknown scoring mode 'nosuch'"),
    (["report", "errors", "M", "--mode", "sparse"], "has no mode 'sparse'"),  # no other mode instead
    (["report", "iou-profile", "M", "--baseline-mode", "mean_probs"], "--baseline-mode does not apply without"),
    (["report", "stages", "M", "--mec-mode", "dynamic"], "--mec-mode does not apply without --baseline"),
    (["report", "ablation", "M", "--modes", "dynamic,nosuch"], "unknown scoring mode 'nosuch'"),
    (["report", "ablation", "M", "--modes", "dynamic_ga,sparse_ga"], "no run has mode 'sparse_ga'"),
    (["report", "calibration", "M", "--modes", "dynamic,,x"], "--modes has an empty item"),
    (["report", "stages", "M", "--iou-type", "nosuch"], "has no nosuch metrics per stage"),
    (["eval", "--results", "DETS", "--ann", "ANN", "--iou-type", "bbox,,segm"], "--iou-type has an empty item"),
    (["eval", "--results", "DETS", "--ann", "ANN", "--iou-type", "bbox,bbox"], "--iou-type names 'bbox' twice"),
    (["eval", "--checkpoint", "CKPT", "--recipe", "tiny", "--modes", "dynamic,"], "--modes has an empty item"),
])
def test_options_that_do_not_apply_or_mean_nothing_are_refused_first(run_mec, tmp_path, args, needle):
    import torch

    ckpt = tmp_path / "ckpt.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "meta": {}}, ckpt)
    ann, dets = _inputs(tmp_path)
    exit7 = tmp_path / "exit7.py"
    exit7.write_text("raise SystemExit(7)\n")
    subst = {"CKPT": ckpt, "OUT": tmp_path / "out", "FILE": _write(tmp_path / "file", "x"), "EXIT7": exit7,
             "ANN": ann, "DETS": dets, "M": _write(tmp_path / "m.json", _metrics_doc())}
    before = sorted(p.name for p in tmp_path.iterdir())
    line = run_mec(*[subst.get(a, a) for a in args]).one_error_line()
    assert needle in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_a_report_never_draws_another_iou_profile_than_the_file_holds(run_mec, tmp_path):
    doc = _metrics_doc()
    for mode in doc["modes"].values():
        mode["segm"]["AP_per_iou"] = {"APr": [0.1], "APc": [0.2], "APf": [0.3]}  # one value, not ten
    line = run_mec("report", "iou-profile", _write(tmp_path / "m.json", doc), "--out",
                   tmp_path / "p.png").one_error_line()
    assert "AP_per_iou" in line and "10 numbers" in line
    doc["iou_thresholds"] = [0.5]
    line = run_mec("report", "iou-profile", _write(tmp_path / "m.json", doc), "--out",
                   tmp_path / "p.png").one_error_line()
    assert "iou_thresholds" in line
    _no_outputs(tmp_path, "p.png", "p.svg")


@pytest.mark.parametrize("case", ["svg_sibling_is_the_input", "csv_is_the_png", "csv_is_the_svg", "hard_link"])
def test_every_file_a_report_writes_is_checked_against_every_input_first(run_mec, tmp_path, case):
    metrics = _metrics_doc()
    run = _write(tmp_path / ("fig.svg" if case == "svg_sibling_is_the_input" else "m.json"), metrics)
    before = run.read_bytes()
    if case == "hard_link":
        os.link(run, tmp_path / "linked.png")
    args = {"svg_sibling_is_the_input": ["--out", tmp_path / "fig.png"],
            "csv_is_the_png": ["--out", tmp_path / "x.png", "--csv", tmp_path / "x.png"],
            "csv_is_the_svg": ["--out", tmp_path / "x.png", "--csv", tmp_path / "x.svg"],
            "hard_link": ["--out", tmp_path / "linked.png"]}[case]
    line = run_mec("report", "stages", run, *args).one_error_line()  # one line, before the table
    assert "would overwrite the input" in line or "two outputs are the same file" in line
    assert run.read_bytes() == before
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "x.svg").exists()


@pytest.mark.parametrize("kind", ["chardev", "fifo_with_reader"])
@pytest.mark.parametrize("command", ["eval", "groups", "report-figure", "report-table", "build-coco-lt"])
def test_devices_and_pipes_are_written_in_place_never_replaced(run_mec, tmp_path, kind, command):
    import threading

    ann, dets = _inputs(tmp_path)
    target = _special(tmp_path, "chardev" if kind == "chardev" else "fifo")
    got = []
    if kind == "fifo_with_reader":
        def reader():
            with open(target, "rb") as f:
                got.append(f.read())

        thread = threading.Thread(target=reader, daemon=True)
        thread.start()
    metrics = _write(tmp_path / "m.json", _metrics_doc())
    args = {"eval": ["eval", "--results", dets, "--ann", ann, "--out", target],
            "groups": ["groups", ann, "--out", target],
            "report-figure": ["report", "stages", metrics, "--out", target],
            "report-table": ["report", "ablation", metrics, "--format", "md", "--out", target],
            "build-coco-lt": ["build-coco-lt", "--coco-ann", ann, "--keep-top", "1", "--out", target, "--manifest",
                              tmp_path / "manifest.json"]}[command]
    res = run_mec(*args)
    assert res.code == 0, res.err
    assert stat.S_ISCHR(os.stat(target).st_mode) if kind == "chardev" else stat.S_ISFIFO(os.stat(target).st_mode)
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # no temporary file beside it
    assert not list(tmp_path.glob("special-*.svg")) and not list(tmp_path.glob("special-*.png"))
    if kind == "fifo_with_reader":
        thread.join(30)
        assert got and got[0], "nothing reached the reader"
        if command in ("eval", "groups", "build-coco-lt"):
            json.loads(got[0])  # the whole JSON document went through the pipe
        elif command == "report-figure":
            assert got[0].startswith(b"\x89PNG")


@pytest.mark.parametrize("kind", ["full", "fifo_without_reader", "socket", "dir"])
def test_outputs_that_cannot_take_the_file_are_one_line(run_mec, tmp_path, kind):
    ann, dets = _inputs(tmp_path)
    target = _special(tmp_path, {"fifo_without_reader": "fifo"}.get(kind, kind))
    if kind == "fifo_without_reader":
        _unblock_after(target, "w")
    line = run_mec("eval", "--results", dets, "--ann", ann, "--out", target).one_error_line()  # no table first
    needle = {"full": "No space left on device", "fifo_without_reader": "no process is reading",
              "socket": "is a socket", "dir": "is a directory"}[kind]
    assert needle in line and str(target) in line


def test_a_symlinked_output_replaces_its_target_and_keeps_the_link(run_mec, tmp_path):
    ann, _ = _inputs(tmp_path)
    real = _write(tmp_path / "real.json", "old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    assert run_mec("groups", ann, "--out", link).code == 0
    assert link.is_symlink() and json.loads(real.read_text())["schema"] == "mec.groups/1"


def test_standard_output_as_an_output_holds_the_file_alone(tmp_path):
    """`--out /dev/stdout | jq`: the JSON alone on standard output, the tables on standard error."""
    import subprocess
    import sys

    ann, dets = _inputs(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-m", "mec_cli.cli", "eval", "--results", str(dets), "--ann", str(ann),
                           "--out", "/dev/stdout"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["schema"] == "mec.metrics/2"
    assert "results" in done.stderr and "wrote /dev/stdout" in done.stderr


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(counts=st.one_of(st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=130), max_size=40),
                        st.lists(st.integers(0, 4000), max_size=6)),
       size=st.sampled_from([[48, 64], [64, 48], [1, 1], [0, 5]]), where=st.sampled_from(["results", "annotations"]))
def test_fuzzed_masks_end_in_one_line_or_in_the_references_numbers(run_mec, tmp_path_factory, counts, size, where):
    """Any counts and size: either one line naming the file, or (a valid mask) an evaluation; never a hang, a crash of
    pycocotools or a traceback."""
    tmp = tmp_path_factory.mktemp("masks")
    seg = {"size": size, "counts": counts}
    doc = copy.deepcopy(VALID)
    det = {"image_id": 2, "category_id": 2, "score": 0.9, "segmentation": {"size": [48, 64], "counts": RLE_20x20}}
    if where == "results":
        det["segmentation"] = seg
    else:
        doc["annotations"][1]["segmentation"] = seg
    ann, dets = _write(tmp / "ann.json", doc), _write(tmp / "dets.json", [det])
    res = run_mec("eval", "--results", dets, "--ann", ann, "--iou-type", "segm", "--out", tmp / "m.json")
    if res.code != 0:
        assert ("dets.json" if where == "results" else "ann.json") in res.one_error_line()
    else:
        from mec_cli.data.masks import rle_problem

        assert rle_problem(size, counts if isinstance(counts, list) else counts.encode(), (48, 64)) is None
