"""UW, DWA, RLW, GLS, FAMO, GradNorm, DB-MTL and GradDrop: hand checks of each update rule,
state round trips through `state_dict`, and their Hydra configs."""

from __future__ import annotations

import hydra
import pytest
import torch
import torch.nn.functional as F
from conftest import compose_config

from mtl.weighting import (
    DBMTL,
    FAMO,
    DynamicWeightAverage,
    GeometricLossStrategy,
    GradDrop,
    GradNorm,
    LossWeighting,
    RandomLossWeighting,
    UncertaintyWeighting,
)

# -- UW ---------------------------------------------------------------------------------------


def test_uw_weights_gradients_and_sigma():
    uw = UncertaintyWeighting(["a", "b"])
    assert any(p is uw.log_vars for p in uw.parameters())
    s = torch.tensor([0.5, -1.0])
    with torch.no_grad():
        uw.log_vars.copy_(s)
    losses = torch.tensor([2.0, 3.0], requires_grad=True)
    total, weights = uw(losses, losses.detach())
    assert torch.allclose(weights, torch.exp(-s))
    assert total.item() == pytest.approx((torch.exp(-s) * losses.detach() + s).sum().item())
    total.backward()
    # d/ds_i [exp(-s_i) L_i + s_i] = 1 - exp(-s_i) L_i
    assert torch.allclose(uw.log_vars.grad, 1 - torch.exp(-s) * torch.tensor([2.0, 3.0]))
    assert torch.allclose(losses.grad, torch.exp(-s))
    metrics = uw.extra_metrics()
    assert metrics["sigma/a"].item() == pytest.approx(torch.exp(torch.tensor(0.25)).item())
    assert metrics["sigma/b"].item() == pytest.approx(torch.exp(torch.tensor(-0.5)).item())


# -- DWA --------------------------------------------------------------------------------------


def test_dwa_equal_then_softmax_of_loss_ratios():
    dwa = DynamicWeightAverage(["a", "b", "c"])
    epochs = [
        [[1.0, 2.0, 4.0], [3.0, 2.0, 2.0]],  # averages [2, 2, 3]
        [[1.0, 1.0, 3.0], [1.0, 2.0, 3.0]],  # averages [1, 1.5, 3]
        [[0.5, 1.5, 1.0]],
    ]
    averages = [torch.tensor(e).mean(0) for e in epochs]
    for epoch in range(2):
        for step_losses in epochs[epoch]:
            _, w = dwa(torch.tensor(step_losses))
            assert w.tolist() == [1.0, 1.0, 1.0]
            dwa.observe_losses(torch.tensor(step_losses))
        dwa.on_train_epoch_end()
    expected = 3 * torch.softmax((averages[1] / averages[0]) / 2.0, dim=0)
    _, w = dwa(torch.tensor([5.0, 5.0, 5.0]))
    assert torch.allclose(w, expected)
    assert w.sum().item() == pytest.approx(3.0)
    assert w[2] > w[1] > w[0]  # task c did not improve, task a halved
    for step_losses in epochs[2]:
        dwa.observe_losses(torch.tensor(step_losses))
    dwa.on_train_epoch_end()
    _, w = dwa(torch.tensor([1.0, 1.0, 1.0]))
    assert torch.allclose(w, 3 * torch.softmax((averages[2] / averages[1]) / 2.0, dim=0))


def test_dwa_mid_epoch_state_round_trip():
    a = DynamicWeightAverage(["a", "b"])
    for losses in ([1.0, 2.0], [2.0, 2.0], [1.0, 1.0]):
        a.observe_losses(torch.tensor(losses))
        if losses == [2.0, 2.0]:
            a.on_train_epoch_end()
    b = DynamicWeightAverage(["a", "b"])
    b.load_state_dict(a.state_dict())
    for m in (a, b):
        m.observe_losses(torch.tensor([0.5, 2.0]))
        m.on_train_epoch_end()
    assert torch.equal(a(torch.ones(2))[1], b(torch.ones(2))[1])
    assert not torch.equal(a(torch.ones(2))[1], torch.ones(2))


# -- RLW --------------------------------------------------------------------------------------


def test_rlw_weights_are_a_seeded_distribution_per_step():
    rng_state = torch.get_rng_state()
    rlw = RandomLossWeighting(["a", "b", "c"], seed=3)
    _, w0 = rlw(torch.ones(3))
    assert (w0 > 0).all() and w0.sum().item() == pytest.approx(1.0)
    assert torch.equal(rlw(torch.ones(3))[1], w0)  # micro-batches of one step agree
    assert torch.equal(RandomLossWeighting(["a", "b", "c"], seed=3)(torch.ones(3))[1], w0)
    assert not torch.equal(RandomLossWeighting(["a", "b", "c"], seed=4)(torch.ones(3))[1], w0)
    rlw.step_done()
    _, w1 = rlw(torch.ones(3))
    assert not torch.allclose(w1, w0)
    resumed = RandomLossWeighting(["a", "b", "c"], seed=3)
    resumed.load_state_dict(rlw.state_dict())
    assert torch.equal(resumed(torch.ones(3))[1], w1)
    assert torch.equal(torch.get_rng_state(), rng_state)


