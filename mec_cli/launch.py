"""The launch layer: one path from a recipe to a running worker, for `mec train` and `mec eval --checkpoint` alike.

Every run takes the same steps, whichever command starts it:

1. :func:`resolve_config`: the recipe (or config file) with its dataset part, data root and overrides applied;
2. :func:`fit_classes`: the model's class count (and names) fitted to the annotation file it learns or scores;
3. :func:`resolve_groups` and :func:`apply_groups`: the frequency groups, read from a groups.json or computed from
   the training annotations with the recipe's bins, in the model's label order;
4. :func:`choose_backend`: gloo and a device-less DDP wrapper on the CPU, the config's own backend on GPUs;
5. :func:`plan` and :func:`run_worker`: the worker (:mod:`mec_cli.worker`) told its task explicitly, run in this
   process when there is one process, else started by the torchrun or srun command line built here as data.

What only training needs (pretrained weights, schedule, resume) is in :mod:`mec_cli.training`; what only
evaluation needs (scoring modes, the metric) in :mod:`mec_cli.evaluation.checkpoint`. Importing this module is
cheap (no torch, no mm*), so the CLI takes its option defaults from :class:`LaunchOptions`.
"""
from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

from mec_cli.errors import MecError, check_number
from mec_cli.worker import TASKS

if TYPE_CHECKING:
    from mec_cli.data.groups import GroupSpec

WORKER_MODULE = "mec_cli.worker"


@dataclass
class LaunchOptions:
    """What a training and an evaluation run share: the config to resolve, its groups, and where the worker runs.

    ``gpus`` is per node (0 runs on the CPU, with ``procs`` gloo processes); more than one process in all, or
    ``slurm``, starts the worker through torchrun or srun.
    """

    recipe: Optional[str] = None
    config: Optional[str] = None
    dataset: Optional[str] = None
    data_root: Optional[str] = None
    cfg_options: Dict = field(default_factory=dict)
    groups: Optional[str] = None  # groups.json; None: computed from the training annotations
    gpus: int = 1
    procs: int = 1
    nodes: int = 1
    node_rank: int = 0
    master_addr: str = "127.0.0.1"
    master_port: int = 29500
    slurm: bool = False
    partition: Optional[str] = None
    job_name: Optional[str] = None
    cpus_per_task: int = 5
    time: Optional[str] = None
    qos: Optional[str] = None
    srun_args: List[str] = field(default_factory=list)
    own_process: bool = False  # run even one process's worker as a child, so that none of its state stays here

    def validate(self) -> None:
        """Refuse impossible launch options before any work starts (one MecError naming the option)."""
        check_number("gpus", self.gpus, 0, integer=True)
        check_number("procs", self.procs, 1, integer=True)
        check_number("nodes", self.nodes, 1, integer=True)
        check_number("node_rank", self.node_rank, 0, self.nodes - 1, integer=True)
        check_number("master_port", self.master_port, 1, 65535, integer=True)
        check_number("cpus_per_task", self.cpus_per_task, 1, integer=True)

    @property
    def world_size(self) -> int:
        per_node = self.gpus if self.gpus > 0 else self.procs
        return max(1, per_node) * max(1, self.nodes)

    @property
    def distributed(self) -> bool:
        return self.slurm or self.world_size > 1

    @property
    def on_cpu(self) -> bool:
        return self.gpus == 0

    def check_devices(self) -> None:
        """Refuse more GPUs than CUDA sees here; other nodes' GPUs (several nodes, Slurm) cannot be counted."""
        if self.slurm or self.nodes > 1:
            return
        check_devices(self.gpus)


def check_devices(gpus: int) -> None:
    """Refuse more GPUs than CUDA sees (none on a CPU machine) before anything starts."""
    if gpus <= 0:
        return
    import torch

    seen = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus > seen:
        where = f"CUDA sees {seen}" if seen else "no CUDA device is visible (0 runs on the CPU)"
        raise MecError(f"asks for {gpus} GPUs, but {where}", option="gpus")


