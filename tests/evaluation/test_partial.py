"""Partial evaluations (mec_cli.evaluation.partial): shards of a results file, evaluated apart and merged (in memory
or through partial files, in any order), give exactly the metrics JSON of the whole file evaluated at once; parts
that cannot be merged are refused in one line."""
import json

import numpy as np
import pytest

from mec_cli.data.groups import build_groups
from mec_cli.errors import MecError
from mec_cli.evaluation.api import evaluate_results_file
from mec_cli.evaluation.partial import evaluate_partial_files, load_partial, write_partial
from tests.evaluation.test_boundary import make_dataset


def _files(tmp_path, protocol, seed=7, shards=3, num_images=36):
    data, records = make_dataset(seed, protocol == "lvis", num_images=num_images, num_cats=7)
    rng = np.random.default_rng(seed)
    for d in records[::3]:  # ties across images and within images
        d["score"] = 0.5
    (tmp_path / "gt.json").write_text(json.dumps(data))
    (tmp_path / "all.json").write_text(json.dumps(records))
    counts = {c["id"]: int(n) for c, n in zip(data["categories"], rng.integers(1, 300, len(data["categories"])))}
    (tmp_path / "groups.json").write_text(json.dumps(build_groups(counts, [10, 100])))
    parts = []
    for s in range(shards):  # by image, each shard keeping the file's order
        part = [d for d in records if d["image_id"] % shards == s]
        (tmp_path / f"part{s}.json").write_text(json.dumps(part))
        parts.append(tmp_path / f"part{s}.json")
    return tmp_path / "gt.json", tmp_path / "all.json", parts, tmp_path / "groups.json"


@pytest.mark.parametrize("protocol,iou_types", [("lvis", ["bbox", "segm"]), ("coco", ["segm", "boundary"])])
def test_shards_merge_into_exactly_the_whole_file(protocol, iou_types, tmp_path):
    ann, whole, parts, groups = _files(tmp_path, protocol)
    one = evaluate_results_file(whole, ann, iou_types, groups_file=str(groups), per_image=True)
    many = evaluate_results_file(parts, ann, iou_types, groups_file=str(groups), per_image=True)
    assert many["modes"] == one["modes"]  # every metric, per category, per IoU threshold, and the per-image records
    assert many["groups"] == one["groups"] and many["results_file"] == [str(p) for p in parts]
    metrics = one["modes"]["results"][iou_types[0]]
    assert 0 < metrics["AP"] < 1 and sum(v > 0 for v in metrics["per_category"].values()) >= 4
    # each shard written to its own partial file (as on another machine), merged later in another order
    files = []
    for i, p in enumerate(parts):
        out = tmp_path / f"part{i}.partial.npz"
        written = write_partial(p, ann, out, iou_types, groups_file=str(groups))
        assert written["images"] > 0 and set(written["detections"]) == set(iou_types)
        files.append(out)
    merged = evaluate_partial_files(files[::-1], per_image=True)
    assert merged["modes"] == one["modes"] and merged["groups"] == one["groups"]
    assert merged["protocol"] == protocol and merged["detection_cap"] == one["detection_cap"]
    if "boundary" in iou_types:
        assert merged["boundary_dilation"] == one["boundary_dilation"]


def test_an_image_in_two_parts_is_refused(tmp_path):
    ann, whole, parts, groups = _files(tmp_path, "lvis")
    records = json.loads(whole.read_text())
    (tmp_path / "a.json").write_text(json.dumps(records[::2]))  # split by detection, not by image
    (tmp_path / "b.json").write_text(json.dumps(records[1::2]))
    with pytest.raises(MecError, match=r"image id \d+ has detections in two parts .*a.json and .*b.json"):
        evaluate_results_file([tmp_path / "a.json", tmp_path / "b.json"], ann)
    with pytest.raises(MecError, match="Fixed AP and the --analysis studies need every detection"):
        evaluate_results_file(parts, ann, analysis=True)


