"""No numba compilation that a user waits for (issue 19).

After the set-up's warm-up (``python -m mec_cli.evaluation.warmup``, the last step of ``make setup``), an evaluation
must find every kernel compiled: a fresh process evaluates data the warm-up never saw, along the paths of
``mec eval`` (the CLI on results files read whole and in pieces, every iou type, both protocols, Fixed AP, the
analyses, groups; checkpoint evaluation's ``MECMetric``). By numba's JIT (``MEC_KERNELS=jit``) it fails on any
numba compile event; by the ahead-of-time build (``MEC_KERNELS=aot``, which refuses any call the build lacks) it must
not even import numba. Both are keyed by the kernels' contents, so a copy of the package elsewhere finds them too,
and writes nothing into its own tree.
"""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pycocotools.mask as mask_utils
import pytest

from mec_cli.data.groups import compute_groups
from mec_cli.evaluation import kernel_cache, kernels, warmup
from mec_cli.evaluation.numba_setup import KernelCacheLocator

ROOT = Path(__file__).resolve().parents[2]

# A child process's prelude: every numba compile event is recorded. A kernel defined here without a cache must
# show up (the listener works); the evaluations' kernels must not.
PRELUDE = """
import json, sys
import numba
from numba.core import event
compiled = []
class Log(event.Listener):
    def on_start(self, ev):
        d = ev.data["dispatcher"]
        compiled.append(f"{d.py_func.__module__}.{d.py_func.__qualname__}{tuple(ev.data['args'])}")
    def on_end(self, ev):
        pass
event.register("numba:compile", Log())

def control():
    @numba.njit
    def twice(x):
        return 2 * x
    before = len(compiled)
    assert twice(21) == 42 and len(compiled) == before + 1, compiled[before:]
    del compiled[before:]
"""


# The prelude of a child process served by the AOT build alone: nothing may import numba (the control is the build's
# own: MEC_KERNELS=aot refuses any kernel call the build lacks).
AOT_PRELUDE = """
import json, sys
compiled = []

def control():
    from mec_cli.evaluation import compiled as kernels_compiled
    info = kernels_compiled.aot_info()
    assert info["loaded"] and info["required"], info
"""


