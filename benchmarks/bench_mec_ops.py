"""Cost of MEC on the CPU: the loss against cross-entropy, the dynamic ensemble with alignment against
the mean, and whole train and inference steps of the tiny MEC recipe against the tiny baseline.

    .venv/bin/python benchmarks/bench_mec_ops.py --out benchmarks/results/mec_ops.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch


def timeit(fn, repeat: int = 30, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def ops() -> dict:
    from mec_cli.ops import dynamic_ensemble, group_align, mean_logit_ensemble, multi_expert_loss

    torch.manual_seed(0)
    R, C, K = 512, 1203, 3
    groups = torch.randint(0, 3, (C,))
    labels = torch.randint(0, C + 1, (R,))
    x = torch.randn(R, C + 1, requires_grad=True)

    def ce():
        torch.nn.functional.cross_entropy(x, labels).backward()

    def mel():
        multi_expert_loss(x, labels, groups, 1, 0.7).backward()

    s = torch.randn(K, R, C + 1, requires_grad=True)

    def mean():
        mean_logit_ensemble(s).sum().backward()

    def dyn():
        dynamic_ensemble(group_align(s, groups), groups).sum().backward()

    out = {"shape": f"{R} RoIs x {C + 1} logits x {K} stages", "ce_ms": 1e3 * timeit(ce), "mec_loss_ms": 1e3 * timeit(mel),
           "mean_ms": 1e3 * timeit(mean), "dynamic_ga_ms": 1e3 * timeit(dyn)}
    return out


def steps(data_root: str) -> dict:
    """Median train-step time of the tiny baseline and MEC recipes on the same batches, and the inference
    step of one model (same weights) through mmdet's CascadeRoIHead and through the MEC head
    (dynamic ensemble with group alignment)."""
    import copy

    from mmdet.registry import MODELS
    from mmengine.runner import Runner

    import mec_cli.evaluation.metric  # noqa: F401
    import mec_cli.models  # noqa: F401
    from mec_cli import launch

    res = {}
    runners = {}
    for recipe in ("tiny_baseline", "tiny"):
        run = launch.prepare_training(launch.TrainOptions(recipe=recipe, gpus=0, data_root=data_root, work_dir=f"/tmp/bench_{recipe}",
                                                          groups=None, seed=0, cfg_options={"log_level": "ERROR"}))
        runner = Runner.from_cfg(run.cfg)
        runners[recipe] = (runner, run.cfg)
        batches = [b for _, b in zip(range(12), runner.train_dataloader)]
        optim = runner.build_optim_wrapper(run.cfg.optim_wrapper)
        it = iter(batches * 4)
        torch.manual_seed(0)
        res[f"{recipe}_train_step_ms"] = 1e3 * timeit(lambda: runner.model.train_step(next(it), optim), repeat=30, warmup=5)
    res["train_overhead_pct"] = 100 * (res["tiny_train_step_ms"] / res["tiny_baseline_train_step_ms"] - 1)

    runner, cfg = runners["tiny_baseline"]
    plain = runner.model.eval()
    models = {"plain_head": plain}
    for mode, align in (("mean_logits", False), ("dynamic", True)):
        mec_cfg = copy.deepcopy(runners["tiny"][1].model)
        mec_cfg.roi_head.mec.loss = False
        mec_cfg.test_cfg.rcnn.update(ensemble=mode, group_align=align)
        model = MODELS.build(mec_cfg).eval()
        model.load_state_dict(plain.state_dict())
        models[f"mec_head_{mode}{'_ga' if align else ''}"] = model
    batches = [b for _, b in zip(range(8), runner.test_dataloader)]
    for name, model in models.items():
        it = iter(batches * 5)

        def infer():
            with torch.no_grad():
                model.test_step(next(it))

        res[f"infer_step_{name}_ms"] = 1e3 * timeit(infer, repeat=30, warmup=4)
    # the MEC scoring itself: the same head and code path, dynamic ensemble with alignment vs mean of logits
    res["infer_overhead_pct"] = 100 * (res["infer_step_mec_head_dynamic_ga_ms"] / res["infer_step_mec_head_mean_logits_ms"] - 1)
    res["infer_vs_mmdet_head_pct"] = 100 * (res["infer_step_mec_head_dynamic_ga_ms"] / res["infer_step_plain_head_ms"] - 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-root", default="data/synth")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    result = {"threads": torch.get_num_threads(), "ops": ops()}
    print(json.dumps(result["ops"], indent=1), flush=True)
    if not (Path(args.data_root) / "annotations" / "lvis_v1_train.json").is_file():
        raise SystemExit(f"no synthetic data under {args.data_root}: run `mec synth --out {args.data_root}` first")
    result["steps"] = steps(args.data_root)
    print(json.dumps(result["steps"], indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
