"""Every recipe loads, every `type=` resolves in a registry, every model builds; name resolution and dry runs."""
import pytest
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from typer.testing import CliRunner

from mec_cli.cli import app
from mec_cli.errors import MecError
from mec_cli.recipes import DEFAULT_RECIPE, list_recipes, load_config, resolve_recipe

register_all_modules()
RECIPES = list_recipes()
PAPER = {"cascade_r50", "cascade_r50_baseline", "cascade_r101", "cascade_r101_baseline", "htc_r50", "htc_r50_baseline",
         "htc_r101", "htc_r101_baseline", "cascade_r50_cos", "htc_r101_cos", "cascade_r50_4stage",
         "cascade_r50_4stage_baseline", "cascade_r50_seesaw", "cascade_r50_rfs", "tiny", "tiny_baseline"}


def _types(node, out):
    if isinstance(node, dict):
        if isinstance(node.get("type"), str):
            out.add(node["type"])
        for v in node.values():
            _types(v, out)
    elif isinstance(node, (list, tuple)):
        for v in node:
            _types(v, out)
    return out


@__import__('functools').lru_cache(maxsize=None)
def _registered():
    import mmdet.registry as mr
    import mmengine.registry as er

    import mec_cli.evaluation.metric  # noqa: F401
    import mec_cli.hooks  # noqa: F401
    import mec_cli.models  # noqa: F401

    names = set()
    for mod in (mr, er):
        for reg in vars(mod).values():
            if isinstance(reg, er.Registry):
                names |= set(reg.module_dict)
                parent = reg.parent
                while parent is not None:
                    names |= set(parent.module_dict)
                    parent = parent.parent
    # roi_layer and nms types are looked up by name in mmcv.ops, not in a registry
    import mmcv.ops

    return names | {n for n in dir(mmcv.ops) if not n.startswith("_")}


def test_the_paper_models_are_all_there():
    assert PAPER <= {r.name for r in RECIPES}
    assert DEFAULT_RECIPE == "htc_r101" and resolve_recipe("htc_r101").mec
    assert not resolve_recipe("htc_r101_baseline").mec


@pytest.mark.parametrize("info", RECIPES, ids=[r.name for r in RECIPES])
def test_recipe_loads_resolves_and_builds(info):
    cfg = load_config(info.file)
    missing = sorted(t for t in _types(cfg.to_dict(), set()) if t.split(".")[-1] not in _registered())
    assert not missing, f"unregistered types in {info.file.name}: {missing}"
    assert cfg.model.roi_head.num_stages == info.stages
    assert ("mec" in cfg.model.roi_head) == info.mec
    if info.mec:
        heads = cfg.model.roi_head.bbox_head
        cfg.model.roi_head.mec.class_groups = [i % info.stages for i in range(heads[0]["num_classes"])]
        assert len(cfg.model.roi_head.mec.bins) == info.stages - 1
    cfg.model.backbone.init_cfg = None
    model = MODELS.build(cfg.model)
    fc = model.roi_head.bbox_head[0].fc_cls
    assert (type(fc).__name__ == "NormedLinear") == (info.classifier == "cosine")


def test_appendix_a1_hyperparameters():
    cfg = load_config(resolve_recipe("htc_r101").file)
    assert [s for (w, s) in cfg.train_pipeline[2]["scales"]] == list(range(640, 801, 32))
    assert all(w == 1333 for (w, s) in cfg.train_pipeline[2]["scales"])
    assert cfg.test_pipeline[1]["scale"] == (1333, 800)
    assert cfg.model.train_cfg.rpn.sampler.num == 256 and cfg.model.train_cfg.rpn.sampler.pos_fraction == 0.5
    assert [r.sampler.num for r in cfg.model.train_cfg.rcnn] == [512] * 3
    assert [r.assigner.pos_iou_thr for r in cfg.model.train_cfg.rcnn] == [0.5, 0.6, 0.7]
    opt = cfg.optim_wrapper.optimizer
    assert (opt.type, opt.lr, opt.momentum, opt.weight_decay) == ("SGD", 0.02, 0.9, 1e-4)
    warm, steps = cfg.param_scheduler
    assert warm.end == 1000 and warm.start_factor == 0.1 and steps.milestones == [16, 18]
    assert (cfg.train_cfg.max_epochs == 20 and cfg.train_dataloader.batch_size == 2
            and cfg.auto_scale_lr.base_batch_size == 16)
    assert cfg.model.roi_head.mec.lam == 0.7 and cfg.model.roi_head.mec.bins == [10, 100]
    assert cfg.model.test_cfg.rcnn.max_per_img == 300 and cfg.model.test_cfg.rcnn.score_thr == 1e-4
    rfs = load_config(resolve_recipe("cascade_r50_rfs").file)
    assert (rfs.train_dataloader.dataset.type == "ClassBalancedDataset"
            and rfs.train_dataloader.dataset.oversample_thr == 1e-3)