def parse_cfg_options(items: Sequence[str]) -> Dict:
    """``k=v`` pairs as mmengine's DictAction reads them (v parsed as a Python literal where it is one)."""
    import ast

    out: Dict = {}
    for item in items or []:
        if "=" not in item:
            raise MecError(f"takes key=value pairs, got {item!r}", option="cfg_options")
        key, value = item.split("=", 1)
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


# ---- 1. config ------------------------------------------------------------------------------------------------
def resolve_config(opts: LaunchOptions) -> Tuple[object, Path, str]:
    """The config of ``opts.recipe`` or ``opts.config``, with the dataset part, the data root and ``cfg_options``
    applied in that order; returns (config, its file, the recipe's short name or the file's stem)."""
    from mec_cli import recipes

    path = recipes.config_path(opts.recipe, opts.config)
    cfg = recipes.load_config(path, dataset=opts.dataset)
    name = cfg.get("mec_recipe", {}).get("name", path.stem)
    if opts.data_root:
        recipes.set_data_root(cfg, opts.data_root)
    if opts.cfg_options:
        check_cfg_options(cfg, opts.cfg_options)
        cfg.merge_from_dict(opts.cfg_options)
        try:
            recipes.check_config(cfg, path)
        except MecError as e:  # an override took away something mec needs (model.roi_head=None)
            raise MecError(f"leaves a config mec cannot run: {e.message.split(': ', 1)[-1]}",
                           option="cfg_options") from None
    return cfg, path, name


def check_cfg_options(cfg, options: Dict) -> None:
    """Every key of ``options`` (``a.b.0.c``, as mmengine's ``merge_from_dict`` reads it) must name a key the config
    has: an override of a key that does not exist would add it silently, and the run would fail later or ignore it.
    One MecError naming the first missing part and the keys beside it."""
    import difflib

    for key in options:
        node, walked = cfg, []
        for part in str(key).split("."):
            if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
            elif hasattr(node, "keys") and part in node.keys():
                node = node[part]
            else:
                where = ".".join(walked)
                if hasattr(node, "keys"):
                    known = sorted(str(k) for k in node.keys())
                    close = difflib.get_close_matches(part, known, n=3)
                    more = ", ..." if len(known) > 12 else ""
                    hint = (f"; did you mean {', '.join(close)}?" if close else
                            f"; {where or 'the top level'} has {', '.join(known[:12])}{more}")
                elif isinstance(node, (list, tuple)):
                    hint = f"; {where} is a list of {len(node)}"
                else:
                    hint = f"; {where} is a value ({type(node).__name__}), not a section"
                missing = ".".join(walked + [part])
                raise MecError(f"names {key!r}, but the config has no key {missing!r}{hint} (an override sets an "
                               "existing key; to add keys, write a config file that inherits the recipe and pass it "
                               "with `config`)", option="cfg_options")
            walked.append(part)
        problem = _override_type_problem(node, options[key])
        if problem:
            raise MecError(f"sets {key!r} to {str(options[key])[:60]!r}, but {problem}", option="cfg_options")


_TYPE_WORDS = ((bool, "true or false"), (int, "an integer"), (float, "a number"), (str, "a string"),
               ((list, tuple), "a list"), (dict, "a dict"))


def _override_type_problem(current, value):
    """Why ``value`` cannot replace the config's ``current`` value (another kind of value: a string where the recipe
    has an integer), or None. None replaces anything, and anything replaces None; an integer may replace a number."""
    if current is None or value is None:
        return None
    want = next((name for kind, name in _TYPE_WORDS if isinstance(current, kind)), None)
    if want is None:
        return None
    fits = (isinstance(value, bool) if isinstance(current, bool) else
            type(value) is int if isinstance(current, int) else
            isinstance(value, (int, float)) and not isinstance(value, bool) if isinstance(current, float) else
            isinstance(value, str) if isinstance(current, str) else
            isinstance(value, (list, tuple)) if isinstance(current, (list, tuple)) else
            isinstance(value, dict))
    shown = "" if isinstance(current, (dict, list, tuple)) else f" ({str(current)[:60]!r})"
    return None if fits else f"the config holds {want} there{shown}"


