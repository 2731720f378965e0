"""The MEC operations hold no host synchronisation and no data-dependent shape: each compiles whole, static.

``torch.compile(fullgraph=True)`` raises on any graph break, but since torch 2.1x it no longer breaks at ``.item()``
or ``nonzero``: under fullgraph it captures them as unbacked symbolic sizes (``u0``). So the graphs are handed to a
backend that also refuses any node whose value is a symbolic scalar or has a symbolic size: with ``dynamic=False``
every legitimate size is a plain int, and a symbolic one can only come from the data (a host read on a GPU). A
function that passes never makes a GPU step wait for the GPU. The graphs then run through ``aot_eager``: AOTAutograd
traces forward and backward with fake tensors; inductor would add only code generation, which is not what is
checked here and costs minutes of C++ compilation on a 2-core machine. Values and input gradients are compared with
eager.
"""
import pytest
import torch

from mec_cli.ops import (
    dynamic_ensemble,
    expert_loss,
    group_align,
    group_onehot,
    multi_expert_loss,
    sparse_ensemble,
    stage_scores,
)

C, K, R = 40, 3, 16
GROUPS = torch.arange(C) % 3  # all three groups used
GROUPS[::7] = 0


class DataDependent(Exception):
    """A graph holds a value read from the data: a symbolic scalar or a tensor of symbolic size."""


def _static_aot_eager(gm, example_inputs):
    for node in gm.graph.nodes:
        value = node.meta.get("example_value")
        for v in value if isinstance(value, (list, tuple)) else [value]:
            symbolic = isinstance(v, (torch.SymInt, torch.SymFloat, torch.SymBool)) or (
                isinstance(v, torch.Tensor) and not all(isinstance(d, int) for d in v.shape))
            if symbolic:
                raise DataDependent(node.format_node())
    return torch._dynamo.lookup_backend("aot_eager")(gm, example_inputs)


def _compiled(fn):
    torch._dynamo.reset()
    return torch.compile(fn, fullgraph=True, dynamic=False, backend=_static_aot_eager)


def _same_as_eager(fn, *inputs):
    """fn compiled whole gives eager's values and input gradients."""
    eager_in = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    comp_in = [x.clone().requires_grad_(x.is_floating_point()) for x in inputs]
    want, got = fn(*eager_in), _compiled(fn)(*comp_in)
    torch.testing.assert_close(got, want)
    want.sum().backward()
    got.sum().backward()
    for a, b in zip(eager_in, comp_in):
        if a.requires_grad:
            torch.testing.assert_close(b.grad, a.grad)


def test_multi_expert_loss_compiles_whole():
    torch.manual_seed(0)
    logits, labels = torch.randn(R, C + 1), torch.randint(0, C + 1, (R,))
    for g in range(3):
        _same_as_eager(lambda x, g=g: multi_expert_loss(x, labels, GROUPS, g, lam=0.7), logits)
    _same_as_eager(lambda x: multi_expert_loss(x, labels, GROUPS, 7, lam=0.7), logits)  # an empty expert group
    mask = GROUPS == 1  # what the loss modules hold as a buffer
    _same_as_eager(lambda x: expert_loss(x, labels, mask, lam=0.7, reduction="none"), logits)
    # seesaw's class logits: C columns, no background
    _same_as_eager(lambda x: expert_loss(x, labels.clamp(max=C - 1), mask, lam=0.7), logits[:, :C])


@pytest.mark.parametrize("mode", ["sparse", "dynamic", "mean_logits", "mean_probs"])
@pytest.mark.parametrize("align", [False, True])
def test_ensembles_and_group_alignment_compile_whole(mode, align):
    torch.manual_seed(1)
    stages = torch.randn(K, R, C + 1)
    _same_as_eager(lambda s: stage_scores(s, GROUPS, mode, align=align, num_groups=3), stages)


def test_each_ensemble_function_compiles_whole_with_its_group_count():
    torch.manual_seed(2)
    stages = torch.randn(K, R, C + 1)
    _same_as_eager(lambda s: group_align(s, GROUPS, num_groups=3), stages)
    _same_as_eager(lambda s: sparse_ensemble(s, GROUPS, num_groups=3), stages)
    _same_as_eager(lambda s: dynamic_ensemble(group_align(s, GROUPS, 3), GROUPS, tau=0.7, num_groups=3), stages)
    assert torch.equal(group_onehot(GROUPS, 3), torch.nn.functional.one_hot(GROUPS, 3).float())


def test_a_host_read_is_refused_here():
    """The check can fail: without ``num_groups`` the group count is read from the tensor (``.item()``), and
    ``nonzero`` gives a data-dependent shape; both are refused."""
    stages = torch.randn(K, R, C + 1)
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed, match=r"DataDependent: .*\bitem\b"):
        _compiled(lambda s: group_align(s, GROUPS))(stages)
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed, match=r"DataDependent: .*\bnonzero\b"):
        _compiled(lambda s: s.index_select(2, torch.nonzero(GROUPS == 1).squeeze(1)) * 2)(stages)
