"""`mec demo`: the whole story on the built-in synthetic data, into one folder with an index.

synth -> groups -> train the tiny baseline and the tiny MEC recipe -> evaluate every mode, each stage
included -> every report that applies -> README.md index. A step whose outputs are complete is skipped on
a rerun; ``force`` redoes everything. Training and evaluation go through the launch layer
(:mod:`mec_cli.launch`), as `mec train` and `mec eval` do, each worker in a process of its own.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional

from mec_cli.data.groups import DEFAULT_BINS, bin_ranges
from mec_cli.data.synth import SynthConfig
from mec_cli.errors import SEED_MAX, check_number

STEP_NAMES = ["synth", "groups", "train tiny_baseline", "train tiny", "eval tiny_baseline", "eval tiny", "reports"]


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
        check_number("train_images", self.train_images, 1, integer=True)
        check_number("val_images", self.val_images, 1, integer=True)
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


def run_demo(opts: DemoOptions, on_step: Optional[Callable[[str, str], None]] = None,
             on_metrics: Optional[Callable[[str, Dict], None]] = None) -> Dict:
    """Run every step; ``on_step(name, status)`` reports 'start', 'skip' or 'done', and ``on_metrics(recipe,
    document)`` each evaluation's metrics. Returns the output summary.

    A step is skipped when its outputs exist and its stamp (``.stamps/<step>.json``: the options it ran with, the
    fingerprint of mec's code and recipes, and the stamps of the steps before it) matches this run; anything else
    is redone, so a rerun never mixes results of other code or other options. The worker of each training and
    evaluation runs in its own process (``own_process``), so no state of one run reaches the next.
    """
    opts.validate()
    from mec_cli.data.groups import compute_groups
    from mec_cli.data.synth import make_synthetic_dataset
    from mec_cli.evaluation.checkpoint import EvalOptions, evaluate_checkpoint
    from mec_cli.io import write_json_atomic, write_text_atomic
    from mec_cli.training import TrainOptions, prepare_training, train

    report = on_step or (lambda name, status: None)
    out = Path(opts.out)
    data, runs, stamps = out / "data", out / "runs", out / ".stamps"
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

    def train_tiny(recipe: str, work: Path) -> None:
        train(prepare_training(TrainOptions(recipe=recipe, gpus=0, data_root=str(data), work_dir=str(work),
                                            groups=str(out / "groups.json"), max_iters=opts.iters, seed=opts.seed,
                                            cfg_options={"log_level": "WARNING"}, own_process=True)))

    def evaluate(recipe: str, work: Path) -> None:
        # every mode of the model, each stage alone included; the inference runs in a process of its own, whose
        # memory is returned before the next one starts
        doc = evaluate_checkpoint(EvalOptions(checkpoint=str(work / f"iter_{opts.iters}.pth"), recipe=recipe,
                                              data_root=str(data), per_stage=True, groups=str(out / "groups.json"),
                                              analysis=True, per_image=True, own_process=True))
        if on_metrics is not None:
            on_metrics(recipe, doc)
        write_json_atomic(work / "metrics.json", doc)

    step("synth", data / ".complete", synth, seed=opts.seed, train_images=opts.train_images, val_images=opts.val_images)
    step("groups", out / "groups.json",
         lambda: write_json_atomic(out / "groups.json", compute_groups(data / "annotations" / "lvis_v1_train.json")))
    for recipe in ("tiny_baseline", "tiny"):
        work = runs / recipe
        step(f"train {recipe}", work / f"iter_{opts.iters}.pth", lambda recipe=recipe,
             work=work: train_tiny(recipe, work), iters=opts.iters, seed=opts.seed)
    for recipe in ("tiny_baseline", "tiny"):
        work = runs / recipe
        step(f"eval {recipe}", work / "metrics.json", lambda recipe=recipe, work=work: evaluate(recipe, work),
             analysis=True, per_image=True)

    report("reports", "start")
    t = time.time()
    from mec_cli.reporting.runs import load_runs

    loaded = load_runs([str(runs / "tiny_baseline" / "metrics.json"), str(runs / "tiny" / "metrics.json")])
    outputs = write_reports(out, loaded)
    timings["reports"] = round(time.time() - t, 1)
    report("reports", "done")
    index = write_index(out, outputs, opts, loaded)
    previous = out / "demo_summary.json"
    if previous.is_file():  # a rerun keeps the timings of the steps it skipped
        timings = {**json.loads(previous.read_text()).get("timings_s", {}), **timings}
    summary = {"out": str(out), "index": str(index), "outputs": outputs, "timings_s": timings, "environment": env}
    write_text_atomic(out / "demo_summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def write_reports(out: Path, runs: List) -> List[Dict[str, str]]:
    """Every report that applies to the two demo runs (baseline, MEC); returns (path, what it shows) entries."""
    from mec_cli.io import write_text_atomic
    from mec_cli.reporting.distribution import distribution_curves
    from mec_cli.reporting.figures import (
        compare_groups_figure,
        distribution_figure,
        intervals_figure,
        save_figure,
        stages_figure,
    )
    from mec_cli.reporting.render import render
    from mec_cli.reporting.runs import grouping_axis, resolve_grouping
    from mec_cli.reporting.significance import compare_intervals, with_intervals
    from mec_cli.reporting.tables import ablation_table, baseline_vs_mec, compare_table, stages_frame

    reports = out / "reports"
    base, mec = runs
    items: List[Dict[str, str]] = []

    def table(name: str, t, what: str) -> None:
        for fmt, ext in (("md", "md"), ("latex", "tex"), ("csv", "csv")):
            write_text_atomic(reports / f"{name}.{ext}", render(t, fmt))
        items.append({"path": f"reports/{name}.md", "also": f"reports/{name}.tex, reports/{name}.csv", "what": what})

    table("ablation", ablation_table([base, mec]),
          "Table 2(c) style ablation: each run scored with and without dynamic/sparse inference and group alignment "
          "(marks read from the runs), mask AP overall and per frequency group, box mAP. The paper's numbers belong to "
          "its Cascade R50 on LVIS, so none stand beside these tiny runs.")
    intervals = compare_intervals([base, mec])
    table("compare", with_intervals(compare_table([base, mec]), intervals),
          "Table 1 style: the baseline (mean_logits: MMDetection's mean of the stage logits) against MEC (dynamic "
          "ensemble with group alignment), box and mask AP per group, with the deltas, their 95% paired bootstrap "
          "intervals over the validation images, and whether each gain is within noise (`mec report compare "
          "--ci`).")
    paths = save_figure(intervals_figure(intervals, f"{mec.label} against {base.label}: gain and 95% bootstrap "
                                                    "interval per group"), str(reports / "gain_intervals.png"))
    write_text_atomic(reports / "gain_intervals.csv", intervals.to_csv(index=False))
    items.append({"path": "reports/gain_intervals.png", "also": ", ".join(Path(p).name for p in paths[1:]) +
                  ", gain_intervals.csv",
                  "what": "MEC's gain over the baseline in each AP column (box and mask, per frequency group) with "
                          "its 95% paired bootstrap interval over the validation images: a gain whose interval "
                          "holds 0 is within noise."})
    for run in (mec, base):
        frame = stages_frame(run, "segm")
        axis = grouping_axis(run, frame.attrs["grouping"])
        paths = save_figure(stages_figure(frame, f"{run.label}: per-stage mask AP by frequency group (Figure 1a)",
                                          xlabel=axis),
                            str(reports / f"stages_{run.label}.png"))
        write_text_atomic(reports / f"stages_{run.label}.csv", frame.to_csv())
        items.append({"path": f"reports/stages_{run.label}.png", "also": ", ".join(Path(p).name for p in paths[1:]) +
                      f", stages_{run.label}.csv",
                      "what": f"Figure 1(a) for {run.label}: mask AP of each cascade stage alone, "
                      "per frequency group (stage 1 has the lowest IoU threshold)."})
    values = baseline_vs_mec(base, mec)
    save_figure(compare_groups_figure(values, xlabel=grouping_axis(mec, resolve_grouping([base, mec]))),
                str(reports / "baseline_vs_mec.png"))
    items.append({"path": "reports/baseline_vs_mec.png", "also": "baseline_vs_mec.svg",
                  "what": "Figure 1(b): mask AP per frequency group, baseline against MEC."})
    items += write_studies(reports, base, mec)
    curves = distribution_curves([str(out / "data" / "annotations" / "lvis_v1_train.json"), "lvis_v1", "coco2017"])
    save_figure(distribution_figure(curves), str(reports / "distribution.png"))
    items.append({"path": "reports/distribution.png", "also": "distribution.svg",
                  "what": "Figure 5 style: sorted training instances per category of the synthetic set, LVIS v1 and "
                          f"COCO, with the group edges {' and '.join(map(str, DEFAULT_BINS))}."})
    return items


def write_studies(reports: Path, base, mec) -> List[Dict[str, str]]:
    """The study figures (issue 13) of the two demo runs, each with its CSV: AP against the IoU threshold, errors
    per group, calibration per group and the dynamic ensemble's stage weights. Mask AP throughout, as in the
    paper's figures."""
    from mec_cli.io import write_text_atomic
    from mec_cli.ops.modes import BASELINE_MODE, MEC_MODE
    from mec_cli.reporting.figures import (
        calibration_figure,
        confusion_figure,
        errors_figure,
        iou_profile_figure,
        lrp_figure,
        save_figure,
        weights_figure,
    )
    from mec_cli.reporting.studies import (
        calibration_frames,
        confusion_frames,
        errors_frame,
        iou_profile_frame,
        lrp_frame,
        weights_frame,
    )

    items: List[Dict[str, str]] = []

    def figure(name: str, fig, frame, what: str) -> None:
        paths = save_figure(fig, str(reports / f"{name}.png"))
        write_text_atomic(reports / f"{name}.csv", frame.to_csv(index=False))
        items.append({"path": f"reports/{name}.png", "also": ", ".join(Path(p).name for p in paths[1:]) +
                      f", {name}.csv", "what": what})

    frame = iou_profile_frame(mec, base, MEC_MODE, BASELINE_MODE, "segm")
    figure("iou_profile", iou_profile_figure(frame, f"{mec.label}: mask AP against the IoU threshold, per frequency "
                                             "group", "mask AP"), frame,
           "The paper's claim tested on this model: mask AP at each IoU threshold 0.50:0.95 per frequency group, a "
           f"line per cascade stage alone, MEC's {MEC_MODE} ensemble and the baseline's {BASELINE_MODE} (dashed). "
           "If rare categories favour the low-IoU stage, stage 1 leads in the rare panel.")
    for run, mode in ((mec, MEC_MODE), (base, BASELINE_MODE)):
        frame = errors_frame(run, mode, "segm")
        figure(f"errors_{run.label}", errors_figure(frame, f"{run.label}, {frame.attrs['mode']} (mask AP): where the "
                                                           "AP goes, per frequency group"), frame,
               f"Errors of {run.label} ({frame.attrs['mode']}) per frequency group, TIDE-style under the LVIS "
               "federated rules: the AP50 points each error type costs (classification, localisation, both, "
               "duplicate, background, missed); the CSV adds the shares, counts and the classification errors that "
               "went to a more frequent group.")
    bins, ece = calibration_frames(mec, [BASELINE_MODE, "dynamic", MEC_MODE], "segm")
    paths = save_figure(calibration_figure(bins, ece, f"{mec.label}: reliability per frequency group (mask, "
                                                      "precision at IoU 0.5)"), str(reports / "calibration.png"))
    write_text_atomic(reports / "calibration.csv", bins.to_csv(index=False))
    write_text_atomic(reports / "calibration_ece.csv", ece.to_csv(index=False))
    items.append({"path": "reports/calibration.png", "also": ", ".join(Path(p).name for p in paths[1:]) +
                  ", calibration.csv (bins), calibration_ece.csv",
                  "what": f"Reliability diagrams of {mec.label} per frequency group for {BASELINE_MODE}, dynamic "
                          f"and {MEC_MODE}, with each one's expected calibration error: are rare and frequent "
                          "scores on one scale after group alignment?"})
    matrix, pairs = confusion_frames(mec, MEC_MODE, "segm")
    figure("confusion", confusion_figure(matrix, pairs, f"{mec.label}, {matrix.attrs['mode']} (mask): which class the "
                                                        "detector gives each object"), matrix,
           f"Is a rare object taken for a frequent class? Every object of {mec.label}'s validation set by the label "
           f"its highest-scoring detection gives it ({matrix.attrs['mode']}, mask IoU >= 0.5, LVIS federated rules), "
           "per frequency group, and the most frequent category confusions.")
    frame = lrp_frame([base, mec], [BASELINE_MODE, MEC_MODE], "segm")
    figure("lrp", lrp_figure(frame, "Optimal LRP per frequency group, baseline and MEC (mask; lower is better)"), frame,
           f"Optimal LRP (Oksuz et al.) per frequency group for the baseline ({BASELINE_MODE}) and MEC ({MEC_MODE}), "
           "with its localisation, false-positive and false-negative components at each category's best score "
           "threshold (lower is better).")
    frame = weights_frame(mec)
    figure("weights", weights_figure(frame, f"{mec.label}: which stage the dynamic ensemble trusts, per frequency "
                                            "group"), frame,
           f"The dynamic ensemble's mean stage weight w^k (eq. 5) per frequency group over the detections "
           f"{mec.label} kept, as stacked bars (stage 1 = lowest IoU threshold).")
    return items


def write_index(out: Path, items: List[Dict[str, str]], opts: DemoOptions, runs: List) -> Path:
    from mec_cli.io import write_text_atomic
    from mec_cli.reporting.render import to_markdown
    from mec_cli.reporting.significance import compare_intervals, with_intervals
    from mec_cli.reporting.tables import compare_table

    base, mec = runs
    lines = ["# mec demo", "",
             f"The whole MEC pipeline on the built-in synthetic long-tailed dataset ({opts.train_images} training and "
             f"{opts.val_images} validation images, {SynthConfig.num_classes} shape-and-colour categories from 3 to "
             "~1,000 training instances), with the tiny Cascade Mask R-CNN (ResNet-18 from scratch) trained for "
             f"{opts.iters} iterations on the CPU. These numbers show the pipeline working end to end; they say "
             "nothing about MEC at paper scale.", "",
             "## Outputs", ""]
    for it in items:
        lines.append(f"- [{it['path']}]({it['path']}) (also {it['also']}): {it['what']}")
    ranges = ", ".join(bin_ranges(DEFAULT_BINS))
    lines += [f"- [groups.json](groups.json): the frequency groups (instances in {ranges}) used by training, "
              "evaluation and the reports.",
              "- [runs/tiny_baseline/metrics.json](runs/tiny_baseline/metrics.json), "
              "[runs/tiny/metrics.json](runs/tiny/metrics.json): every mode's box and mask AP (per group and per "
              "category) from one inference pass each (`mec eval --per-stage`).",
              "- runs/*/config.py, runs/*/groups.json, runs/*/iter_*.pth: the resolved configs, groups and "
              "checkpoints.",
              "- [data/](data/): the synthetic dataset (LVIS v1 JSON and PNG images).", "",
              "## Baseline against MEC", "", to_markdown(with_intervals(compare_table([base, mec]),
                                                                        compare_intervals([base, mec])))]
    return Path(write_text_atomic(out / "README.md", "\n".join(lines) + "\n"))