# ---- 2. classes -----------------------------------------------------------------------------------------------
def fit_classes(cfg, ann: Optional[Dict], split: str, notes: List[str]) -> None:
    """Set the class count (and the class names) of ``cfg`` to those of ``ann``, the ``split`` annotations, when
    they differ from the recipe's. COCO datasets select their classes by the metainfo names and keep them."""
    from mec_cli import recipes

    if ann is None or recipes.inner_dataset(cfg[f"{split}_dataloader"].dataset).get("type") == "CocoDataset":
        return
    cats = ann.get("categories", [])
    if cats and len(cats) != recipes.num_classes(cfg):
        recipes.set_num_classes(cfg, len(cats))
        names = tuple(c["name"] for c in cats)
        for key in ("train_dataloader", "val_dataloader", "test_dataloader"):
            recipes.inner_dataset(cfg[key].dataset).metainfo = dict(classes=names)
        notes.append(f"note: {recipes.annotation_path(cfg, split)} has {len(cats)} categories; the model was set to "
                     f"{len(cats)} classes")


# ---- 3. groups ------------------------------------------------------------------------------------------------
def resolve_groups(cfg, groups_file: Optional[str], train_ann: Optional[Dict]) -> Optional["GroupSpec"]:
    """The frequency groups of a run: read from ``groups_file``, else computed from the training annotations
    ``train_ann`` (by instances, with the recipe's bins: :func:`mec_cli.recipes.group_bins`); None without either."""
    from mec_cli import recipes
    from mec_cli.data.annotations import category_counts
    from mec_cli.data.groups import build_groups, groups_from_doc, load_groups
    from mec_cli.io import sha256_file

    if groups_file:
        return load_groups(groups_file)
    if train_ann is None:
        return None
    path = recipes.annotation_path(cfg, "train")
    return groups_from_doc(build_groups(category_counts(train_ann), recipes.group_bins(cfg), "instances", str(path),
                                        sha256_file(path)))


def apply_groups(cfg, spec: "GroupSpec", category_ids: Sequence[int], source) -> None:
    """Give the MEC head the group of each class, ``category_ids`` being the model's label order.

    A head trained with the multi-expert loss makes stage k the expert of group k, so it needs one group per stage
    and at least one class in each: anything else is a MecError naming ``source`` (the groups file, or the
    annotations they were computed from), before a model is built."""
    groups = spec.class_groups(category_ids, source)
    roi = cfg.model.roi_head
    if roi.get("mec", {}).get("loss", False):
        stages = int(roi.num_stages)
        if spec.num_groups != stages:
            raise MecError(f"has {spec.num_groups} groups but the model has {stages} stages (MEC makes each stage the "
                           "expert of one group)", source)
        used = set(groups)
        empty = [name for g, name in enumerate(spec.names) if g not in used]
        if empty:
            raise MecError(f"group {empty[0]!r} holds none of the model's {len(groups)} categories with bins "
                           f"{spec.bins} (by training {spec.count_by}); MEC makes each stage the expert of one "
                           "group, so each needs at least one: choose bins that split these categories, or use more "
                           "training data", source)
    roi.mec.class_groups = groups


# ---- 4. backend -----------------------------------------------------------------------------------------------
def choose_backend(cfg, opts: LaunchOptions) -> None:
    """On the CPU: gloo, and DDP without device ids (:class:`mec_cli.models.MECDistributedDataParallel`); on GPUs the
    config's own backend (nccl in every recipe). A ``timeout`` of the config's ``dist_cfg`` (seconds a collective
    waits for the other ranks) is kept either way."""
    if opts.on_cpu:
        timeout = (cfg.env_cfg.get("dist_cfg") or {}).get("timeout")
        cfg.env_cfg.dist_cfg = dict(backend="gloo", **({"timeout": timeout} if timeout is not None else {}))
        cfg.model_wrapper_cfg = dict(type="MECDistributedDataParallel", broadcast_buffers=False,
                                     find_unused_parameters=False)


