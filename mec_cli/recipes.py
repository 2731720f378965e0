"""Recipe names -> MMDetection config files in ``recipes/``, and the overrides ``mec`` applies to them.

Each leaf recipe declares its short name and what it is in a ``mec_recipe = dict(...)`` literal, read
here without loading the config, so listing is instant. Names resolve by exact short name, then the
file name (with or without ``.py``), then a unique prefix of a short name; an unknown name lists the
close matches. The dataset of a recipe is swapped with ``dataset=`` (a part under
``recipes/_base_/datasets/``, which names its class count and schedule). This module holds no config
dicts of its own.

A recipe's top-level names that start with ``_`` are helpers for the recipes that inherit it (the MEC overlay
of ``recipes/_base_/models/mec.py``): :func:`load_config` drops them, as mmengine drops ``__`` names, so that
they never reach the resolved config.
"""
from __future__ import annotations

import ast
import difflib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from mec_cli.errors import MecError

DEFAULT_RECIPE = "htc_r101"


def recipes_dir() -> Path:
    """``$MEC_RECIPES`` or the ``recipes/`` folder beside the package."""
    return Path(os.environ.get("MEC_RECIPES", Path(__file__).resolve().parent.parent / "recipes"))


@dataclass(frozen=True)
class RecipeInfo:
    name: str
    file: Path
    model: str
    backbone: str
    dataset: str
    stages: int
    mec: bool
    classifier: str
    extra: Dict = field(default_factory=dict, hash=False, compare=False)

    def row(self) -> Dict:
        return {"name": self.name, "model": self.model, "backbone": self.backbone, "dataset": self.dataset,
                "stages": self.stages, "mec": self.mec, "classifier": self.classifier, "file": self.file.name,
                **self.extra}