def _run(code: str, cwd: Path = ROOT, env=None, timeout: int = 600, prelude: str = PRELUDE) -> dict:
    """Run ``prelude + code`` in a fresh python; ``code`` prints one line 'RESULT <json>'."""
    res = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=cwd, env=env,
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    line = next(ln for ln in res.stdout.splitlines() if ln.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


@pytest.fixture(scope="module")
def warmed():
    """The set-up's warm-up (nothing to do when `make setup` ran it for this version of the kernels)."""
    res = subprocess.run([sys.executable, "-m", "mec_cli.evaluation.warmup"], cwd=ROOT, capture_output=True,
                         text=True, timeout=1200)
    assert res.returncode == 0, (res.stdout + res.stderr)[-4000:]
    assert kernel_cache.ready() and kernel_cache.aot_ready(), res.stdout[-2000:]


def _env(mode: str, **extra) -> dict:
    return dict(os.environ, MEC_KERNELS=mode, **extra)


def _results(val: dict, rng: np.random.Generator, copies: int = 2, clutter: int = 6, masks: bool = True) -> list:
    """Detections of the synthetic val set: jittered copies of each object (its class, then others) and clutter,
    with boxes and (``masks``) masks: compressed RLE strings rasterised from the boxes."""
    size = {im["id"]: (im["height"], im["width"]) for im in val["images"]}
    cats = [c["id"] for c in val["categories"]]
    boxes = [(a["image_id"], a["category_id"], a["bbox"]) for a in val["annotations"]]
    for im in val["images"]:
        h, w = size[im["id"]]
        for _ in range(clutter):
            bw, bh = rng.uniform(4, w / 2), rng.uniform(4, h / 2)
            boxes.append((im["id"], int(rng.choice(cats)), [rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh]))
    out = []
    for img, cat, (x, y, bw, bh) in boxes:
        h, w = size[img]
        for k in range(copies):
            jx, jy = rng.normal(0, 0.1 * bw), rng.normal(0, 0.1 * bh)
            box = [float(max(0.0, x + jx)), float(max(0.0, y + jy)), float(bw), float(bh)]
            out.append({"image_id": img, "category_id": cat if k == 0 else int(rng.choice(cats)), "bbox": box,
                        "score": float(np.round(rng.random(), 3))})
            if masks:
                x0, y0 = box[:2]
                rle = mask_utils.frPyObjects([[x0, y0, x0 + bw, y0, x0 + bw, y0 + bh, x0, y0 + bh]], h, w)[0]
                out[-1]["segmentation"] = {"size": [h, w], "counts": rle["counts"].decode()}
    return out


@pytest.mark.parametrize("mode", ["jit", "aot"])
def test_an_evaluation_after_the_warm_up_compiles_nothing(warmed, synth_data, tmp_path, mode):
    ann = synth_data / "annotations" / "lvis_v1_val.json"
    val = json.loads(ann.read_text())
    rng = np.random.default_rng(7)
    full = _results(val, rng)
    (tmp_path / "full.json").write_text(json.dumps(full))
    # masks without boxes (under 256: pycocotools' mask.area of more at once overflows, which issue 19's item 2 fixes)
    (tmp_path / "masks.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "bbox"} for r in full[:250]]))
    # boxes only, large enough (over 2 x 4 MB) to be read in pieces on the cores
    (tmp_path / "large.json").write_text(json.dumps(_results(val, rng, 40, 60, masks=False), indent=1))
    assert (tmp_path / "large.json").stat().st_size > 8 << 20
    # a second run (rescored) and shards of the first (each image in one), for --per-image, --partial/--merge, --ci
    (tmp_path / "rescored.json").write_text(json.dumps([dict(r, score=float(np.round(rng.random(), 3))) for r in full]))
    for k in range(2):
        (tmp_path / f"shard{k}.json").write_text(json.dumps([r for r in full if r["image_id"] % 2 == k]))
    train = synth_data / "annotations" / "lvis_v1_train.json"
    groups = tmp_path / "groups.json"
    code = f"""
    from pathlib import Path
    import numpy as np, torch
    from mec_cli.cli import main
    from mec_cli.evaluation import kernels
    from mec_cli.evaluation.metric import MECMetric
    tmp, ann = Path({str(tmp_path)!r}), {str(ann)!r}

    def mec(*args):
        sys.argv = ["mec", *map(str, args)]
        try:
            main()
        except SystemExit as e:
            assert e.code in (0, None), (args, e.code)

    control()
    runs = []
    mec("groups", {str(train)!r}, "--out", {str(groups)!r})
    for protocol in ("lvis", "coco"):
        for name, types, extra in (("full", "bbox,segm,boundary", ["--fixed-ap", "--analysis", "--groups",
                                                                    {str(groups)!r}]),
                                   ("full", "bbox", []), ("masks", "segm,boundary", ["--analysis"]),
                                   ("large", "bbox", ["--fixed-ap", "--analysis"])):
            out = tmp / f"m_{{protocol}}_{{name}}_{{len(runs)}}.json"
            mec("eval", "--results", tmp / f"{{name}}.json", "--ann", ann, "--iou-type", types, "--protocol",
                protocol, *extra, "--out", out)
            runs.append(json.loads(out.read_text())["modes"]["results"][types.split(",")[0]]["AP"])
    for name in ("full", "rescored"):
        mec("eval", "--results", tmp / f"{{name}}.json", "--ann", ann, "--iou-type", "bbox,segm,boundary",
            "--per-image", "--out", tmp / f"pi_{{name}}.json")
    mec("eval", "--results", tmp / "shard0.json", "--results", tmp / "shard1.json", "--ann", ann, "--per-image",
        "--out", tmp / "shards.json")
    for k in range(2):
        mec("eval", "--results", tmp / f"shard{{k}}.json", "--ann", ann, "--iou-type", "bbox,segm,boundary",
            "--partial", tmp / f"part{{k}}.npz")
    mec("eval", "--merge", tmp / "part0.npz", "--merge", tmp / "part1.npz", "--per-image", "--out", tmp / "merged.json")
    mec("report", "compare", tmp / "pi_full.json", tmp / "pi_rescored.json", "--ci", "--resamples", "20")
    # checkpoint evaluation: MECMetric with two modes (one with stage weights), boxes and masks
    val = json.loads(Path(ann).read_text())
    dets = json.loads((tmp / "full.json").read_text())
    metric = MECMetric(ann, metric=["bbox", "segm", "boundary"], protocol="lvis", analysis=True,
                       dets_per_class=100)
    cats = [c["id"] for c in val["categories"]]
    for im in val["images"]:
        rows = [d for d in dets if d["image_id"] == im["id"]]
        xywh = torch.tensor([d["bbox"] for d in rows], dtype=torch.float32).reshape(-1, 4)
        pred = {{"bboxes": torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1),
                "scores": torch.tensor([d["score"] for d in rows], dtype=torch.float32),
                "labels": torch.tensor([cats.index(d["category_id"]) for d in rows], dtype=torch.int64),
                "masks": torch.zeros((len(rows), im["height"], im["width"]), dtype=torch.bool)}}
        for k, d in enumerate(rows):
            x, y, w, h = (int(round(v)) for v in d["bbox"])
            pred["masks"][k, y:y + max(h, 1), x:x + max(w, 1)] = True
        dyn = dict(pred, stage_weights=torch.full((len(rows), 3), 1 / 3))
        metric.process(None, [{{"img_id": im["id"], "mec_modes": {{"mean_probs": pred, "dynamic": dyn}}}}])
    flat = metric.compute_metrics(metric.results)
    runs.append(flat["dynamic/bbox_AP"])
    print("RESULT " + json.dumps({{"compiled": compiled, "aps": runs, "numba": "numba" in sys.modules,
                                  "loaded": len(kernels._match_image_range.signatures)}}))
    """
    out = _run(code, env=_env(mode), prelude=PRELUDE if mode == "jit" else AOT_PRELUDE)
    assert out["compiled"] == [], "numba compiled during evaluation after the warm-up:\n" + "\n".join(out["compiled"])
    assert len(out["aps"]) == 9 and all(0 < ap <= 1 for ap in out["aps"]), out["aps"]
    if mode == "jit":
        assert out["loaded"] >= 1  # the evaluations ran the cached kernels
    else:
        assert not out["numba"] and out["loaded"] == 0  # the AOT build ran every kernel call


def test_a_copied_install_finds_the_compiled_kernels_and_writes_nothing_into_its_tree(warmed, tmp_path):
    copy = tmp_path / "elsewhere"
    shutil.copytree(ROOT / "mec_cli", copy / "mec_cli", ignore=shutil.ignore_patterns("__pycache__"))
    data = tmp_path / "data"
    data.mkdir()
    code = f"""
    from pathlib import Path
    import mec_cli
    from mec_cli.evaluation import kernel_cache, warmup
    from mec_cli.evaluation.api import evaluate_results_file
    control()
    paths = warmup.make_dataset(Path({str(data)!r}))
    doc = evaluate_results_file(paths["full"], paths["lvis"], ["bbox", "segm"], analysis=True)
    from mec_cli.evaluation import compiled as kernels_compiled
    print("RESULT " + json.dumps({{"file": mec_cli.__file__, "compiled": compiled, "dir": str(kernel_cache.cache_dir()),
                                  "aot": str(kernel_cache.aot_dir()), "AP": doc["modes"]["results"]["segm"]["AP"]}}))
    """
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MEC_KERNELS", "PYTHONDONTWRITEBYTECODE")}
    # the set-up's step in the copy (as `make setup` in a fresh clone): nothing to compile but the package's bytecode
    setup = subprocess.run([sys.executable, "-m", "mec_cli.evaluation.warmup"], cwd=copy, env=env,
                           capture_output=True, text=True, timeout=600)
    assert setup.returncode == 0 and "already compiled" in setup.stdout, setup.stdout + setup.stderr
    for module in ("evaluation/engine", "evaluation/jsonscan", "cli/eval"):
        folder, name = (copy / "mec_cli" / module).parent, (copy / "mec_cli" / module).name
        assert (folder / "__pycache__" / f"{name}.{sys.implementation.cache_tag}.pyc").is_file(), module
    for mode, prelude in (("jit", PRELUDE), ("aot", AOT_PRELUDE)):
        out = _run(code, cwd=copy, env=dict(env, MEC_KERNELS=mode), prelude=prelude)
        assert Path(out["file"]).is_relative_to(copy)
        assert out["dir"] == str(kernel_cache.cache_dir()) and out["aot"] == str(kernel_cache.aot_dir())
        assert out["compiled"] == [] and 0 < out["AP"] <= 1
    assert not [p for p in copy.rglob("*") if p.suffix in (".nbi", ".nbc", ".so")]


def test_the_check_imports_no_numba_and_says_whether_the_kernels_are_compiled(warmed, tmp_path):
    code = "from mec_cli.evaluation import warmup\nrc = warmup.main(['--check'])\nprint(rc, 'numba' in sys.modules)"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NUMBA_CACHE_DIR", None)
    run = lambda e: subprocess.run([sys.executable, "-c", "import sys\n" + code], cwd=ROOT, env=e,  # noqa: E731
                                   capture_output=True, text=True, check=True).stdout.split()[-2:]
    assert run(env) == ["0", "False"]
    assert run(dict(env, XDG_CACHE_HOME=str(tmp_path))) == ["1", "False"]  # an empty cache: not compiled


def test_the_cache_key_follows_the_kernels_contents_only(tmp_path):
    for name, text in (("a.py", "from numba import njit\n\n@njit(cache=True)\ndef f(x):\n    return x\n"),
                       ("b.py", "import numba\n\ndef g():\n    pass\n"), ("numba_setup.py", "# set-up\n")):
        (tmp_path / name).write_text(text)
    assert [p.name for p in kernel_cache.kernel_files(tmp_path)] == ["a.py", "numba_setup.py"]
    key = kernel_cache.cache_key(tmp_path)
    assert kernel_cache.KEY.match(key) and key.startswith(sys.implementation.cache_tag)
    (tmp_path / "b.py").write_text("import numba\n\ndef g():\n    return 1\n")  # no kernel in it
    assert kernel_cache.cache_key.__wrapped__(tmp_path) == key
    (tmp_path / "a.py").write_text((tmp_path / "a.py").read_text().replace("return x", "return x + 1"))
    assert kernel_cache.cache_key.__wrapped__(tmp_path) != key
    # where: NUMBA_CACHE_DIR when set, else the user's cache (XDG_CACHE_HOME, else ~/.cache)
    assert kernel_cache.cache_root({"NUMBA_CACHE_DIR": "/n"}) == Path("/n/mec")
    assert kernel_cache.cache_root({"XDG_CACHE_HOME": "/x"}) == Path("/x/mec/numba")
    assert kernel_cache.cache_root({}) == Path.home() / ".cache" / "mec" / "numba"


def test_plain_python_rules_compiled_by_the_evaluation_are_part_of_the_kernels(tmp_path):
    """data/masks.py's RLE reader is compiled by evaluation/masks.py: its changes change the key, and its kernel is
    cached in our folder like the others (it once compiled again in every fresh install)."""
    assert kernel_cache.HERE.parent / "data" / "masks.py" in kernel_cache.kernel_files()
    evaluation, data = tmp_path / "evaluation", tmp_path / "data"
    evaluation.mkdir(), data.mkdir()
    (evaluation / "numba_setup.py").write_text("# set-up\n")
    (data / "masks.py").write_text("def rule(x):\n    return x\n")
    key = kernel_cache.cache_key.__wrapped__(evaluation)
    (data / "masks.py").write_text("def rule(x):\n    return x + 1\n")
    assert kernel_cache.cache_key.__wrapped__(evaluation) != key
    from mec_cli.evaluation import masks, numba_setup

    shared = kernel_cache.HERE.parent / "data" / "masks.py"
    assert numba_setup.KernelCacheLocator.from_function(masks.rules.rle_string_check, str(shared)) is not None


def test_kernels_fall_back_to_numbas_own_cache_where_ours_cannot_be_written(tmp_path, monkeypatch):
    func, source = kernels.lookup_ids.py_func, kernels.__file__
    monkeypatch.setattr(kernel_cache, "cache_dir", lambda: tmp_path / "ok")
    locator = KernelCacheLocator.from_function(func, source)
    assert locator.get_cache_path() == str(tmp_path / "ok")
    shutil.rmtree(tmp_path / "ok")  # removed while a process runs: made again before numba saves into it
    locator.ensure_cache_path()
    assert (tmp_path / "ok").is_dir()
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(kernel_cache, "cache_dir", lambda: tmp_path / "file" / "sub")  # cannot be made
    assert KernelCacheLocator.from_function(func, source) is None  # numba then tries its own locators
    assert KernelCacheLocator.from_function(test_kernels_fall_back_to_numbas_own_cache_where_ours_cannot_be_written,
                                            __file__) is None  # another package's kernels are not ours


def test_pruning_removes_only_old_unused_key_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    root = kernel_cache.cache_root()
    old, recent = (root / f"cpython-311-numba0.68.1-{c * 16}" for c in "ab")
    for p in (old, recent, root / "not-ours", root / kernel_cache.cache_key()):
        p.mkdir(parents=True)
    os.utime(old, (0, 0))
    os.utime(root / "not-ours", (0, 0))
    assert kernel_cache.prune() == [old]
    assert recent.is_dir() and (root / "not-ours").is_dir() and (root / kernel_cache.cache_key()).is_dir()


def test_the_warm_up_data_holds_every_kind_of_segmentation(tmp_path):
    paths = warmup.make_dataset(tmp_path)
    kinds = {name: {type(r.get("segmentation", {}).get("counts") if isinstance(r.get("segmentation"), dict)
                         else r.get("segmentation")).__name__ for r in json.loads(paths[name].read_text())}
             for name in ("full", "no_box", "polygons", "list_counts", "boxes")}
    assert kinds == {"full": {"str"}, "no_box": {"str"}, "polygons": {"list"}, "list_counts": {"list"},
                     "boxes": {"NoneType"}}
    assert all("bbox" not in r for r in json.loads(paths["no_box"].read_text()))
    gt = json.loads(paths["coco"].read_text())
    assert any(a["iscrowd"] for a in gt["annotations"]) and not json.loads(paths["empty"].read_text())


def test_the_ahead_of_time_build_computes_what_the_jit_computes(warmed, synth_data, tmp_path):
    """The same evaluations (both protocols, boxes, masks and boundaries, Fixed AP, the analyses with groups:
    errors, calibration, confusion, oLRP; per-image records, shards, partial files merged, the paired bootstrap of
    ``compare --ci``) by the AOT build alone and by numba's JIT alone: every precision and recall array, every metric
    and every interval equal, bit for bit."""
    ann = synth_data / "annotations" / "lvis_v1_val.json"
    val = json.loads(ann.read_text())
    rng = np.random.default_rng(11)
    dets = _results(val, rng, copies=3)
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    (tmp_path / "rescored.json").write_text(json.dumps([dict(r, score=float(np.round(rng.random(), 3))) for r in dets]))
    for k in range(2):
        (tmp_path / f"shard{k}.json").write_text(json.dumps([r for r in dets if r["image_id"] % 2 == k]))
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps(compute_groups(synth_data / "annotations" / "lvis_v1_train.json")))
    code = f"""
    from pathlib import Path
    import numpy as np
    from mec_cli.evaluation import compiled as kernels_compiled
    from mec_cli.evaluation.api import evaluate_results_file
    from mec_cli.evaluation.bootstrap import compare_documents
    from mec_cli.evaluation.engine import Detections, GroundTruth, evaluate
    from mec_cli.evaluation.jsonscan import read_results_file
    from mec_cli.evaluation.partial import evaluate_partial_files, write_partial
    control()
    ann, tmp, groups = {str(ann)!r}, Path({str(tmp_path)!r}), {str(groups)!r}
    dets_file, out = tmp / "dets.json", str(tmp)
    docs, arrays = {{}}, {{}}
    mode = kernels_compiled.mode()
    types = ["bbox", "segm", "boundary"]

    def strip(doc):
        return {{k: v for k, v in doc.items() if k not in ("created", "results_file")}}

    for protocol in ("lvis", "coco"):
        doc = evaluate_results_file(dets_file, ann, types, protocol, groups, 50, True, per_image=True)
        docs[protocol] = strip(doc)
        other = evaluate_results_file(tmp / "rescored.json", ann, types, protocol, groups, per_image=True)
        for iou_type in ("bbox", "segm", "boundary"):
            docs[f"{{protocol}}_ci_{{iou_type}}"] = compare_documents(doc, "results", other, "results", iou_type,
                                                                     resamples=200)
        shards = [tmp / "shard0.json", tmp / "shard1.json"]
        docs[f"{{protocol}}_shards"] = strip(evaluate_results_file(shards, ann, types, protocol, groups,
                                                                   per_image=True))
        parts = [tmp / f"{{mode}}_{{protocol}}_part{{k}}.npz" for k in range(2)]
        for shard, part in zip(shards, parts):
            write_partial(shard, ann, part, types, protocol, groups)
        docs[f"{{protocol}}_merged"] = strip(evaluate_partial_files(parts, per_image=True))
        gt = GroundTruth.from_file(ann, protocol)
        dets = Detections.from_scan(*read_results_file(dets_file))
        for iou_type in ("bbox", "segm"):
            for cap in (None, 40):
                res = evaluate(gt, dets, iou_type, max_dets_per_class=cap)
                for name in ("precision", "recall", "order", "det_tp", "det_ig", "category_ap"):
                    arrays[f"{{protocol}}_{{iou_type}}_{{cap}}_{{name}}"] = getattr(res, name)
    np.savez(f"{{out}}/{{mode}}.npz", **arrays)
    print("RESULT " + json.dumps({{"docs": docs, "numba": "numba" in sys.modules}}))
    """
    aot = _run(code, env=_env("aot"), prelude=AOT_PRELUDE)
    jit = _run(code, env=_env("jit"))
    assert not aot["numba"] and jit["numba"]
    assert aot["docs"] == jit["docs"]
    lvis = aot["docs"]["lvis"]["modes"]["results"]
    assert {"errors", "calibration", "confusion", "lrp", "per_image"} <= set(lvis["segm"]), sorted(lvis["segm"])
    merged, shards = (aot["docs"][f"lvis_{k}"]["modes"]["results"]["bbox"]["AP"] for k in ("merged", "shards"))
    assert merged == shards and 0 < merged <= 1
    a, j = np.load(tmp_path / "aot.npz"), np.load(tmp_path / "jit.npz")
    assert sorted(a.files) == sorted(j.files) and len(a.files) == 2 * 2 * 2 * 6
    for name in a.files:
        assert a[name].dtype == j[name].dtype and np.array_equal(a[name], j[name]), name
    assert 0 < aot["docs"]["lvis"]["modes"]["results"]["segm"]["AP"] <= 1


def test_a_call_the_build_lacks_runs_by_the_jit_or_is_refused(warmed):
    """Argument types the build was not made for: numba's JIT runs the kernel (the same answer), or, with
    MEC_KERNELS=aot, one error naming the kernel."""
    code = """
    import numpy as np
    from mec_cli.evaluation import kernels
    values = np.array([5, 3, 9, 4], np.int64)
    values.flags.writeable = False  # a read-only array: no signature of the build
    out = np.empty(4, np.int16)  # nor an int16 output
    try:
        first_bad = kernels.lookup_ids(values, np.zeros(0, np.int64), np.array([3, 4, 5], np.int64), out)
        answer = [int(first_bad), out.tolist()]
    except RuntimeError as e:
        answer = str(e)
    print("RESULT " + json.dumps({"answer": answer, "numba": "numba" in sys.modules}))
    """
    auto = _run(code, env=_env("auto"), prelude=AOT_PRELUDE)
    assert auto == {"answer": [2, [2, 0, -1, 1]], "numba": True}
    refused = _run(code, env=_env("aot"), prelude=AOT_PRELUDE)
    assert "MEC_KERNELS=aot" in refused["answer"] and "kernels.lookup_ids" in refused["answer"]
    assert not refused["numba"]


def test_a_failed_ahead_of_time_build_is_one_line_and_the_jit_serves(tmp_path, monkeypatch):
    """No C compiler (here: CC names none): the build says so in one line before any work, leaves any build there,
    and the warm-up's record of it counts as ready (the kernels run by numba's JIT, compiled before it), so that
    ``make setup`` does not try again each time; a record of a build that has gone does not."""
    monkeypatch.setenv("CC", str(tmp_path / "no-cc"))
    before = kernel_cache.aot_ready()
    out = warmup.build_aot()
    assert out["built"] is False and out["seconds"] < 60, out
    assert out["reason"].startswith("the ahead-of-time build failed: no working C compiler"), out["reason"]
    assert str(tmp_path / "no-cc") in out["reason"] and "\n" not in out["reason"]
    assert kernel_cache.aot_ready() == before
    marker = tmp_path / "ready.json"
    monkeypatch.setattr(kernel_cache, "marker", lambda: marker)
    monkeypatch.setattr(kernel_cache, "aot_ready", lambda: False)
    marker.write_text(json.dumps({"aot": out}))
    assert kernel_cache.ready()
    marker.write_text(json.dumps({"aot": {"built": True}}))
    assert not kernel_cache.ready()