def test_parts_of_other_annotations_are_refused(tmp_path):
    ann, _, parts, _ = _files(tmp_path, "lvis", seed=7)
    other = tmp_path / "y"
    other.mkdir()
    ann2, _, parts2, _ = _files(other, "lvis", seed=8)
    write_partial(parts[0], ann, tmp_path / "p0.npz", ["bbox"])
    write_partial(parts2[1], ann2, tmp_path / "q1.npz", ["bbox"])
    with pytest.raises(MecError, match="differ in their annotations"):
        evaluate_partial_files([tmp_path / "p0.npz", tmp_path / "q1.npz"])
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(MecError, match="not a readable partial evaluation"):
        load_partial(tmp_path / "bad.npz")


def _model_records(data, records, rng):
    """MECMetric's records of every image, in dataset order: two modes (b rescored, with stage weights)."""
    import pycocotools.mask as mask_utils

    by_image = {im["id"]: [d for d in records if d["image_id"] == im["id"]] for im in data["images"]}
    out = []
    for image_id, dets in by_image.items():
        per_image = []
        for mode in ("a", "b"):
            n = len(dets)
            rec = {"mode": mode, "image_id": np.full(n, image_id),
                   "bbox": np.asarray([mask_utils.toBbox(d["segmentation"]) for d in dets]).reshape(-1, 4),
                   "score": np.asarray([d["score"] for d in dets], np.float64),
                   "category_id": np.asarray([d["category_id"] for d in dets], np.int64),
                   "segm": [d["segmentation"] for d in dets]}
            if mode == "b":
                rec["score"] = np.round(np.clip(rec["score"] + rng.normal(0, 0.2, n), 0, 1), 1)
                rec["stage_weights"] = rng.dirichlet(np.ones(3), n)
            per_image.append(rec)
        out.append(per_image)
    return out


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_of_a_checkpoint_evaluation_merge_into_exactly_one_process(world, tmp_path, monkeypatch):
    """MECMetric.evaluate on every rank of a simulated process group (the sampler's padding included) gives rank 0
    exactly the metrics one process computes from all the records."""
    import mec_cli.evaluation.metric as metric_module
    from mec_cli.evaluation.metric import MECMetric

    ann, _, _, groups = _files(tmp_path, "lvis", seed=9, num_images=37)  # 37: the sampler pads 2 and 3 ranks
    data = json.loads(ann.read_text())
    records = json.loads((tmp_path / "all.json").read_text())
    per_image = _model_records(data, records, np.random.default_rng(0))

    def metric():
        return MECMetric(ann_file=str(ann), metric=["bbox", "segm"], protocol="lvis", groups_file=str(groups),
                         cat_ids=[c["id"] for c in data["categories"]], per_image=True)

    one = metric()
    one_flat = one.compute_metrics(list(per_image))
    size = len(per_image)
    padded = list(range(size)) + list(range((-size) % world))  # mmengine's DefaultSampler rounds up by repeating
    assert len(padded) > size
    ranks = [metric() for _ in range(world)]
    sent, state = {}, {}

    def collect(parts, n, device, **kwargs):
        sent[state["rank"]] = parts[0]
        return [sent[r] for r in range(world)] if state["rank"] == 0 else None

    monkeypatch.setattr(metric_module, "get_dist_info", lambda: (state["rank"], world))
    monkeypatch.setattr(metric_module, "is_main_process", lambda: state["rank"] == 0)
    monkeypatch.setattr(metric_module, "collect_results", collect)
    monkeypatch.setattr(metric_module, "broadcast_object_list", lambda objs: None)
    for r in list(range(1, world)) + [0]:  # rank 0 last: it merges what the others sent
        state["rank"] = r
        ranks[r].results = [per_image[i] for i in padded[r::world]]
        flat = ranks[r].evaluate(size)
    assert flat == {f"mec/{k}": v for k, v in one_flat.items()}
    assert ranks[0].last_results == one.last_results  # every metric, per-image records and stage weights
    assert set(one.last_results["b"]) == {"bbox", "segm", "stage_weights"}
    assert all(not m.results for m in ranks)
