"""MEC equations 1-6: hand-derived values, invariants and gradients."""
import math

import pytest
import torch

from mec_cli.ops import (
    dynamic_ensemble,
    dynamic_weights,
    group_align,
    mean_logit_ensemble,
    mean_prob_ensemble,
    multi_expert_loss,
    sparse_ensemble,
    stage_scores,
)

GROUPS = torch.tensor([0, 0, 1, 2, 2])  # C = 5 foreground classes in 3 groups


def _reference_loss(o, y, groups, g, lam):
    """Equations 1-2 written out literally in probability space (float64, small logits)."""
    p = torch.softmax(o, -1)
    members = [i for i in range(len(groups)) if groups[i] == g]
    if y < len(groups) and groups[y] == g:
        pt = math.exp(o[y]) / sum(math.exp(o[j]) for j in members)
        return -math.log(p[y] ** lam * pt ** (1 - lam))
    return -math.log(p[y])


def test_multi_expert_loss_hand_value():
    # Two classes in the expert group, one outside, background last.
    o = torch.tensor([[1.0, 2.0, 0.5, 0.0]], dtype=torch.float64)
    groups = torch.tensor([0, 0, 1])
    # p_1 = e^2 / (e + e^2 + e^0.5 + 1); p_tilde_1 = e^2 / (e + e^2); lam = 0.7
    z = math.e + math.e ** 2 + math.e ** 0.5 + 1
    expected = -(0.7 * math.log(math.e ** 2 / z) + 0.3 * math.log(math.e ** 2 / (math.e + math.e ** 2)))
    got = multi_expert_loss(o, torch.tensor([1]), groups, expert_group=0, lam=0.7)
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_multi_expert_loss_matches_literal_equations():
    torch.manual_seed(0)
    o = torch.randn(40, 6, dtype=torch.float64)
    y = torch.randint(0, 6, (40,))
    for g in range(3):
        got = multi_expert_loss(o, y, GROUPS, g, lam=0.3, reduction="none")
        ref = torch.tensor([_reference_loss(o[r], int(y[r]), GROUPS.tolist(), g, 0.3) for r in range(40)],
                           dtype=torch.float64)
        torch.testing.assert_close(got, ref)


def test_lambda_one_is_cross_entropy_and_other_groups_reduce_to_ce():
    torch.manual_seed(1)
    o = torch.randn(30, 6)
    y = torch.randint(0, 6, (30,))
    ce = torch.nn.functional.cross_entropy(o, y, reduction="none")
    torch.testing.assert_close(multi_expert_loss(o, y, GROUPS, 1, lam=1.0, reduction="none"), ce)
    loss = multi_expert_loss(o, y, GROUPS, 1, lam=0.7, reduction="none")
    outside = (y == 5) | (GROUPS[y.clamp(max=4)] != 1)
    assert outside.any() and (~outside).any()
    torch.testing.assert_close(loss[outside], ce[outside])
    assert (loss[~outside] < ce[~outside]).all()  # p_tilde >= p inside the group, so the loss shrinks


def test_reductions():
    o = torch.randn(7, 6)
    y = torch.randint(0, 6, (7,))
    per = multi_expert_loss(o, y, GROUPS, 0, reduction="none")
    assert per.shape == (7,)
    torch.testing.assert_close(multi_expert_loss(o, y, GROUPS, 0, reduction="mean"), per.mean())
    torch.testing.assert_close(multi_expert_loss(o, y, GROUPS, 0, reduction="sum"), per.sum())
    with pytest.raises(ValueError):
        multi_expert_loss(o, y, GROUPS, 0, reduction="avg")


def test_huge_logits_stay_finite_with_finite_gradients():
    o = (torch.randn(16, 6) * 1e4).requires_grad_()
    y = torch.arange(16) % 6
    loss = multi_expert_loss(o, y, GROUPS, 2, lam=0.7)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(o.grad).all()


def test_empty_expert_group_gives_plain_ce_without_nan():
    o = torch.randn(5, 6, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 5])
    loss = multi_expert_loss(o, y, GROUPS, expert_group=7)
    loss.backward()
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(o, y))
    assert torch.isfinite(o.grad).all()


def test_loss_gradcheck_float64():
    o = torch.randn(6, 6, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 3, 4, 5])
    assert torch.autograd.gradcheck(lambda x: multi_expert_loss(x, y, GROUPS, 0, lam=0.6), (o,))


def test_group_align_hand_value_and_zero_group_means():
    o = torch.tensor([[1.0, 3.0, 5.0, 2.0, 6.0, 9.0]])  # last column is background
    out = group_align(o, GROUPS)
    torch.testing.assert_close(out, torch.tensor([[-1.0, 1.0, 0.0, -2.0, 2.0, 9.0]]))
    x = torch.randn(3, 4, 5)
    a = group_align(x, GROUPS)
    for g in range(3):
        torch.testing.assert_close(a[..., GROUPS == g].mean(-1), torch.zeros(3, 4), atol=1e-6, rtol=0)