def _read_meta(path: Path) -> Optional[Dict]:
    """The ``mec_recipe = dict(...)`` literal of a leaf recipe, or None."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "mec_recipe" for t in node.targets):
            call = node.value
            if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "dict":
                return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}
    return None


def list_recipes() -> List[RecipeInfo]:
    out = []
    for path in sorted(recipes_dir().glob("*.py")):
        meta = _read_meta(path)
        if meta is None:
            continue
        known = {k: meta.pop(k) for k in ("name", "model", "backbone", "dataset", "stages", "mec", "classifier")}
        out.append(RecipeInfo(file=path, extra=meta, **known))
    return out


def resolve_recipe(name: str) -> RecipeInfo:
    """A recipe by short name, file name or unique prefix; MecError listing close matches otherwise."""
    recipes = list_recipes()
    by_name = {r.name: r for r in recipes}
    if name in by_name:
        return by_name[name]
    for r in recipes:
        if name in (r.file.name, r.file.stem, str(r.file)):
            return r
    prefixed = [r for r in recipes if r.name.startswith(name) or r.file.stem.startswith(name)]
    if len(prefixed) == 1:
        return prefixed[0]
    candidates = [r.name for r in recipes] + [r.file.stem for r in recipes]
    close = prefixed and [r.name for r in prefixed] or difflib.get_close_matches(name, candidates, n=5, cutoff=0.4)
    hint = f"; did you mean {', '.join(close)}?" if close else "; run `mec recipes` to list them"
    what = "ambiguous recipe name" if len(prefixed) > 1 else "unknown recipe"
    raise MecError(f"{what} {name!r}{hint}")


def config_path(recipe: Optional[str] = None, config: Optional[str] = None) -> Path:
    """The config file of a recipe name or a config file path (exactly one)."""
    if (recipe is None) == (config is None):
        raise MecError("give exactly one of `recipe` (a name) or `config` (a file)")
    if config is not None:
        from mec_cli.io import check_input

        return check_input(config, "config file", missing="config file not found")
    return resolve_recipe(recipe).file


def load_config(path: Path, dataset: Optional[str] = None, cfg_options: Optional[Dict] = None):
    """Load an MMDetection config, optionally swapping its dataset part, then applying ``cfg_options``."""
    from mmengine.config import Config

    try:
        cfg = Config.fromfile(str(path))
    except KeyboardInterrupt:  # Ctrl-C and SIGTERM (mec_cli.signals) stop the command as everywhere
        raise
    except SystemExit as e:  # a config file is Python, and may end the interpreter: that is a broken config here
        raise MecError(f"cannot load config: running it called exit({e.code!r})", path) from None
    except Exception as e:  # anything a Python config file raises while it is read
        text = " ".join(str(e).split())[:300]
        raise MecError(f"cannot load config ({type(e).__name__}: {text})", path) from None
    for key in [k for k in cfg.keys() if k.startswith("_")]:  # the recipes' helpers (recipes/_base_/models/mec.py)
        cfg.pop(key)
    check_config(cfg, path)
    if dataset is not None:
        apply_dataset(cfg, dataset)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


# What mec reads of a config (a recipe, or a file passed as `--config`), and the kind of value each must be.
CONFIG_SHAPE = (("model", dict), ("model.backbone", dict), ("model.roi_head", dict), ("model.roi_head.num_stages", int),
                ("model.roi_head.bbox_head", (list, tuple, dict)), ("model.test_cfg", dict),
                ("model.test_cfg.rcnn", dict), ("train_dataloader", dict), ("train_dataloader.dataset", dict),
                ("val_dataloader", dict), ("val_dataloader.dataset", dict), ("test_dataloader", dict),
                ("test_dataloader.dataset", dict), ("train_cfg", dict), ("optim_wrapper", dict),
                ("optim_wrapper.optimizer", dict), ("param_scheduler", (list, tuple, dict)), ("default_hooks", dict),
                ("env_cfg", dict))


def check_config(cfg, path) -> None:
    """A config mec can run: a two-stage cascade detector (``model.roi_head`` with ``num_stages``, as Cascade R-CNN
    and HTC have) with train, val and test dataloaders, a schedule and the runtime parts (:data:`CONFIG_SHAPE`);
    one MecError naming the file and the first missing or malformed key otherwise."""
    for key, kind in CONFIG_SHAPE:
        node = cfg
        for part in key.split("."):
            node = node.get(part) if hasattr(node, "get") else None
        if not isinstance(node, kind) or isinstance(node, bool):
            want = getattr(kind, "__name__", "a list")
            what = "is missing" if node is None else f"is {type(node).__name__}, not {want}"
            raise MecError(f"is not a detection config mec can run: {key} {what} (mec runs Cascade R-CNN and HTC "
                           "configs such as the recipes of `mec recipes`)", path)
    if cfg.model.roi_head.num_stages < 1:
        raise MecError(f"model.roi_head.num_stages is {cfg.model.roi_head.num_stages}, not a count of stages", path)
    for split in ("train", "val", "test"):
        ds = inner_dataset(cfg[f"{split}_dataloader"].dataset)
        if not isinstance(ds.get("ann_file"), str):
            raise MecError(f"is not a detection config mec can run: {split}_dataloader's dataset has no ann_file",
                           path)


def dataset_parts() -> Dict[str, Path]:
    return {p.stem: p for p in sorted((recipes_dir() / "_base_" / "datasets").glob("*.py"))}


def apply_dataset(cfg, dataset: str) -> None:
    """Replace the dataloaders, evaluators and schedule of ``cfg`` with those of a dataset part."""
    from mmengine.config import Config

    parts = dataset_parts()
    if dataset not in parts:
        raise MecError(f"unknown dataset {dataset!r}; choose one of {', '.join(parts)}")
    part = Config.fromfile(str(parts[dataset]))
    keys = ("train_dataloader", "val_dataloader", "test_dataloader", "val_evaluator", "test_evaluator")
    sampling = cfg.train_dataloader.dataset
    for key in keys:
        cfg[key] = part[key]
    if sampling.get("type") == "ClassBalancedDataset":  # the recipe's repeat factor sampling, around the new dataset
        sampling.dataset = part.train_dataloader.dataset
        cfg.train_dataloader.dataset = sampling
    meta = part.get("mec_dataset", {})
    if meta.get("schedule"):
        apply_schedule(cfg, Path(meta["schedule"]).stem)
    if meta.get("num_classes"):
        set_num_classes(cfg, int(meta["num_classes"]))
    if meta.get("test_cfg"):  # the dataset's protocol decides how many detections the model keeps
        for stage, values in meta["test_cfg"].items():
            cfg.model.test_cfg[stage].update(values)
    cfg.mec_dataset = dict(meta)
    if "mec_recipe" in cfg:
        cfg.mec_recipe.dataset = dataset


SCHEDULE_KEYS = ("train_cfg", "param_scheduler", "optim_wrapper", "auto_scale_lr", "default_hooks", "log_processor")


def schedule_parts() -> Dict[str, Path]:
    return {p.stem: p for p in sorted((recipes_dir() / "_base_" / "schedules").glob("*.py"))}


def apply_schedule(cfg, schedule: str) -> None:
    """Replace the training schedule of ``cfg`` (loop, LR steps, optimiser, hooks) with a part of
    ``_base_/schedules``."""
    from mmengine.config import Config

    parts = schedule_parts()
    if schedule not in parts:
        raise MecError(f"unknown schedule {schedule!r}; choose one of {', '.join(parts)}")
    part = Config.fromfile(str(parts[schedule]))
    for key in SCHEDULE_KEYS:
        if key in part:
            cfg[key] = part[key]
    cfg.mec_schedule = schedule


def inner_dataset(dataset_cfg):
    """The real dataset config under wrappers such as ClassBalancedDataset."""
    while "dataset" in dataset_cfg and dataset_cfg.get("type") in ("ClassBalancedDataset", "RepeatDataset"):
        dataset_cfg = dataset_cfg["dataset"]
    return dataset_cfg


def set_num_classes(cfg, num_classes: int) -> None:
    """Set ``num_classes`` of every RoI-head component (bbox, mask and seesaw-loss heads); the RPN stays 1-class."""
    def visit(node):
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "num_classes":
                    node[k] = num_classes
                else:
                    visit(v)
        elif isinstance(node, (list, tuple)):
            for v in node:
                visit(v)

    visit(cfg.model.roi_head)


def set_data_root(cfg, data_root: str) -> None:
    """Point every dataloader and evaluator at ``data_root`` (annotation paths keep their relative part)."""
    root = data_root.rstrip("/") + "/"
    for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
        if key in cfg:
            inner_dataset(cfg[key].dataset).data_root = root
    for key in ("val_evaluator", "test_evaluator"):
        if key in cfg and isinstance(cfg[key], dict) and "ann_file" in cfg[key]:
            cfg[key].ann_file = root + inner_dataset(cfg[key.replace("evaluator", "dataloader")].dataset).ann_file


def annotation_path(cfg, split: str = "train") -> Path:
    ds = inner_dataset(cfg[f"{split}_dataloader"].dataset)
    return Path(ds.get("data_root") or "") / ds.ann_file


def label_category_ids(cfg, ann: Dict, split: str = "train") -> List[int]:
    """Category ids in the model's label order: file order for LVIS datasets, metainfo class order for COCO."""
    ds = inner_dataset(cfg[f"{split}_dataloader"].dataset)
    if ds.get("type") == "CocoDataset":
        # mmdet's CocoDataset keeps the file's category order, filtered by the metainfo class names
        classes = (ds.get("metainfo") or {}).get("classes")
        if classes:
            names = {c["name"] for c in ann["categories"]}
            missing = [c for c in classes if c not in names]
            if missing:
                raise MecError(f"category {missing[0]!r} of the recipe is not in the annotation file")
            wanted = set(classes)
            return [c["id"] for c in ann["categories"] if c["name"] in wanted]
    return [c["id"] for c in ann["categories"]]


def is_mec(cfg) -> bool:
    return "mec" in cfg.model.get("roi_head", {})


def num_classes(cfg) -> int:
    """The class count of the RoI head (its first bbox head's)."""
    heads = cfg.model.roi_head.bbox_head
    return int((heads[0] if isinstance(heads, (list, tuple)) else heads)["num_classes"])


def group_bins(cfg) -> List[int]:
    """The bins a model's frequency groups are computed with: the MEC recipe's own, else (a baseline, or an MEC
    recipe that names none) the default for one group per stage (:func:`mec_cli.data.groups.default_bins`)."""
    from mec_cli.data.groups import default_bins

    bins = cfg.model.roi_head.mec.get("bins") if is_mec(cfg) else None
    return list(bins or default_bins(int(cfg.model.roi_head.num_stages)))


def set_class_groups(cfg, groups: Sequence[int]) -> None:
    cfg.model.roi_head.mec.class_groups = [int(g) for g in groups]