# -- GLS --------------------------------------------------------------------------------------


def test_gls_total_is_geometric_mean_and_weights_its_gradient():
    gls = GeometricLossStrategy(["a", "b", "c"])
    losses = torch.tensor([0.5, 2.0, 8.0], requires_grad=True)
    total, weights = gls(losses, losses.detach())
    assert total.item() == pytest.approx(2.0)  # (0.5 * 2 * 8) ** (1/3)
    (direct,) = torch.autograd.grad(losses.prod() ** (1 / 3), losses)
    assert torch.allclose(weights, direct)
    (through_total,) = torch.autograd.grad(total, losses)
    assert torch.allclose(through_total, direct)
    # with a (DDP-averaged) reference, the weights are the reference's
    _, ref_weights = gls(losses, torch.tensor([1.0, 1.0, 8.0]))
    assert torch.allclose(ref_weights, 2.0 / (3 * torch.tensor([1.0, 1.0, 8.0])))


# -- FAMO -------------------------------------------------------------------------------------


class ReferenceFAMO:
    """The formulas of the reference implementation (github.com/Cranial-XIX/FAMO, famo.py)."""

    def __init__(self, n_tasks: int, gamma: float, w_lr: float) -> None:
        self.min_losses = torch.zeros(n_tasks)
        self.w = torch.zeros(n_tasks, requires_grad=True)
        self.w_opt = torch.optim.Adam([self.w], lr=w_lr, weight_decay=gamma)

    def get_weighted_loss(self, losses: torch.Tensor) -> torch.Tensor:
        self.prev_loss = losses.detach()
        z = F.softmax(self.w, -1)
        d = losses - self.min_losses + 1e-8
        c = (z / d).sum().detach()
        return (d.log() * z / c).sum()

    def update(self, curr_loss: torch.Tensor) -> None:
        delta = (self.prev_loss - self.min_losses + 1e-8).log() - (
            curr_loss - self.min_losses + 1e-8
        ).log()
        (d,) = torch.autograd.grad(F.softmax(self.w, -1), self.w, grad_outputs=delta)
        self.w_opt.zero_grad()
        self.w.grad = d
        self.w_opt.step()


def test_famo_raises_weight_of_the_task_that_improved_less():
    famo = FAMO(["a", "b"])
    before = torch.tensor([1.0, 1.0])
    famo(before)
    famo.after_step(before, torch.tensor([0.5, 0.99]))
    z = torch.softmax(famo.logits, dim=0)
    assert z[1] > 0.5 > z[0]


def test_famo_matches_reference_formulas():
    gen = torch.Generator().manual_seed(0)
    ref = ReferenceFAMO(3, gamma=0.001, w_lr=0.025)
    famo = FAMO(["a", "b", "c"], w_lr=0.025, gamma=0.001)
    for _ in range(5):
        before = torch.rand(3, generator=gen) + 0.1
        after = before * (0.8 + 0.3 * torch.rand(3, generator=gen))
        ref_losses = before.clone().requires_grad_(True)
        ref_total = ref.get_weighted_loss(ref_losses)
        (ref_grad,) = torch.autograd.grad(ref_total, ref_losses)
        losses = before.clone().requires_grad_(True)
        total, weights = famo(losses, losses.detach())
        (grad,) = torch.autograd.grad(total, losses)
        assert total.item() == pytest.approx(ref_total.item(), rel=1e-5)
        assert torch.allclose(weights, ref_grad, rtol=1e-5)
        assert torch.allclose(grad, ref_grad, rtol=1e-5)
        ref.update(after)
        famo.after_step(before, after)
        famo.step_done()
        assert torch.allclose(famo.logits, ref.w.detach(), atol=1e-6)


def test_famo_state_round_trip_continues_identically():
    a = FAMO(["a", "b"])
    gen = torch.Generator().manual_seed(1)
    steps = [
        (torch.rand(2, generator=gen) + 0.5, torch.rand(2, generator=gen) + 0.2) for _ in range(6)
    ]
    for before, after in steps[:3]:
        a.after_step(before, after)
        a.step_done()
    b = FAMO(["a", "b"])
    b.load_state_dict(a.state_dict())
    for before, after in steps[3:]:
        for m in (a, b):
            m.after_step(before, after)
            m.step_done()
        assert torch.equal(a(before)[1], b(before)[1])
    assert torch.equal(a.logits, b.logits) and int(b.adam_steps) == 6