def test_the_train_sampler_suits_the_loop():
    # an iteration-based loop wants mmdet's InfiniteSampler; an epoch-based one a sampler that ends an epoch.
    # Every recipe as written, and both tiny and full-size recipes with every dataset part swapped in.
    cases = [(info, None) for info in RECIPES]
    cases += [(resolve_recipe(name), ds) for name in ("tiny", "cascade_r50") for ds in ("lvis_v1", "coco_lt", "synth")]
    for info, dataset in cases:
        cfg = load_config(info.file, dataset=dataset)
        sampler = cfg.train_dataloader.sampler.type
        if cfg.train_cfg.type == "IterBasedTrainLoop":
            assert sampler == "InfiniteSampler", (info.name, dataset)
        else:
            assert cfg.train_cfg.type == "EpochBasedTrainLoop" and sampler == "DefaultSampler", (info.name, dataset)


def test_dataset_part_swaps_to_coco_lt():
    cfg = load_config(resolve_recipe("cascade_r50").file, dataset="coco_lt")
    assert cfg.train_dataloader.dataset.type == "CocoDataset"
    assert cfg.train_dataloader.dataset.ann_file == "annotations/coco_lt_train.json"
    assert cfg.val_evaluator.protocol == "coco"
    assert cfg.train_cfg.max_epochs == 12 and cfg.param_scheduler[1].milestones == [8, 10]
    assert (all(h["num_classes"] == 80 for h in cfg.model.roi_head.bbox_head)
            and cfg.model.roi_head.mask_head.num_classes == 80)
    assert cfg.model.rpn_head.get("num_classes", 1) == 1


def test_names_resolve_by_prefix_file_and_fail_with_suggestions():
    assert resolve_recipe("cascade_r50_cos_b").name == "cascade_r50_cos_baseline"
    assert resolve_recipe("mec_cascade-mask-rcnn_r50_fpn_8xb2-20e_lvis-v1.py").name == "cascade_r50"
    with pytest.raises(MecError, match="did you mean"):
        resolve_recipe("cascde_r50")
    res = CliRunner().invoke(app, ["train", "--recipe", "nope_r50", "--dry-run"])
    assert res.exit_code == 2 and "unknown recipe" in res.output and "Traceback" not in res.output


def test_dry_run_prints_torchrun_with_8_processes_and_the_config():
    res = CliRunner().invoke(app, ["train", "--recipe", "htc_r101", "--gpus", "8", "--dry-run"])
    assert res.exit_code == 0, res.output
    cmd = next(line for line in res.output.splitlines() if "torchrun" in line or "torch.distributed.run" in line)
    assert "--nproc_per_node=8" in cmd and "mec_cli.worker train" in cmd
    assert "MECHTCRoIHead" in res.output and "lr=0.02" in res.output.replace(" ", "")
    slurm = CliRunner().invoke(app, ["train", "--recipe", "cascade_r50", "--slurm", "--partition", "gpu", "--gpus", "8",
                                     "--nodes", "2", "--dry-run"])
    assert slurm.exit_code == 0 and "srun -p gpu" in slurm.output and "--ntasks=16" in slurm.output


def test_missing_weights_and_checkpoints_are_one_line_errors(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "--recipe", "cascade_r50", "--gpus", "0", "--groups", str(tmp_path / "g.json")])
    assert res.exit_code == 2 and "--pretrained" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["train", "--recipe", "tiny", "--gpus", "0", "--pretrained", str(tmp_path / "r18.pth"),
                              "--dry-run"])
    assert res.exit_code == 2 and "r18.pth" in res.output and "not found" in res.output
    res = runner.invoke(app, ["train", "--recipe", "tiny", "--gpus", "0", "--resume", str(tmp_path / "x.pth"),
                              "--dry-run"])
    assert res.exit_code == 2 and "x.pth" in res.output


def test_each_dataset_part_sets_its_protocol_and_metadata():
    # COCO-LT is evaluated with the COCO protocol, so the model keeps MMDetection's COCO test settings.
    cfg = load_config(resolve_recipe("cascade_r50").file, dataset="coco_lt")
    assert cfg.model.test_cfg.rcnn.max_per_img == 100 and cfg.model.test_cfg.rcnn.score_thr == 0.05
    assert (cfg.mec_dataset.name == "coco_lt" and cfg.mec_dataset.protocol == "coco"
            and cfg.mec_recipe.dataset == "coco_lt")
    res = CliRunner().invoke(app, ["recipes", "show", "cascade_r50", "--dataset", "coco_lt"])
    assert res.exit_code == 0
    text = res.output.replace(" ", "")
    assert "max_per_img=100" in text and "score_thr=0.05" in text and "name='lvis_v1'" not in text
    # every recipe, as written, keeps the detections its own dataset part's protocol asks for
    from mmengine.config import Config

    from mec_cli.recipes import dataset_parts

    # a dataset part alone is not a runnable config (load_config refuses it): read it as mmengine does
    parts = {name: Config.fromfile(str(path)).mec_dataset for name, path in dataset_parts().items()}
    for info in RECIPES:
        cfg = load_config(info.file)
        part = parts[cfg.mec_dataset.name]
        assert cfg.mec_dataset.name == info.dataset, info.name
        for key, value in part.test_cfg.rcnn.items():
            assert cfg.model.test_cfg.rcnn[key] == value, (info.name, key)
        back = load_config(info.file, dataset="lvis_v1")
        assert back.model.test_cfg.rcnn.max_per_img == 300 and back.mec_dataset.name == "lvis_v1"


