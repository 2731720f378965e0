"""Full-size train and test steps of the paper's recipes, MEC against its baseline, on a GPU (or small, on the CPU).

    python benchmarks/bench_gpu.py --out benchmarks/results/gpu.json              # the four pairs, 1333x800, fp32
    python benchmarks/bench_gpu.py --recipes cascade_r50 --amp                    # one pair in mixed precision
    python benchmarks/bench_gpu.py --device cpu --size 256,384                    # the CPU, at a small size
    python benchmarks/bench_gpu.py --recipes cascade_r50 --memory-only            # only the peak-memory processes

Each pair is a recipe and its ``_baseline`` (cascade_r50, cascade_r101, htc_r50, htc_r101 by default; ``tiny`` for
a smoke test), built from our recipes for LVIS v1's 1,203 classes with the frequency groups of LVIS v1's training
counts (the package's ``lvis_v1`` profile, the recipe's bins), random weights (no pretrained backbone) and the
same weights in both models (the MEC model loads the baseline's state dict: MEC adds no parameter). A batch is 2
images of ``--size`` W,H (default 1333,800, mmdet's scale) with 12 boxes and masks each, random pixels and labels,
the same batch for every step. On the CPU the defaults are lighter (the same code, less work): 128 RoIs per image and
stage instead of the recipes' 512, 100 proposals per image instead of 1,000, 2 timed rounds after 1 warm-up, and
``--rois``/``--proposals`` give the recipes' own.

* train step: mmengine's ``model.train_step`` (data preprocessor, forward, losses, backward, SGD step through the
  recipe's optimizer wrapper; ``AmpOptimWrapper`` with ``--amp``, as ``mec train --amp``). The learning rate is
  ``--lr`` (0 by default): the step does the same work, and both models keep the same weights and see the same
  proposals and sampled RoIs (the sampler is seeded per step), so the two time the same workload.
* test step: ``model.test_step`` under no_grad: mmdet's own CascadeRoIHead/HTCRoIHead (the baseline recipe)
  against the MEC head scoring the recipe's mode (dynamic ensemble after group alignment), and the MEC head scoring
  all 11 modes (``mec eval --per-stage``) in one pass against that single mode.
* the steps of the models alternate in every round after the warm-ups, and each time is the median over rounds
  (min and max kept in the JSON), so that a slower spell of the machine reaches all alike;
* peak memory: each model in a process of its own (``--memory-of``), test steps first, then train steps, the peak
  reset before each: on CUDA ``torch.cuda.max_memory_allocated``; on the CPU the process's peak RSS, which is a
  high-water mark of the whole process (imports included), so only its differences between models mean much;
* host synchronisations in one step of each model: on CUDA the warnings of ``torch.cuda.set_sync_debug_mode``; on the
  CPU the operations that would synchronise on a GPU (``.item()``, ``nonzero``, boolean-mask indexing, ``unique``,
  ...), counted by a dispatch mode (:class:`HostSyncCounter`; reads by ``.tolist()``/``.cpu()`` are invisible there).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# mmdet's mask head copies a tensor with new_tensor at every test step (as in mec_cli.worker)
warnings.filterwarnings("ignore", message="To copy construct from a tensor", category=UserWarning)

DEFAULT_RECIPES = ("cascade_r50", "cascade_r101", "htc_r50", "htc_r101")
CPU_ROIS, CPU_PROPOSALS = 128, 100  # the CPU's defaults: the same code at a fraction of the recipes' work
LVIS_CLASSES = 1203
IMAGES, INSTANCES = 2, 12
REPO = Path(__file__).resolve().parents[1]


# ---- host synchronisations ------------------------------------------------------------------------------------
class HostSyncCounter(TorchDispatchMode):
    """Counts the operations that make the host wait for a GPU, as they pass the dispatcher (on any device).

    ``counts`` maps each such operation to its calls: ``_local_scalar_dense`` (``.item()``, ``float(t)``, ``if t``),
    ``nonzero``, ``masked_select``, indexing with a boolean mask, ``unique``, ``repeat_interleave`` with tensor
    repeats. Reads through ``.tolist()``, ``.cpu()`` or ``.numpy()`` of a CPU tensor do not pass the dispatcher.
    """

    ALWAYS = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique", "_unique2", "unique_dim",
              "unique_consecutive", "unique_dim_consecutive"}

    def __init__(self):
        super().__init__()
        self.counts: Dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def _syncs(self, func, args, kwargs) -> Optional[str]:
        name = func.overloadpacket.__name__
        if name in self.ALWAYS:
            return name
        if name in ("index", "index_put", "index_put_", "_index_put_impl_"):
            indices = args[1] if len(args) > 1 else kwargs.get("indices", [])
            if any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or []):
                return f"{name}[bool mask]"
        if name == "repeat_interleave" and isinstance(args[0] if args else None, torch.Tensor) and (
                kwargs.get("output_size") is None) and (len(args) > 1 and isinstance(args[1], torch.Tensor)
                                                        or isinstance(args[0], torch.Tensor) and len(args) == 1):
            return "repeat_interleave[tensor repeats]"
        return None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = self._syncs(func, args, kwargs)
        if name:
            self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **kwargs)


def count_host_syncs(fn: Callable[[], object], device: torch.device) -> Dict:
    """The host synchronisations of one call of ``fn``: {'total': n, 'by_op': {...}} (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                fn()
            finally:
                torch.cuda.set_sync_debug_mode("default")
        msgs = [str(w.message) for w in seen if "synchronizing" in str(w.message)]
        by_op: Dict[str, int] = {}
        for m in msgs:
            key = m.split("called a synchronizing CUDA operation")[0].strip() or "cuda sync"
            by_op[key] = by_op.get(key, 0) + 1
        return {"total": len(msgs), "by_op": by_op, "how": "torch.cuda.set_sync_debug_mode"}
    counter = HostSyncCounter()
    with counter:
        fn()
    return {"total": counter.total, "by_op": dict(sorted(counter.counts.items())), "how": "HostSyncCounter"}


# ---- models and data ------------------------------------------------------------------------------------------
def pair_of(recipe: str) -> Tuple[str, str]:
    """'cascade_r50' -> ('cascade_r50_baseline', 'cascade_r50'): the baseline recipe and the MEC recipe."""
    mec = recipe[:-len("_baseline")] if recipe.endswith("_baseline") else recipe
    return f"{mec}_baseline", mec


def model_config(recipe: str, rois: Optional[int] = None, proposals: Optional[int] = None):
    """The recipe's config for LVIS v1's classes and groups, with random (not pretrained) backbone weights; ``rois``
    and ``proposals`` replace the RoIs each stage samples per image in training and the RPN's proposals per image
    at test time (smoke tests: the defaults are the recipe's)."""
    from mec_cli import launch, recipes
    from mec_cli.data.groups import compute_groups, groups_from_doc
    from mec_cli.data.profiles import load_profile

    cfg = recipes.load_config(recipes.resolve_recipe(recipe).file)
    cfg.model.backbone.init_cfg = None
    if rois is not None:
        stages = cfg.model.train_cfg.rcnn
        for stage in stages if isinstance(stages, (list, tuple)) else [stages]:
            stage.sampler.num = rois
    if proposals is not None:
        cfg.model.test_cfg.rpn.max_per_img = proposals
    if recipes.num_classes(cfg) != LVIS_CLASSES:
        recipes.set_num_classes(cfg, LVIS_CLASSES)
    if recipes.is_mec(cfg):
        spec = groups_from_doc(compute_groups("lvis_v1", "instances", recipes.group_bins(cfg)))
        ids = sorted(c["id"] for c in load_profile("lvis_v1")["categories"])
        launch.apply_groups(cfg, spec, ids, "profile:lvis_v1")
    return cfg


def build_model(cfg, device: torch.device, seed: int = 0):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.logging import MMLogger

    import mec_cli.models  # noqa: F401  (registers the MEC heads and losses)

    register_all_modules()
    if not MMLogger.check_instance_created("bench_gpu"):  # init_weights logs every parameter at INFO
        MMLogger.get_instance("bench_gpu", log_level="WARNING")
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.to(device)


def make_batch(width: int, height: int, seed: int = 0, with_gt: bool = True) -> Dict:
    """2 images of height x width, random pixels; with ``with_gt``, 12 boxes with rectangular masks and random LVIS
    labels each. The data preprocessor moves them to the model's device, as a data loader's batch."""
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for i in range(IMAGES):
        inputs.append(torch.randint(0, 256, (3, height, width), generator=g, dtype=torch.uint8))
        ds = DetDataSample(metainfo=dict(img_id=i, img_shape=(height, width), ori_shape=(height, width),
                                         scale_factor=(1.0, 1.0), flip=False, flip_direction=None))
        if with_gt:
            wh = torch.stack([torch.rand(INSTANCES, generator=g) * 0.45 * width + 0.05 * width,
                              torch.rand(INSTANCES, generator=g) * 0.45 * height + 0.05 * height], 1)
            xy = torch.rand(INSTANCES, 2, generator=g) * (torch.tensor([width, height]) - wh)
            boxes = torch.cat([xy, xy + wh], 1).floor()
            masks = torch.zeros(INSTANCES, height, width, dtype=torch.uint8)
            for k, (x0, y0, x1, y1) in enumerate(boxes.int().tolist()):
                masks[k, y0:y1, x0:x1] = 1
            ds.gt_instances = InstanceData(bboxes=boxes, labels=torch.randint(0, LVIS_CLASSES, (INSTANCES,),
                                                                                generator=g),
                                           masks=BitmapMasks(masks.numpy(), height, width))
        samples.append(ds)
    return {"inputs": inputs, "data_samples": samples}


def optim_wrapper(model, cfg, amp: bool, lr: float):
    from mmengine.optim import build_optim_wrapper

    wrapper = copy.deepcopy(cfg.optim_wrapper)
    wrapper.optimizer.lr = lr
    if amp:
        wrapper.type = "AmpOptimWrapper"
        wrapper.loss_scale = "dynamic"
    return build_optim_wrapper(model, wrapper)


class Steps:
    """One model's train and test steps on fixed batches."""

    def __init__(self, model, cfg, device: torch.device, size: Tuple[int, int], amp: bool, lr: float):
        self.model, self.device, self.amp = model, device, amp
        self.wrapper = optim_wrapper(model, cfg, amp, lr)
        self.train_batch = make_batch(*size, seed=1)
        self.test_batch = make_batch(*size, seed=2, with_gt=False)
        self.step = 0

    def train(self) -> None:
        batch = copy.deepcopy(self.train_batch)  # the preprocessor pads the masks of its samples in place
        torch.manual_seed(self.step)  # mmdet's RoI sampler draws from the global generator: the same RoIs each round
        self.step += 1
        self.model.train()
        losses = self.model.train_step(batch, self.wrapper)
        if not torch.isfinite(losses["loss"]):
            raise RuntimeError(f"the train step's loss is {float(losses['loss'])}")

    def test(self, modes: Optional[List[str]] = None) -> None:
        """A test step; ``modes``: every mode a MEC head scores in that pass (None: its test_cfg's one)."""
        head_cfg = self.model.roi_head.test_cfg
        saved = head_cfg.get("modes")
        if modes is not None:
            head_cfg.modes = modes
        self.model.eval()
        try:
            with torch.no_grad(), torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                self.model.test_step(self.test_batch)
        finally:
            if modes is not None:
                head_cfg.modes = saved


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(fns: Dict[str, Callable[[], None]], device: torch.device, reps: int, warmup: int) -> Dict:
    """Each function's times (ms), the functions called in turn in every round: {name: {median, min, max, n}}."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            synchronize(device)
            t = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(1e3 * (time.perf_counter() - t))
    return {name: {"median_ms": statistics.median(ts), "min_ms": min(ts), "max_ms": max(ts), "n": len(ts)}
            for name, ts in times.items()}


# ---- peak memory, each model in its own process ---------------------------------------------------------------
def _peak_reset(device: torch.device) -> None:
    synchronize(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:  # Linux: "5" resets the process's peak RSS (VmHWM) to its current RSS
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")


def _peak_mib(device: torch.device) -> float:
    synchronize(device)
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2 ** 20
    # VmHWM, not getrusage's ru_maxrss: that one keeps the parent's peak across fork and exec
    with open("/proc/self/status") as f:
        kib = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
    return kib / 1024


def memory_of(recipe: str, args) -> Dict:
    """Peak memory of ``recipe``'s test steps (its own mode; for MEC also all 11 modes) and train steps, in this
    process alone (``--memory-of``)."""
    from mec_cli.ops.modes import all_modes

    device = torch.device(args.device)
    cfg = model_config(recipe, args.rois, args.proposals)
    model = build_model(cfg, device)
    steps = Steps(model, cfg, device, args.size, args.amp, args.lr)
    out = {"recipe": recipe, "unit": "MiB", "measure": "max_memory_allocated" if device.type == "cuda" else
           "peak RSS (VmHWM) of the process, reset before each task"}
    runs = [("test", lambda: steps.test())]
    if "mec" in cfg.model.roi_head:
        modes = all_modes(int(cfg.model.roi_head.num_stages))
        runs.append(("test_all_modes", lambda: steps.test(modes)))
    runs.append(("train", steps.train))
    for name, fn in runs:
        _peak_reset(device)
        for _ in range(args.memory_steps):
            fn()
        out[f"{name}_peak_mib"] = round(_peak_mib(device), 1)
    return out


def memory_in_children(recipes: Dict[str, str], args) -> Dict:
    """{key: :func:`memory_of` the recipe} for every ``recipes`` item, each in a process of its own (run at the same
    time: each measures only itself)."""
    import mec_cli

    here = str(Path(mec_cli.__file__).resolve().parents[1])  # the children import the mec_cli this process imported
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    children = {}
    for key, recipe in recipes.items():
        cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-of", recipe, "--device", args.device, "--size",
               f"{args.size[0]},{args.size[1]}", "--lr", str(args.lr), "--memory-steps", str(args.memory_steps)]
        cmd += [f"--{k}={getattr(args, k)}" for k in ("rois", "proposals") if getattr(args, k) is not None]
        cmd += ["--amp"] if args.amp else []
        children[key] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out = {}
    try:
        for key, child in children.items():
            stdout, stderr = child.communicate(timeout=args.child_timeout)
            lines = stdout.strip().splitlines()
            if child.returncode != 0 or not lines:
                raise RuntimeError(f"the memory process of {recipes[key]} failed (exit {child.returncode}): "
                                   f"{stderr[-2000:]}")
            out[key] = json.loads(lines[-1])
    finally:
        for child in children.values():
            if child.poll() is None:
                child.kill()
    return out


# ---- one pair -------------------------------------------------------------------------------------------------
def _pct(new: float, ref: float) -> float:
    return round(100.0 * (new / ref - 1.0), 2)


def _time_pair(recipe: str, args, log: Callable[[str], None]) -> Dict:
    """Both models of a pair in this process, their steps interleaved: times and host synchronisations."""
    from mec_cli.ops.modes import all_modes

    device = torch.device(args.device)
    base_name, mec_name = pair_of(recipe)
    t0 = time.perf_counter()
    cfgs = {"baseline": model_config(base_name, args.rois, args.proposals),
            "mec": model_config(mec_name, args.rois, args.proposals)}
    base = build_model(cfgs["baseline"], device)
    mec = build_model(cfgs["mec"], device, seed=1)
    mec.load_state_dict(base.state_dict())  # the same weights (strict: MEC adds no parameter)
    same = all(torch.equal(a, b) for a, b in zip(base.state_dict().values(), mec.state_dict().values()))
    steps = {"baseline": Steps(base, cfgs["baseline"], device, args.size, args.amp, args.lr),
             "mec": Steps(mec, cfgs["mec"], device, args.size, args.amp, args.lr)}
    out: Dict = {"recipes": {"baseline": base_name, "mec": mec_name}, "same_weights": same,
                 "build_s": round(time.perf_counter() - t0, 1)}
    log(f"{recipe}: models built in {out['build_s']} s; train steps")
    train = interleaved({k: s.train for k, s in steps.items()}, device, args.reps, args.warmup)
    out["train"] = {**train, "mec_vs_baseline_pct": _pct(train["mec"]["median_ms"], train["baseline"]["median_ms"])}
    out["host_syncs_train"] = {k: count_host_syncs(s.train, device) for k, s in steps.items()}
    if args.no_test:
        return out
    log(f"{recipe}: test steps")
    modes = all_modes(int(cfgs["mec"].model.roi_head.num_stages))
    test = interleaved({"baseline": steps["baseline"].test, "mec": steps["mec"].test,
                        "mec_all_modes": lambda: steps["mec"].test(modes)}, device, args.reps, args.warmup)
    primary = cfgs["mec"].model.test_cfg.rcnn
    out["test"] = {**test, "mec_mode": f"{primary.ensemble}{'_ga' if primary.get('group_align') else ''}",
                   "all_modes": modes,
                   "mec_vs_baseline_pct": _pct(test["mec"]["median_ms"], test["baseline"]["median_ms"]),
                   "all_modes_vs_one_pct": _pct(test["mec_all_modes"]["median_ms"], test["mec"]["median_ms"])}
    out["host_syncs_test"] = {k: count_host_syncs(s.test, device) for k, s in steps.items()}
    return out


def bench_pair(recipe: str, args, log: Callable[[str], None]) -> Dict:
    """A pair's times (both models in this process) and peak memory (each model in a process of its own)."""
    t0 = time.perf_counter()
    if args.memory_only:
        base_name, mec_name = pair_of(recipe)
        out: Dict = {"recipes": {"baseline": base_name, "mec": mec_name}}
    else:
        out = _time_pair(recipe, args, log)
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()
    if not args.no_memory:
        log(f"{recipe}: peak memory, one process per model")
        mem = memory_in_children(out["recipes"], args)
        mem["train_mec_vs_baseline_pct"] = _pct(mem["mec"]["train_peak_mib"], mem["baseline"]["train_peak_mib"])
        mem["test_mec_vs_baseline_pct"] = _pct(mem["mec"]["test_peak_mib"], mem["baseline"]["test_peak_mib"])
        out["memory"] = mem
    out["wall_s"] = round(time.perf_counter() - t0, 1)
    return out


# ---- report ---------------------------------------------------------------------------------------------------
def markdown(result: Dict) -> str:
    """The tables of a result: times (median ms) and peak memory (MiB) per pair."""
    rows = ["| pair | train: baseline | MEC | MEC vs baseline | test: mmdet head | MEC, one mode | MEC vs mmdet | "
            "MEC, all modes | all vs one | host syncs per train step: baseline / MEC |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for recipe, r in result["pairs"].items():
        if "train" not in r:  # --memory-only
            continue
        tr, te = r["train"], r.get("test")
        syncs = r["host_syncs_train"]
        cells = [recipe, f"{tr['baseline']['median_ms']:.1f}", f"{tr['mec']['median_ms']:.1f}",
                 f"{tr['mec_vs_baseline_pct']:+.1f}%"]
        if te:
            cells += [f"{te['baseline']['median_ms']:.1f}", f"{te['mec']['median_ms']:.1f} ({te['mec_mode']})",
                      f"{te['mec_vs_baseline_pct']:+.1f}%", f"{te['mec_all_modes']['median_ms']:.1f} "
                      f"({len(te['all_modes'])})", f"{te['all_modes_vs_one_pct']:+.1f}%"]
        else:
            cells += ["-"] * 5
        cells.append(f"{syncs['baseline']['total']} / {syncs['mec']['total']}")
        rows.append("| " + " | ".join(cells) + " |")
    text = "\n".join(rows)
    mem_rows = [(recipe, r["memory"]) for recipe, r in result["pairs"].items() if "memory" in r]
    if mem_rows:
        unit = mem_rows[0][1]["baseline"]["measure"]
        text += (f"\n\nPeak memory, MiB ({unit}), each model in a process of its own:\n\n"
                 "| pair | train: baseline | MEC | MEC vs baseline | test: baseline | MEC, one mode | MEC vs baseline "
                 "| MEC, all modes |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for recipe, m in mem_rows:
            b, e = m["baseline"], m["mec"]
            text += (f"\n| {recipe} | {b['train_peak_mib']:.0f} | {e['train_peak_mib']:.0f} | "
                     f"{m['train_mec_vs_baseline_pct']:+.2f}% | {b['test_peak_mib']:.0f} | {e['test_peak_mib']:.0f} | "
                     f"{m['test_mec_vs_baseline_pct']:+.2f}% | {e.get('test_all_modes_peak_mib', 0):.0f} |")
    return text


def environment(device: torch.device) -> Dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "threads": torch.get_num_threads()}
    try:
        import mmcv
        import mmdet

        env.update(mmcv=mmcv.__version__, mmdet=mmdet.__version__)
    except ImportError:
        pass
    if device.type == "cuda":
        env.update(gpu=torch.cuda.get_device_name(device), cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version())
    else:
        env["cpu"] = platform.processor() or platform.machine()
    return env


def parse_size(text: str) -> Tuple[int, int]:
    try:
        w, h = (int(x) for x in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size takes WIDTH,HEIGHT such as 1333,800, got {text!r}") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"--size {text}: each side must be at least 32 pixels")
    return w, h


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n")[1])
    ap.add_argument("--device", default="cuda", help="cuda (the first GPU) or cpu")
    ap.add_argument("--size", type=parse_size, default=(1333, 800), help="WIDTH,HEIGHT of each image (1333,800)")
    ap.add_argument("--recipes", default=",".join(DEFAULT_RECIPES),
                    help="MEC recipes, each timed against its _baseline (comma-separated)")
    ap.add_argument("--amp", action="store_true", help="mixed precision (CUDA): AmpOptimWrapper, fp16 autocast")
    ap.add_argument("--reps", type=int, help="timed rounds (default 12 on CUDA, 2 on the CPU)")
    ap.add_argument("--warmup", type=int, help="untimed rounds first (default 5 on CUDA, 1 on the CPU)")
    ap.add_argument("--lr", type=float, default=0.0, help="SGD learning rate (0: same weights in every step)")
    ap.add_argument("--memory-steps", type=int, help="steps per task in a memory process (default 2 on CUDA, 1 on "
                    "the CPU)")
    ap.add_argument("--rois", type=int, help="RoIs sampled per image and stage in training (default: the recipe's "
                    f"512 on CUDA, {CPU_ROIS} on the CPU)")
    ap.add_argument("--proposals", type=int, help="RPN proposals per image at test time (default: the recipe's "
                    f"1,000 on CUDA, {CPU_PROPOSALS} on the CPU)")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    ap.add_argument("--memory-only", action="store_true", help="only the peak-memory processes (no timing)")
    ap.add_argument("--no-test", action="store_true", help="skip the test steps")
    ap.add_argument("--child-timeout", type=float, default=1800, help="seconds a memory process may take")
    ap.add_argument("--out", type=Path, help="the results as JSON")
    ap.add_argument("--md", type=Path, help="the tables as Markdown")
    ap.add_argument("--memory-of", help=argparse.SUPPRESS)  # internal: one model's peak memory in this process
    args = ap.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda: no CUDA device is visible here (--device cpu runs on the CPU)")
    if args.amp and device.type != "cuda":
        ap.error("--amp needs CUDA: mixed precision is mmengine's AmpOptimWrapper, as with `mec train --amp`")
    on_gpu = device.type == "cuda"
    args.reps = args.reps if args.reps is not None else (12 if on_gpu else 2)
    args.warmup = args.warmup if args.warmup is not None else (5 if on_gpu else 1)
    args.memory_steps = args.memory_steps if args.memory_steps is not None else (2 if on_gpu else 1)
    if not on_gpu:  # the recipes' 512 RoIs and 1,000 proposals take minutes a step on a few cores
        args.rois = args.rois if args.rois is not None else CPU_ROIS
        args.proposals = args.proposals if args.proposals is not None else CPU_PROPOSALS
    if args.memory_of:
        print(json.dumps(memory_of(args.memory_of, args)), flush=True)
        return 0

    def log(msg: str) -> None:
        print(f"[bench_gpu {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    result = {"command": " ".join([Path(sys.argv[0]).name if argv is None else "bench_gpu.py", *(
        sys.argv[1:] if argv is None else argv)]), "device": str(device), "size": list(args.size),
              "images": IMAGES, "precision": "amp (fp16)" if args.amp else "fp32", "reps": args.reps,
              "warmup": args.warmup, "lr": args.lr, "rois": args.rois or "recipe", "proposals": args.proposals
              or "recipe", "env": environment(device), "pairs": {}}
    for recipe in recipes:
        result["pairs"][recipe] = bench_pair(recipe, args, log)
        if args.out:  # written after every pair, so that a time box that stops the run keeps what was measured
            from mec_cli.io import write_json_atomic

            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_json_atomic(args.out, result)
    table = markdown(result)
    print(table)
    if args.md:
        args.md.write_text(f"`{result['command']}` on {result['env'].get('gpu') or result['env'].get('cpu')}\n\n"
                           + table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