# -- GradNorm ---------------------------------------------------------------------------------


def test_gradnorm_moves_weights_towards_target_norms():
    gn = GradNorm(["a", "b"], alpha=1.5, lr=0.025)
    gn.observe_losses(torch.tensor([1.0, 4.0]))  # L(0); both tasks at the same training rate
    gram = torch.diag(torch.tensor([4.0, 1.0]))  # norms 2 and 1, target 1.5 for both
    used = gn.compute_weights(gram)
    assert used.tolist() == [1.0, 1.0]  # this step uses the current weights
    raw = torch.tensor([1 - 0.025 * 2.0, 1 + 0.025 * 1.0])
    assert torch.allclose(gn.task_weights, 2 * raw / raw.sum())
    assert gn.task_weights[0] < 1 < gn.task_weights[1]
    # a task that trained slower (larger L / L(0)) gets a larger target: its weight grows
    gn2 = GradNorm(["a", "b"])
    gn2.observe_losses(torch.tensor([1.0, 1.0]))
    gn2.observe_losses(torch.tensor([0.2, 0.9]))
    gn2.compute_weights(torch.eye(2))
    assert gn2.task_weights[1] > 1 > gn2.task_weights[0]
    # the asymmetry decides the sign here: G = [1, 1.2], mean 1.1, r = [0.93, 1.07];
    # alpha = 1.5 gives targets 1.1 r^1.5 = [0.987, 1.217] (alpha = 1 would give [1.023, 1.177])
    gn3 = GradNorm(["a", "b"], alpha=1.5, lr=0.025)
    gn3.observe_losses(torch.tensor([1.0, 1.0]))
    gn3.observe_losses(torch.tensor([0.93, 1.07]))
    gn3.compute_weights(torch.diag(torch.tensor([1.0, 1.44])))
    raw = torch.tensor([1 - 0.025 * 1.0, 1 + 0.025 * 1.2])
    assert torch.allclose(gn3.task_weights, 2 * raw / raw.sum())


def test_gradnorm_weights_stay_nonnegative_and_sum_to_k():
    gn = GradNorm(["a", "b", "c"], lr=10.0)
    gn.observe_losses(torch.tensor([1.0, 1.0, 1.0]))
    for _ in range(3):
        gn.compute_weights(torch.diag(torch.tensor([100.0, 1.0, 0.01])))
        assert (gn.task_weights >= 0).all()
        assert gn.task_weights.sum().item() == pytest.approx(3.0)
    grads = torch.randn(3, 7)
    w = gn.task_weights.clone()
    assert torch.allclose(gn.aggregate(grads), w @ grads, atol=1e-6)


def test_gradnorm_state_round_trip():
    gen = torch.Generator().manual_seed(2)
    a = GradNorm(["a", "b"])
    a.observe_losses(torch.tensor([2.0, 1.0]))
    a.compute_weights(torch.diag(torch.tensor([3.0, 0.5])))
    b = GradNorm(["a", "b"])
    b.load_state_dict(a.state_dict())
    for _ in range(3):
        losses, g = torch.rand(2, generator=gen) + 0.5, torch.randn(2, 5, generator=gen)
        for m in (a, b):
            m.observe_losses(losses)
        assert torch.equal(a.compute_weights(g @ g.T), b.compute_weights(g @ g.T))
    assert torch.equal(a.initial_losses, torch.tensor([2.0, 1.0]))
    assert torch.equal(a.task_weights, b.task_weights)


# -- DB-MTL -----------------------------------------------------------------------------------


def test_db_mtl_log_losses_and_max_norm_scaling():
    db = DBMTL(["a", "b", "c"])
    assert torch.allclose(
        db.transform_losses(torch.tensor([1.0, 0.5])), torch.log(torch.tensor([1.0, 0.5]) + 1e-8)
    )
    gen = torch.Generator().manual_seed(0)
    g1 = torch.randn(3, 40, generator=gen) * torch.tensor([[1.0], [10.0], [0.1]])
    g2 = torch.randn(3, 40, generator=gen) * torch.tensor([[1.0], [10.0], [0.1]])
    db.aggregate(g1)
    direction = db.aggregate(g2)
    ema = 0.9 * (0.1 * g1) + 0.1 * g2  # beta = 0.9, beta_sigma = 0, EMA starts at 0
    norms = ema.norm(dim=1)
    scaled = db.last_scales[:, None] * ema
    assert torch.allclose(scaled.norm(dim=1), norms.max().expand(3), rtol=1e-5)
    assert torch.allclose(direction, scaled.sum(0), rtol=1e-5, atol=1e-6)
    assert db.extra_metrics()["scale/b"].item() == pytest.approx(1.0, rel=1e-5)


