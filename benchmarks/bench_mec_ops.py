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


def interleaved(fns: dict, repeat: int = 30, warmup: int = 5) -> dict:
    """The median time of each function, the functions called in turn (one call of each per round)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


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

    times = interleaved({"ce_ms": ce, "mec_loss_ms": mel, "mean_ms": mean, "dynamic_ga_ms": dyn})
    return {"shape": f"{R} RoIs x {C + 1} logits x {K} stages", **{k: 1e3 * v for k, v in times.items()}}


def steps(data_root: str) -> dict:
    """Like-for-like step costs on real synthetic batches, with identical weights in every model:

    * train: forward + backward (no optimizer update, so proposals stay identical) of the tiny model with
      cross-entropy (baseline) and with the multi-expert loss (MEC);
    * inference: the whole test step through mmdet's CascadeRoIHead and through the MEC head in
      mean_logits and in dynamic+GA mode, and the box branch alone (stage heads, scoring, NMS) on the
      same features and proposals, which isolates the cost of MEC's scoring.
    """
    import copy

    from mmdet.registry import MODELS
    from mmengine.runner import Runner

    import mec_cli.evaluation.metric  # noqa: F401
    import mec_cli.models  # noqa: F401
    from mec_cli import training

    res = {}
    cfgs = {r: training.prepare_training(training.TrainOptions(
        recipe=r, gpus=0, data_root=data_root, work_dir=f"/tmp/bench_{r}", seed=0,
        cfg_options={"log_level": "ERROR"})).cfg for r in ("tiny_baseline", "tiny")}
    runner = Runner.from_cfg(cfgs["tiny_baseline"])
    base = runner.model
    mec = MODELS.build(cfgs["tiny"].model)
    mec.load_state_dict(base.state_dict())
    batches = [b for _, b in zip(range(12), runner.train_dataloader)]
    steps = {}
    for name, model in (("baseline", base), ("mec", mec)):
        model.train()

        def fwd_bwd(model=model, it=iter(batches * 4)):
            data = model.data_preprocessor(next(it), training=True)
            losses = model.loss(data["inputs"], data["data_samples"])
            total = sum(v for k, v in losses.items() if "loss" in k and not isinstance(v, list))
            model.zero_grad(set_to_none=True)
            total.backward()

        steps[name] = fwd_bwd
    torch.manual_seed(0)
    # the two models' steps alternate, so that a slower spell of the shared machine reaches both alike
    for name, ms in interleaved(steps, repeat=30, warmup=4).items():
        res[f"train_fwd_bwd_{name}_ms"] = 1e3 * ms
    res["train_overhead_pct"] = 100 * (res["train_fwd_bwd_mec_ms"] / res["train_fwd_bwd_baseline_ms"] - 1)

    base.eval()
    models = {"plain_head": base}
    for mode, align in (("mean_logits", False), ("dynamic", True)):
        mec_cfg = copy.deepcopy(cfgs["tiny"].model)
        mec_cfg.roi_head.mec.loss = False
        mec_cfg.test_cfg.rcnn.update(ensemble=mode, group_align=align)
        model = MODELS.build(mec_cfg).eval()
        model.load_state_dict(base.state_dict())
        models[f"mec_head_{mode}{'_ga' if align else ''}"] = model
    vbatches = [b for _, b in zip(range(8), runner.test_dataloader)]
    for name, model in models.items():
        it = iter(vbatches * 5)

        def infer():
            with torch.no_grad():
                model.test_step(next(it))

        res[f"infer_step_{name}_ms"] = 1e3 * timeit(infer, repeat=30, warmup=4)
        # box branch alone on fixed features and proposals
        with torch.no_grad():
            data = model.data_preprocessor(vbatches[0], training=False)
            x = model.extract_feat(data["inputs"])
            samples = data["data_samples"]
            rpn = model.rpn_head.predict(x, samples, rescale=False)
            metas = [s.metainfo for s in samples]
            res[f"box_branch_{name}_ms"] = 1e3 * timeit(
                lambda: model.roi_head.predict_bbox(x, metas, rpn, rcnn_test_cfg=model.roi_head.test_cfg,
                                                    rescale=False),
                repeat=30, warmup=4)
    res["infer_overhead_pct"] = 100 * (res["infer_step_mec_head_dynamic_ga_ms"]
                                       / res["infer_step_mec_head_mean_logits_ms"] - 1)
    res["box_branch_overhead_pct"] = 100 * (res["box_branch_mec_head_dynamic_ga_ms"]
                                            / res["box_branch_plain_head_ms"] - 1)
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
