"""MEC adds no host synchronisation to a training step: counted at the dispatcher on the CPU.

On a GPU, ``.item()``, ``nonzero`` and boolean-mask indexing make the host wait for the device; they pass the
dispatcher on the CPU too, where ``benchmarks/bench_gpu.py``'s :class:`HostSyncCounter` counts them. The tiny
recipe's RoI head (1,203 LVIS classes would only make it slower) computes its losses once with the multi-expert loss
and once with cross-entropy on the same inputs: both must make the same synchronisations (mmdet's sampler and
targets make some), and the loss modules none, forward and backward.
"""
import importlib.util
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

import mec_cli.models  # noqa: F401
from mec_cli.recipes import load_config, resolve_recipe

register_all_modules()
BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_gpu.py"


@pytest.fixture(scope="module")
def counter_cls():
    spec = importlib.util.spec_from_file_location("bench_gpu", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HostSyncCounter


def _count(counter_cls, fn):
    counter = counter_cls()
    with counter:
        fn()
    return counter.counts


def test_the_counter_sees_what_synchronises(counter_cls):
    x = torch.randn(5, 4)
    counts = _count(counter_cls, lambda: (x.sum().item(), torch.nonzero(x > 0), x[x > 0], float(x[0, 0]),
                                          x[torch.tensor([0, 2])], torch.unique(x)))
    unique = sum(v for k, v in counts.items() if "unique" in k)
    rest = {k: v for k, v in counts.items() if "unique" not in k}
    assert rest == {"_local_scalar_dense": 2, "nonzero": 1, "index[bool mask]": 1} and unique == 1, counts


def _loss_counts(counter_cls, loss_cfg, width):
    torch.manual_seed(0)
    loss = MODELS.build(loss_cfg)
    score = torch.randn(64, width, requires_grad=True)
    labels, weights = torch.randint(0, 1204, (64,)), torch.ones(64)

    def step():
        out = loss(score, labels, weights, avg_factor=64.0)
        sum(out.values()).backward() if isinstance(out, dict) else out.backward()

    return _count(counter_cls, step)


def test_the_expert_losses_add_no_host_sync_forward_or_backward(counter_cls):
    mec = dict(expert_group=1, class_groups=torch.randint(0, 3, (1203,)).tolist(), lam=0.7)
    assert _loss_counts(counter_cls, dict(type="MECMultiExpertLoss", **mec), 1204) == {}
    # seesaw: mmdet's SeesawLoss makes its own (the classes seen, the objectness masks); MEC's adds none
    seesaw = _loss_counts(counter_cls, dict(type="SeesawLoss", num_classes=1203), 1205)
    assert seesaw and _loss_counts(counter_cls, dict(type="MECSeesawLoss", num_classes=1203, **mec), 1205) == seesaw


def _tiny_head(recipe):
    from test_mec_head_losses import GROUPS

    cfg = load_config(resolve_recipe(recipe).file)
    if "mec" in cfg.model.roi_head:
        cfg.model.roi_head.mec.class_groups = GROUPS
    torch.manual_seed(0)
    return MODELS.build(dict(cfg.model.roi_head, train_cfg=cfg.model.train_cfg.rcnn,
                             test_cfg=cfg.model.test_cfg.rcnn)).train()


def test_a_mec_head_training_step_synchronises_as_often_as_mmdets_own(counter_cls):
    from test_mec_head_losses import _fixed_inputs

    counts = {}
    for recipe in ("tiny_baseline", "tiny"):
        head = _tiny_head(recipe)
        x, proposals, samples = _fixed_inputs()
        x = tuple(t.requires_grad_() for t in x)

        def step():
            torch.manual_seed(1)
            losses = head.loss(x, proposals, samples)
            sum(v for k, v in losses.items() if "loss" in k).backward()

        counts[recipe] = _count(counter_cls, step)
    assert sum(counts["tiny_baseline"].values()) > 0  # mmdet's sampler and targets: the counter is awake
    assert counts["tiny"] == counts["tiny_baseline"], counts