def test_db_mtl_ema_state_round_trip():
    gen = torch.Generator().manual_seed(3)
    grads = [torch.randn(2, 30, generator=gen) for _ in range(4)]
    a = DBMTL(["a", "b"], beta_sigma=0.5)
    for g in grads[:2]:
        a.aggregate(g)
    state = a.state_dict()
    assert "_extra_state" in state
    b = DBMTL(["a", "b"], beta_sigma=0.5)
    b.load_state_dict(state)
    for g in grads[2:]:
        assert torch.equal(a.aggregate(g), b.aggregate(g))
    # beta_t = beta / t^beta_sigma, EMA from 0
    ema = torch.zeros(2, 30)
    for t, g in enumerate(grads, start=1):
        beta_t = 0.9 / t**0.5
        ema = beta_t * ema + (1 - beta_t) * g
    assert torch.allclose(a.grad_ema, ema, atol=1e-6)


def test_db_mtl_rejects_feature_gradients():
    with pytest.raises(ValueError, match="EMA"):
        DBMTL(["a", "b"], grad_source="features")


# -- GradDrop ---------------------------------------------------------------------------------


def test_graddrop_keeps_one_sign_per_element():
    gen = torch.Generator().manual_seed(0)
    gd = GradDrop(["a", "b", "c"], seed=5)
    grads = torch.randn(3, 400, generator=gen)
    grads[:, 0] = torch.tensor([1.0, 2.0, 0.5])  # all positive: P = 1, always kept
    grads[:, 1] = torch.tensor([-1.0, -2.0, -0.5])  # all negative: P ~ 0, always kept
    out = gd.aggregate(grads)
    pos = grads.clamp_min(0).sum(0)
    neg = grads.clamp_max(0).sum(0)
    assert out[0].item() == pytest.approx(3.5) and out[1].item() == pytest.approx(-3.5)
    is_pos, is_neg = torch.isclose(out, pos), torch.isclose(out, neg)
    assert (is_pos | is_neg).all()
    mixed = (grads > 0).any(0) & (grads < 0).any(0)
    assert (is_pos & mixed & ~is_neg).any() and (is_neg & mixed & ~is_pos).any()
    assert torch.equal(gd.aggregate(grads), out)  # same (seed, step): same draw
    gd.step_done()
    assert not torch.equal(gd.aggregate(grads), out)
    assert torch.allclose(GradDrop(["a", "b", "c"], leak=1.0).aggregate(grads), grads.sum(0))


def test_graddrop_batched_uses_signed_batch_sums():
    gen = torch.Generator().manual_seed(1)
    gd = GradDrop(["a", "b"], seed=2)
    grads = torch.randn(2, 4, 50, generator=gen)
    inputs = torch.randn(4, 50, generator=gen)
    out = gd.aggregate_batched(grads, inputs)
    # LibMTL's GradDrop, with U drawn from the same (seed, step) generator
    signed = (grads * inputs.sign()).sum(1)
    purity = 0.5 * (1 + signed.sum(0) / (signed.abs().sum(0) + 1e-7))
    u = torch.rand(50, generator=gd.step_generator())
    mask = (purity.gt(u) & signed.gt(0)) | (purity.lt(u) & signed.lt(0))
    assert torch.allclose(out, (grads * mask[:, None, :]).sum(0))
    assert out.shape == (4, 50)
    assert not torch.allclose(out, grads.sum(0))


def test_graddrop_rejects_parameter_gradients():
    with pytest.raises(ValueError, match="shared activation"):
        GradDrop(["a", "b"], grad_source="params")


# -- configs ----------------------------------------------------------------------------------

CONFIGS = {
    "uw": UncertaintyWeighting,
    "dwa": DynamicWeightAverage,
    "rlw": RandomLossWeighting,
    "gls": GeometricLossStrategy,
    "famo": FAMO,
    "gradnorm": GradNorm,
    "db_mtl": DBMTL,
    "graddrop": GradDrop,
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_composes_and_instantiates(tmp_path, name):
    cfg = compose_config(tmp_path, [f"weighting={name}", "seed=11"])
    weighting = hydra.utils.instantiate(cfg.weighting, _convert_="all")(task_names=["seg", "cls"])
    assert type(weighting) is CONFIGS[name]
    assert weighting.task_names == ["seg", "cls"]
    if name in ("rlw", "graddrop"):
        assert weighting.seed == 11
    if isinstance(weighting, LossWeighting):
        out = weighting(torch.tensor([1.0, 2.0]))[1]
    else:
        out = weighting.aggregate(torch.randn(2, 6))
    assert torch.isfinite(out).all()
