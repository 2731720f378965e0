"""`mec demo`: the whole story on the built-in synthetic data, into one folder with an index.

synth -> groups -> the built-in study ``demo`` (:mod:`mec_cli.study`): train the tiny baseline and the tiny MEC
recipe and evaluate every mode, each stage included -> every report that applies -> README.md index. A step whose
outputs are complete is skipped on a rerun; ``force`` redoes everything. Training and evaluation go through the
launch layer (:mod:`mec_cli.launch`), as `mec train` and `mec eval` do, each in a process of its own.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from mec_cli.data.groups import DEFAULT_BINS, bin_ranges
from mec_cli.data.synth import MAX_IMAGES, SynthConfig
from mec_cli.errors import SEED_MAX, check_number

STEP_NAMES = ["synth", "groups", "train tiny_baseline", "eval tiny_baseline", "train tiny", "eval tiny", "reports"]


@dataclass
class DemoOptions:
    out: Path
    iters: int = 160
    train_images: int = 600
    val_images: int = 120
    seed: int = 0
    force: bool = False

    def validate(self) -> None:
        check_number("iters", self.iters, 1, integer=True)
        check_number("train_images", self.train_images, 1, MAX_IMAGES, integer=True)
        check_number("val_images", self.val_images, 1, MAX_IMAGES, integer=True)
        check_number("seed", self.seed, 0, SEED_MAX, integer=True)


def code_fingerprint() -> str:
    """sha256 of mec's own code and recipes: a demo step done by other code is redone, not reused."""
    import hashlib

    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for base in (root, root.parent / "recipes"):
        for f in sorted(base.rglob("*.py")):
            h.update(str(f.relative_to(base)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:16]


def environment() -> Dict:
    """What the demo's numbers depend on besides the code: versions, CPU model and thread count."""
    import platform

    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")),
               platform.processor()) if Path("/proc/cpuinfo").is_file() else platform.processor()
    return {"mec_code": code_fingerprint(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "cpu": cpu, "python": platform.python_version()}


def demo_study(opts: DemoOptions):
    """The demo as a study (:func:`mec_cli.study.spec.demo`): the tiny baseline and MEC runs with the demo's seed,
    on its data, with its groups, and the options every run gets."""
    from dataclasses import replace

    from mec_cli.study.spec import StudyOptions, demo

    out = Path(opts.out)
    study_opts = StudyOptions(out=str(out), data_root=str(out / "data"), gpus=0, max_iters=opts.iters,
                              groups=str(out / "groups.json"), cfg_options={"log_level": "WARNING"})
    return replace(demo(), seeds=[opts.seed]), study_opts


def run_demo(opts: DemoOptions, on_step: Optional[Callable[[str, str], None]] = None,
             on_metrics: Optional[Callable[[str, Dict], None]] = None) -> Dict:
    """Run every step; ``on_step(name, status)`` reports 'start', 'skip' or 'done', and ``on_metrics(recipe,
    document)`` each evaluation's metrics. Returns the output summary.

    The data (synth, groups) are made here, each step skipped when its outputs exist and its stamp
    (``.stamps/<step>.json``: the options it ran with, the fingerprint of mec's code and recipes, and the stamps of the
    steps before it) matches this run. The trainings, evaluations and reports are the built-in study ``demo``
    (:mod:`mec_cli.study`), run into the same folder: a run is skipped when the manifest records it done with the same
    settings, code and data, and redone otherwise, so a rerun never mixes results of other code or other options.
    Each training and evaluation runs in a process of its own.
    """
    opts.validate()
    from mec_cli.io import check_output_dir

    check_output_dir(opts.out)
    from mec_cli.data.groups import compute_groups
    from mec_cli.data.synth import make_synthetic_dataset
    from mec_cli.errors import MecError
    from mec_cli.io import write_json_atomic, write_text_atomic
    from mec_cli.study import manifest
    from mec_cli.study.engine import run_study

    report = on_step or (lambda name, status: None)
    out = Path(opts.out)
    data, stamps = out / "data", out / ".stamps"
    timings: Dict[str, float] = {}
    env = environment()
    chain: List[str] = []

    def step(name: str, complete: Path, fn: Callable[[], None], **settings) -> None:
        stamp = {"step": name, "settings": settings, "code": env["mec_code"], "after": list(chain)}
        path = stamps / f"{name.replace(' ', '_')}.json"
        chain.append(json.dumps(stamp, sort_keys=True))
        if complete.exists() and not opts.force and path.is_file() and json.loads(path.read_text()) == stamp:
            report(name, "skip")
            return
        report(name, "start")
        t = time.time()
        fn()
        timings[name] = round(time.time() - t, 1)
        write_json_atomic(path, stamp)
        report(name, "done")

    def synth() -> None:
        make_synthetic_dataset(SynthConfig(out=data, seed=opts.seed, train_images=opts.train_images,
                                           val_images=opts.val_images))
        (data / ".complete").write_text("ok\n")

    step("synth", data / ".complete", synth, seed=opts.seed, train_images=opts.train_images, val_images=opts.val_images)
    step("groups", out / "groups.json",
         lambda: write_json_atomic(out / "groups.json", compute_groups(data / "annotations" / "lvis_v1_train.json")))

    started: Dict[str, float] = {}

    def study_step(name: str, status: str) -> None:
        name = "reports" if name == "report" else name
        if status == "start":
            started[name] = time.time()
        elif name in started:
            timings[name] = round(time.time() - started.pop(name), 1)
        report(name, status if status in ("start", "skip") else "done")

    spec, study_opts = demo_study(opts)
    result = run_study(spec, study_opts, on_step=study_step, on_metrics=on_metrics, changed="redo", force=opts.force,
                       extra_key={"code": env["mec_code"], "data": chain}, always_report=True,
                       report_layout=demo_layout(opts))
    if result["failed"]:
        doc = manifest.read_manifest(out)
        errors = [f"{r['name']} ({stage}): {r[stage]['error']}" for r in doc["runs"] for stage in manifest.STAGES
                  if r[stage]["status"] == "failed"]
        raise MecError(f"demo steps failed: {'; '.join(errors)}", out)
    previous = out / "demo_summary.json"
    if previous.is_file():  # a rerun keeps the timings of the steps it skipped
        timings = {**json.loads(previous.read_text()).get("timings_s", {}), **timings}
    built = json.loads((out / "reports" / "report.json").read_text())
    outputs = [it for it in built["outputs"] if not it["path"].endswith("runs.csv")]
    summary = {"out": str(out), "index": result["report"], "outputs": outputs, "timings_s": timings,
               "environment": env}
    write_text_atomic(out / "demo_summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def demo_layout(opts: DemoOptions) -> Dict:
    """Where the demo's report goes and what its index says: ``reports/`` and ``README.md``, as before studies."""
    ranges = ", ".join(bin_ranges(DEFAULT_BINS))
    return {
        "folder": "reports", "index": "README.md", "title": "# mec demo",
        "intro": [f"The whole MEC pipeline on the built-in synthetic long-tailed dataset ({opts.train_images} "
                  f"training and {opts.val_images} validation images, {SynthConfig.num_classes} shape-and-colour "
                  "categories from 3 to ~1,000 training instances), with the tiny Cascade Mask R-CNN (ResNet-18 from "
                  f"scratch) trained for {opts.iters} iterations on the CPU. These numbers show the pipeline working "
                  "end to end; they say nothing about MEC at paper scale. It is the built-in study `demo` (`mec "
                  "study status` reads this folder; `study.json` is its manifest).", ""],
        "links": [f"- [groups.json](groups.json): the frequency groups (instances in {ranges}) used by training, "
                  "evaluation and the reports.",
                  "- [runs/tiny_baseline/metrics.json](runs/tiny_baseline/metrics.json), "
                  "[runs/tiny/metrics.json](runs/tiny/metrics.json): every mode's box and mask AP (per group and per "
                  "category) from one inference pass each (`mec eval --per-stage`).",
                  "- runs/*/config.py, runs/*/groups.json, runs/*/iter_*.pth: the resolved configs, groups and "
                  "checkpoints.",
                  "- [data/](data/): the synthetic dataset (LVIS v1 JSON and PNG images)."],
    }