def test_max_iters_moves_the_lr_steps_with_the_recipes_own_length():
    from mec_cli.training import set_max_iters

    cfg = load_config(resolve_recipe("tiny").file)
    assert cfg.train_cfg.max_iters == 300 and cfg.param_scheduler[1].milestones == [240, 280]
    set_max_iters(cfg, 160)
    assert cfg.param_scheduler[1].milestones == [128, 149] and cfg.param_scheduler[1].end == 160
    cfg.train_cfg.max_iters, cfg.param_scheduler[1].milestones = 1000, [800, 900]  # a recipe of another length
    set_max_iters(cfg, 100)
    assert cfg.param_scheduler[1].milestones == [80, 90]


def test_appendix_a2_schedule_is_offered(tmp_path):
    from mec_cli.recipes import apply_schedule

    cfg = load_config(resolve_recipe("cascade_r50").file)
    assert cfg.param_scheduler[1].milestones == [16, 18]  # A.1, the default
    apply_schedule(cfg, "lvis_8xb2-20e_steps-12-16")
    assert cfg.param_scheduler[1].milestones == [12, 16] and cfg.train_cfg.max_epochs == 20
    res = CliRunner().invoke(app, ["train", "--recipe", "cascade_r50", "--schedule", "lvis_8xb2-20e_steps-12-16",
                                   "--gpus", "8", "--groups", str(_groups_file(tmp_path, [10, 100])), "--dry-run"])
    assert res.exit_code == 0 and "milestones=[12,16" in "".join(res.output.split())
    bad = CliRunner().invoke(app, ["train", "--recipe", "cascade_r50", "--schedule", "nope", "--dry-run"])
    assert bad.exit_code == 2 and "unknown schedule" in bad.output


def _groups_file(tmp_path, bins, count_by="instances"):
    import json

    from mec_cli.data.groups import build_groups

    doc = build_groups({c: (c * 7) % 1000 for c in range(1, 1204)}, bins, count_by)
    path = tmp_path / f"groups_{'_'.join(map(str, bins))}_{count_by}.json"
    path.write_text(json.dumps(doc))
    return path


def test_groups_with_other_bins_and_a_batch_unlike_the_papers_are_announced(tmp_path):
    runner = CliRunner()
    same = runner.invoke(app, ["train", "--recipe", "cascade_r50", "--gpus", "8", "--groups",
                               str(_groups_file(tmp_path, [10, 100])), "--dry-run"])
    assert same.exit_code == 0 and "warning" not in same.output and "total batch" not in same.output
    other = runner.invoke(app, ["train", "--recipe", "cascade_r50", "--gpus", "8", "--groups",
                                str(_groups_file(tmp_path, [5, 50])), "--dry-run"])
    text = " ".join(other.output.split())
    assert other.exit_code == 0 and "bins [5, 50]" in text and "bins [10, 100]" in text
    images = runner.invoke(app, ["train", "--recipe", "cascade_r50", "--gpus", "8", "--dry-run",
                                 "--groups", str(_groups_file(tmp_path, [10, 100], "images"))])
    assert images.exit_code == 0 and "by images" in " ".join(images.output.split())
    one = runner.invoke(app, ["train", "--recipe", "cascade_r50", "--gpus", "1", "--groups",
                              str(_groups_file(tmp_path, [10, 100])), "--dry-run"])
    text = " ".join(one.output.split())  # notes wrap at the terminal width
    assert one.exit_code == 0 and "total batch 2 (1 x 2) differs from the recipe's 16" in text
    assert "--auto-scale-lr scales it linearly to 0.0025" in text
    scaled = runner.invoke(app, ["train", "--recipe", "cascade_r50", "--gpus", "1", "--auto-scale-lr", "--dry-run",
                                 "--groups", str(_groups_file(tmp_path, [10, 100]))])
    assert scaled.exit_code == 0 and "0.02 -> 0.0025" in " ".join(scaled.output.split())


def test_a_group_without_categories_is_refused_before_training(tmp_path, run_mec):
    """Too little data for the bins: no category reaches 100 training instances, so the 'frequent' group (stage 3's
    expertise) is empty. One line naming the annotations, exit 2, before any model is built."""
    from mec_cli.data.synth import SynthConfig, make_synthetic_dataset

    make_synthetic_dataset(SynthConfig(out=tmp_path / "d", seed=0, train_images=8, val_images=2, image_size=64))
    line = run_mec("train", "--recipe", "tiny", "--gpus", "0", "--data-root", str(tmp_path / "d"),
                   "--work-dir", str(tmp_path / "w"), "--dry-run").one_error_line()
    assert "lvis_v1_train.json" in line and "group 'frequent' holds none of the model's" in line, line
    assert "choose bins" in line
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())