# ---- 5. the worker --------------------------------------------------------------------------------------------
@dataclass
class Launch:
    """How a resolved config runs: the worker's task, the command line that starts it, and whether it runs here."""

    task: str  # 'train' or 'test' (mec_cli.worker.TASKS)
    command: List[str]  # python, torchrun or srun; for one process, the command the worker would have alone
    in_process: bool  # one process: the worker runs in this process (the command is only shown)
    env: Dict[str, str] = field(default_factory=dict)  # set for the command (srun passes it on to every task)


def plan(opts: LaunchOptions, task: str, config_file: Path, out: Optional[Path] = None) -> Launch:
    """The launch of ``task`` on ``config_file``: in this process for one process (as a child process with
    ``own_process``), else through torchrun or srun (``out``: where rank 0 of a test writes its results)."""
    if task not in TASKS:
        raise ValueError(f"unknown worker task {task!r}; expected one of {', '.join(TASKS)}")
    worker = ["-m", WORKER_MODULE, task, str(config_file)] + (["--out", str(out)] if out is not None else [])
    if opts.slurm:
        # the ranks meet at the first node of the allocation on this port (mmengine's Slurm set-up reads it)
        return Launch(task, _srun(opts) + [sys.executable, "-u"] + worker + ["--launcher", "slurm"], in_process=False,
                      env={"MASTER_PORT": str(opts.master_port)})
    if opts.distributed:
        per_node = opts.gpus if opts.gpus > 0 else opts.procs
        torchrun = Path(sys.executable).with_name("torchrun")
        launcher = [str(torchrun)] if torchrun.is_file() else [sys.executable, "-m", "torch.distributed.run"]
        command = launcher + [f"--nnodes={max(1, opts.nodes)}", f"--node_rank={opts.node_rank}",
                              f"--master_addr={opts.master_addr}", f"--master_port={opts.master_port}",
                              f"--nproc_per_node={per_node}"]
        return Launch(task, command + worker + ["--launcher", "pytorch"], in_process=False)
    return Launch(task, [sys.executable] + worker, in_process=not opts.own_process)


def _srun(opts: LaunchOptions) -> List[str]:
    if not opts.partition:
        raise MecError("is needed to launch through Slurm", option="partition")
    per_node = opts.gpus if opts.gpus > 0 else max(1, opts.procs)  # one task per GPU, or per CPU process (gloo)
    cmd = ["srun", "-p", opts.partition, f"--job-name={opts.job_name or 'mec'}"]
    cmd += [f"--gres=gpu:{per_node}"] if opts.gpus > 0 else []
    cmd += [f"--ntasks={per_node * max(1, opts.nodes)}", f"--ntasks-per-node={per_node}",
            f"--cpus-per-task={opts.cpus_per_task}", "--kill-on-bad-exit=1"]
    if opts.time:
        cmd.append(f"--time={opts.time}")
    if opts.qos:
        cmd.append(f"--qos={opts.qos}")
    return cmd + list(opts.srun_args)


def run_worker(launch: Launch, config_file: Path, out: Optional[Path] = None,
               env: Optional[Dict[str, str]] = None) -> Optional[Dict]:
    """Run the worker: in this process, or as ``launch.command`` (SIGINT and SIGTERM passed on to it).

    Returns the task's results: a test's per-mode metrics (read from ``out`` when a child process wrote them);
    None for training.
    """
    import os

    from mec_cli import worker
    from mec_cli.signals import run_child

    if launch.in_process:
        return worker.run(launch.task, str(config_file), "none")
    code = run_child(launch.command, env={**os.environ, **launch.env, **(env or {})})
    if code != 0 or (out is not None and not Path(out).is_file()):
        raise MecError(f"{TASKS[launch.task]} exited with code {code}: {shlex.join(launch.command)}")
    if out is None:
        return None
    from mec_cli.io import read_json

    return read_json(out)
