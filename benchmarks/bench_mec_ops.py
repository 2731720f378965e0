"""Cost of MEC on the CPU: the loss against cross-entropy, the dynamic ensemble with alignment against
the mean, and whole train and inference steps of the tiny MEC recipe against the tiny baseline.

    .venv/bin/python benchmarks/bench_mec_ops.py --out benchmarks/results/mec_ops.json

``--device cuda --ops-only`` times the operations on a GPU instead (torch alone: no mm* needed) and checks them
against the CPU in float64 on the same inputs, values and gradients.
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


def ops(device: str = "cpu", rois: int = 512) -> dict:
    from mec_cli.ops import dynamic_ensemble, group_align, mean_logit_ensemble, multi_expert_loss

    torch.manual_seed(0)
    R, C, K = rois, 1203, 3
    dev = torch.device(device)
    groups = torch.randint(0, 3, (C,)).to(dev)
    labels = torch.randint(0, C + 1, (R,)).to(dev)
    x = torch.randn(R, C + 1).to(dev).requires_grad_()
    s = torch.randn(K, R, C + 1).to(dev).requires_grad_()
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def timed(fn):
        def run():
            fn()
            sync()
        return run

    times = interleaved({
        "ce_ms": timed(lambda: torch.nn.functional.cross_entropy(x, labels).backward()),
        "mec_loss_ms": timed(lambda: multi_expert_loss(x, labels, groups, 1, 0.7).backward()),
        "mean_ms": timed(lambda: mean_logit_ensemble(s).sum().backward()),
        "dynamic_ga_ms": timed(lambda: dynamic_ensemble(group_align(s, groups), groups).sum().backward()),
    })
    return {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "shape": f"{R} RoIs x {C + 1} logits x {K} stages", **{k: 1e3 * v for k, v in times.items()}}


def agreement(device: str, rois: int = 512) -> dict:
    """Each operation's value and input gradient on ``device`` (float32) against the CPU in float64, same inputs:
    the largest absolute difference of each."""
    from mec_cli.ops import dynamic_ensemble, group_align, multi_expert_loss, sparse_ensemble

    torch.manual_seed(1)
    R, C, K = rois, 1203, 3
    groups, labels = torch.randint(0, 3, (C,)), torch.randint(0, C + 1, (R,))
    x, s = torch.randn(R, C + 1), torch.randn(K, R, C + 1)
    cases = {"multi_expert_loss": (x, lambda t, g, lab: multi_expert_loss(t, lab, g, 1, 0.7)),
             "group_align": (s, lambda t, g, lab: group_align(t, g)),
             "dynamic_ensemble_ga": (s, lambda t, g, lab: dynamic_ensemble(group_align(t, g), g)),
             "sparse_ensemble": (s, lambda t, g, lab: sparse_ensemble(t, g))}
    out = {}
    for name, (inp, fn) in cases.items():
        results = []
        for dev, dtype in ((device, torch.float32), ("cpu", torch.float64)):
            t = inp.to(dev, dtype).clone().requires_grad_()
            value = fn(t, groups.to(dev), labels.to(dev))
            value.sum().backward()
            results.append((value.detach().double().cpu(), t.grad.double().cpu()))
        (v, g), (v64, g64) = results
        out[name] = {"value_max_abs_diff": float((v - v64).abs().max()),
                     "grad_max_abs_diff": float((g - g64).abs().max())}
    return out


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
    ap.add_argument("--device", default="cpu", help="where the operations run (cuda: a GPU)")
    ap.add_argument("--ops-only", action="store_true", help="only the operations (no mmdet, no data)")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    result = {"threads": torch.get_num_threads(), "torch": torch.__version__, "ops": ops(args.device)}
    print(json.dumps(result["ops"], indent=1), flush=True)
    if args.device != "cpu":
        result["ops_2_images"] = ops(args.device, rois=1024)  # a GPU's share of the paper's batch: 2 x 512 RoIs
        result["agreement_vs_cpu_float64"] = agreement(args.device)
        print(json.dumps({k: result[k] for k in ("ops_2_images", "agreement_vs_cpu_float64")}, indent=1), flush=True)
    if not args.ops_only:
        if not (Path(args.data_root) / "annotations" / "lvis_v1_train.json").is_file():
            raise SystemExit(f"no synthetic data under {args.data_root}: run `mec synth --out {args.data_root}` "
                             "first")
        result["steps"] = steps(args.data_root)
        print(json.dumps(result["steps"], indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