def test_sparse_ensemble_hand_value_and_identical_stages():
    stages = torch.arange(3 * 1 * 6, dtype=torch.float32).view(3, 1, 6)
    out = sparse_ensemble(stages, GROUPS)
    # class 0,1 from stage 0; class 2 from stage 1; class 3,4 from stage 2; background = mean of stages
    torch.testing.assert_close(out, torch.tensor([[0.0, 1.0, 8.0, 15.0, 16.0, (5 + 11 + 17) / 3]]))
    one = torch.randn(4, 6)
    torch.testing.assert_close(sparse_ensemble(one.expand(3, 4, 6), GROUPS), one)


def test_dynamic_ensemble_hand_value():
    groups = torch.tensor([0, 1])
    stages = torch.tensor([[[1.0, 0.0]], [[0.0, 2.0]]])  # (K=2, R=1, C=2), one class per group
    # group 0: LSE over {class 0} = o_0 -> w^k = softmax([1, 0]); group 1: softmax([0, 2])
    w0 = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    w1 = torch.softmax(torch.tensor([0.0, 2.0]), 0)
    expected = torch.tensor([[w0[0] * 1 + w0[1] * 0, w1[0] * 0 + w1[1] * 2]])
    torch.testing.assert_close(dynamic_ensemble(stages, groups, tau=1.0), expected)


def test_dynamic_weights_properties():
    torch.manual_seed(2)
    stages = torch.randn(3, 8, 6)
    w = dynamic_weights(stages, GROUPS, tau=1.0)
    torch.testing.assert_close(w.sum(0), torch.ones(8, 5))
    # tau -> inf: the uniform mean of stages (background included)
    torch.testing.assert_close(dynamic_ensemble(stages, GROUPS, tau=1e6), mean_logit_ensemble(stages), atol=1e-4,
                               rtol=0)
    # tau -> 0: per group, the stage whose group LSE (~ group max) is largest
    hard = dynamic_weights(stages, GROUPS, tau=1e-4)
    fg = stages[..., :5]
    for g in range(3):
        best = fg[..., GROUPS == g].max(-1).values.argmax(0)  # (R,)
        torch.testing.assert_close(hard[..., GROUPS == g].argmax(0),
                                   best.unsqueeze(-1).expand(-1, int((GROUPS == g).sum())))


def test_dynamic_ensemble_gradcheck_float64():
    x = torch.randn(3, 4, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s: dynamic_ensemble(group_align(s, GROUPS), GROUPS, tau=0.7), (x,))
    assert torch.autograd.gradcheck(lambda s: sparse_ensemble(s, GROUPS), (x,))


def test_background_is_unaligned_and_averaged():
    stages = torch.randn(3, 5, 6)
    for fn in (lambda s: sparse_ensemble(s, GROUPS), lambda s: dynamic_ensemble(s, GROUPS), mean_logit_ensemble):
        torch.testing.assert_close(fn(stages)[:, 5], stages[..., 5].mean(0))
    torch.testing.assert_close(group_align(stages, GROUPS)[..., 5], stages[..., 5])


def test_mean_prob_ensemble_is_average_of_softmax():
    stages = torch.randn(3, 5, 6)
    out = mean_prob_ensemble(stages)
    torch.testing.assert_close(out, (stages.softmax(-1)[0] + stages.softmax(-1)[1] + stages.softmax(-1)[2]) / 3)
    torch.testing.assert_close(out.sum(-1), torch.ones(5))


def test_stage_scores_modes_return_probabilities():
    stages = torch.randn(3, 5, 6)
    for mode in ("mean_logits", "mean_probs", "sparse", "dynamic"):
        for align in (False, True):
            p = stage_scores(stages, GROUPS, mode, align=align)
            assert p.shape == (5, 6)
            torch.testing.assert_close(p.sum(-1), torch.ones(5))
    torch.testing.assert_close(stage_scores(stages, GROUPS, "stage", stage=1), stages[1].softmax(-1))
    with pytest.raises(ValueError):
        stage_scores(stages, None, "sparse")


def test_device_and_dtype_follow_inputs():
    stages = torch.randn(3, 2, 6, dtype=torch.float64)
    for out in (group_align(stages, GROUPS), sparse_ensemble(stages, GROUPS), dynamic_ensemble(stages, GROUPS)):
        assert out.dtype == torch.float64 and out.device == stages.device


def test_four_groups_and_many_classes():
    torch.manual_seed(3)
    groups = torch.randint(0, 4, (1203,))
    stages = torch.randn(4, 16, 1204)
    assert sparse_ensemble(stages, groups).shape == (16, 1204)
    assert dynamic_ensemble(group_align(stages, groups), groups).shape == (16, 1204)
    y = torch.randint(0, 1204, (16,))
    assert torch.isfinite(multi_expert_loss(stages[0], y, groups, 3))
