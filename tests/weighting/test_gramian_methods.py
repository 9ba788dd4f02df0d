"""Gramian aggregators against the property that defines each of them, hand-worked 2-task
examples, state/randomness/failure handling, and their Hydra configs."""

from __future__ import annotations

import copy
import inspect
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import compose_config
from hydra.utils import instantiate
from omegaconf import OmegaConf
from scipy.linalg import sqrtm
from scipy.optimize import OptimizeResult, minimize

from mtl.weighting import (
    IMTL,
    MGDA,
    AlignedMTL,
    CAGrad,
    GradientWeighting,
    GradVac,
    NashMTL,
    PCGrad,
    SolverError,
    UPGrad,
)

ALL = [PCGrad, GradVac, CAGrad, MGDA, IMTL, AlignedMTL, UPGrad, NashMTL]
SHAPES = [(2, 3), (2, 50), (3, 7), (3, 50), (5, 8), (5, 64)]  # (T, D), D >= T
SEEDS = [0, 1, 2]

# g1 = (1, 0), g2 = (-1, 1): |g1|^2 = 1, |g2|^2 = 2, g1.g2 = -1 (a 135 degree conflict)
HAND = torch.tensor([[1.0, 0.0], [-1.0, 1.0]], dtype=torch.float64)


def names(t: int) -> list[str]:
    return [f"t{i}" for i in range(t)]


def grads(seed: int, t: int, d: int, conflict: bool = True) -> torch.Tensor:
    """Random task gradients of different scales; with `conflict`, tasks 1.. partly oppose 0."""
    g = torch.Generator().manual_seed(seed)
    out = torch.randn(t, d, generator=g, dtype=torch.float64)
    out *= torch.exp(torch.randn(t, 1, generator=g, dtype=torch.float64))
    if conflict:
        out[1:] -= 0.7 * out[0] * (out[1:].norm(dim=1, keepdim=True) / out[0].norm())
    return out


def gram(g: torch.Tensor) -> torch.Tensor:
    return g @ g.T


# -- shared contract ---------------------------------------------------------------------------
@pytest.mark.parametrize("cls", ALL)
def test_aggregate_is_weights_from_gramian_times_grads(cls):
    for t, d in [(2, 6), (3, 40), (5, 40)]:
        g = grads(t + d, t, d).float()
        method = cls(names(t))
        twin = copy.deepcopy(method)  # stateful methods: same state for both calls
        expected = twin.weights_from_gramian(g @ g.T) @ g
        torch.testing.assert_close(method.aggregate(g), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cls", [PCGrad, GradVac, CAGrad, UPGrad])
def test_params_only_methods_refuse_features(cls):
    with pytest.raises(ValueError, match="does not support grad_source='features'") as err:
        cls(["a", "b"], grad_source="features")
    assert "shared parameters" in str(err.value)  # says why
    assert cls.grad_sources == ("params",)


@pytest.mark.parametrize("cls", [MGDA, IMTL, AlignedMTL, NashMTL])
def test_feature_capable_methods_accept_features(cls):
    assert cls(["a", "b"], grad_source="features").grad_source == "features"


# -- PCGrad --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("d", [2, 10, 100])
def test_pcgrad_two_tasks_removes_the_conflict(seed, d):
    g = grads(seed, 2, d)
    assert (g[0] @ g[1]) < 0  # the construction conflicts
    c = PCGrad(["a", "b"], seed=seed).coefficients(gram(g))
    projected = c @ g
    # each projected gradient is orthogonal to (so not conflicting with) the other original
    tol = 1e-10 * float(g.norm()) ** 2
    assert float(projected[0] @ g[1]) == pytest.approx(0.0, abs=tol)
    assert float(projected[1] @ g[0]) == pytest.approx(0.0, abs=tol)
    # and keeps its component along its own task
    assert (projected[0] @ g[0]) > 0 and (projected[1] @ g[1]) > 0


@pytest.mark.parametrize("t", [2, 3, 5])
def test_pcgrad_leaves_non_conflicting_gradients_unchanged(t):
    g = torch.rand(t, 20, generator=torch.Generator().manual_seed(t), dtype=torch.float64)
    assert (gram(g) >= 0).all()  # non-negative vectors never conflict
    method = PCGrad(names(t))
    torch.testing.assert_close(method.coefficients(gram(g)), torch.eye(t, dtype=torch.float64))
    torch.testing.assert_close(method.aggregate(g), g.sum(0))


def test_pcgrad_hand_example():
    # g1.g2 = -1 < 0: g1_PC = g1 - (-1/2) g2 = (0.5, 0.5) = 1 g1 + 0.5 g2,
    #                 g2_PC = g2 - (-1/1) g1 = (0, 1)     = 1 g1 + 1 g2;  sum (0.5, 1.5)
    w = PCGrad(["a", "b"]).weights_from_gramian(gram(HAND))
    torch.testing.assert_close(w, torch.tensor([2.0, 1.5], dtype=torch.float64))
    torch.testing.assert_close(w @ HAND, torch.tensor([0.5, 1.5], dtype=torch.float64))


def test_pcgrad_randomness_is_seeded_by_step_and_leaves_global_rng_alone():
    m = gram(grads(7, 5, 6))
    state = torch.get_rng_state()
    a, b = PCGrad(names(5), seed=3), PCGrad(names(5), seed=3)
    seen = set()
    for _ in range(8):
        wa, wb = a.weights_from_gramian(m), b.weights_from_gramian(m)
        torch.testing.assert_close(wa, wb, rtol=0, atol=0)
        seen.add(tuple(np.round(wa.numpy(), 10)))
        a.step_done()
        b.step_done()
    assert len(seen) > 1  # the order (and so the result) changes with the step
    assert torch.equal(torch.get_rng_state(), state)
    # a resumed instance at the same step draws the same order
    resumed = PCGrad(names(5), seed=3)
    resumed.load_state_dict(a.state_dict())
    torch.testing.assert_close(resumed.weights_from_gramian(m), a.weights_from_gramian(m))


# -- GradVac -------------------------------------------------------------------------------------
def cosine(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(u @ v / (u.norm() * v.norm()))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("target", [0.0, 0.3])
def test_gradvac_raises_the_cosine_to_its_target(seed, target):
    g = grads(seed, 2, 30)
    method = GradVac(["a", "b"], seed=seed, beta=0.01)
    method.phi_hat.fill_(target)
    target = float(method.phi_hat[0, 1])  # as stored (float32)
    phi = cosine(g[0], g[1])
    assert phi < target
    adjusted = method.coefficients(gram(g)) @ g
    assert cosine(adjusted[0], g[1]) == pytest.approx(target, abs=1e-9)
    assert cosine(adjusted[1], g[0]) == pytest.approx(target, abs=1e-9)
    # EMA of the pre-adjustment cosine, for every visited pair
    expected = (1 - 0.01) * target + 0.01 * phi
    assert method.phi_hat[0, 1].item() == pytest.approx(expected, rel=1e-5)
    assert method.phi_hat[1, 0].item() == pytest.approx(expected, rel=1e-5)


def test_gradvac_leaves_gradients_above_target_alone():
    g = torch.rand(3, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    method = GradVac(names(3))  # targets 0, all cosines > 0
    torch.testing.assert_close(method.coefficients(gram(g)), torch.eye(3, dtype=torch.float64))
    assert (method.phi_hat.fill_diagonal_(1.0) > 0).all()  # EMA moved towards the cosines


def test_gradvac_hand_example():
    # target 0 makes GradVac PCGrad: w = |g_i| (0 - phi) / |g_j| = -g_i.g_j / |g_j|^2,
    # so weights (2, 1.5) as in PCGrad; phi_hat <- 0.01 cos(g1, g2) = -0.01 / sqrt(2)
    method = GradVac(["a", "b"])
    w = method.weights_from_gramian(gram(HAND))
    torch.testing.assert_close(w, torch.tensor([2.0, 1.5], dtype=torch.float64))
    assert method.phi_hat[0, 1].item() == pytest.approx(-0.01 / math.sqrt(2), rel=1e-6)


def test_gradvac_state_resumes_the_same_trajectory():
    a = GradVac(names(3), seed=5, beta=0.5)
    for step in range(4):
        a.weights_from_gramian(gram(grads(step, 3, 12)))
        a.step_done()
    state = a.state_dict()
    assert "phi_hat" in state and state["phi_hat"].abs().sum() > 0
    b = GradVac(names(3), seed=5, beta=0.5)
    b.load_state_dict(state)
    m = gram(grads(99, 3, 12))
    torch.testing.assert_close(b.weights_from_gramian(m), a.weights_from_gramian(m))
    torch.testing.assert_close(b.phi_hat, a.phi_hat)


# -- MGDA ------------------------------------------------------------------------------------------
def scipy_min_norm(m: np.ndarray) -> float:
    t = m.shape[0]
    res = minimize(
        lambda x: x @ m @ x,
        np.full(t, 1.0 / t),
        jac=lambda x: 2 * m @ x,
        method="SLSQP",
        bounds=[(0.0, 1.0)] * t,
        constraints={"type": "eq", "fun": lambda x: x.sum() - 1.0},
        options={"ftol": 1e-15, "maxiter": 1000},
    )
    return float(res.x @ m @ res.x)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("t", "d"), SHAPES)
def test_mgda_is_the_min_norm_point_of_the_convex_hull(seed, t, d):
    g = grads(seed, t, d)
    m = gram(g)
    method = MGDA(names(t), on_failure="raise")
    w = method.weights_from_gramian(m)
    assert (w >= 0).all() and w.sum().item() == pytest.approx(1.0)
    direction = w @ g
    norm2 = float(direction @ direction)
    scale = float(m.trace())
    assert norm2 <= scipy_min_norm(m.numpy()) + 1e-6 * scale
    # optimality (KKT): every task gradient has g_i . d >= |d|^2
    assert (g @ direction >= norm2 - 1e-4 * scale).all()


@pytest.mark.parametrize("seed", SEEDS)
def test_mgda_two_tasks_closed_form(seed):
    g = grads(seed, 2, 9)
    diff = g[0] - g[1]
    gamma = float(((g[1] - g[0]) @ g[1]) / (diff @ diff))
    gamma = min(max(gamma, 0.0), 1.0)
    w = MGDA(["a", "b"]).weights_from_gramian(gram(g))
    torch.testing.assert_close(w, torch.tensor([gamma, 1 - gamma], dtype=torch.float64))


def test_mgda_hand_example_and_dominated_gradient():
    # gamma = (|g2|^2 - g1.g2) / |g1 - g2|^2 = (2 + 1) / 5 = 0.6; d = (0.2, 0.4), and
    # g1.d = g2.d = 0.2 = |d|^2
    w = MGDA(["a", "b"]).weights_from_gramian(gram(HAND))
    torch.testing.assert_close(w, torch.tensor([0.6, 0.4], dtype=torch.float64))
    # g1 = (1, 0), g2 = (3, 1): g1.g2 = 3 >= |g1|^2, so g1 itself is the min-norm point
    w = MGDA(["a", "b"]).weights_from_gramian(gram(torch.tensor([[1.0, 0.0], [3.0, 1.0]])))
    torch.testing.assert_close(w, torch.tensor([1.0, 0.0]))


def test_mgda_normalization_solves_on_normalised_gradients():
    g = grads(4, 3, 10)
    losses = torch.tensor([0.5, 2.0, 4.0], dtype=torch.float64)
    for kind, scale in [
        ("l2", g.norm(dim=1)),
        ("loss", losses),
        ("loss+", losses * g.norm(dim=1)),
    ]:
        method = MGDA(names(3), normalization=kind)
        method.observe_losses(losses)
        w = method.weights_from_gramian(gram(g))
        expected = MGDA(names(3)).weights_from_gramian(gram(g / scale[:, None]))
        # the weights apply to the raw gradients; both solves stop at stop_crit=1e-5
        torch.testing.assert_close(w, expected, rtol=0, atol=1e-5)


def test_mgda_loss_normalization_without_losses_is_a_failure():
    method = MGDA(["a", "b"], normalization="loss", on_failure="raise")
    with pytest.raises(SolverError, match="positive finite losses"):
        method.weights_from_gramian(gram(HAND))


def test_mgda_failure_when_frank_wolfe_runs_out_of_iterations():
    m = gram(grads(0, 5, 64))
    with pytest.raises(SolverError, match="Frank-Wolfe"):
        MGDA(names(5), max_iter=1, on_failure="raise").weights_from_gramian(m)
    method = MGDA(names(5), max_iter=1)
    w = method.weights_from_gramian(m)
    assert int(method.solver_failures) == 1
    assert (w >= 0).all() and w.sum().item() == pytest.approx(1.0)


# -- IMTL-G ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("t", "d"), SHAPES)
def test_imtl_gives_equal_projections_onto_unit_gradients(seed, t, d):
    g = grads(seed, t, d)
    w = IMTL(names(t)).weights_from_gramian(gram(g))
    assert w.sum().item() == pytest.approx(1.0)
    projections = (g / g.norm(dim=1, keepdim=True)) @ (w @ g)
    torch.testing.assert_close(projections, projections.mean().expand(t), rtol=1e-6, atol=0)


def test_imtl_hand_example():
    # alpha ~ M^-1 (|g1|, |g2|) = [[2, 1], [1, 1]] (1, sqrt2) = (2 + sqrt2, 1 + sqrt2);
    # normalised: (2 - sqrt2, sqrt2 - 1); d = (3 - 2 sqrt2, sqrt2 - 1), d.u1 = d.u2 = 3 - 2 sqrt2
    w = IMTL(["a", "b"]).weights_from_gramian(gram(HAND))
    r2 = math.sqrt(2)
    torch.testing.assert_close(w, torch.tensor([2 - r2, r2 - 1], dtype=torch.float64))


def test_imtl_opposite_gradients_are_a_failure():
    m = gram(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))  # no d with d.u1 = d.u2 != 0
    with pytest.raises(SolverError):
        IMTL(["a", "b"], on_failure="raise").weights_from_gramian(m)
    method = IMTL(["a", "b"])
    torch.testing.assert_close(method.weights_from_gramian(m), torch.tensor([0.5, 0.5]))
    assert int(method.solver_failures) == 1


# -- Aligned-MTL -----------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("t", "d"), SHAPES)
def test_aligned_mtl_equalises_the_singular_values(seed, t, d):
    g = grads(seed, t, d)
    m = gram(g).numpy()
    w = AlignedMTL(names(t)).weights_from_gramian(gram(g)).numpy()
    lam_min = np.linalg.eigvalsh(m).min()
    balance = math.sqrt(lam_min) * np.real(np.linalg.inv(sqrtm(m)))  # B = sqrt(l_min) M^-1/2
    aligned = balance @ g.numpy()  # rows: the aligned task gradients
    # orthogonal and of equal norm: all singular values equal sqrt(l_min)
    np.testing.assert_allclose(aligned @ aligned.T, lam_min * np.eye(t), atol=1e-7 * m.trace())
    np.testing.assert_allclose(w, balance.sum(0), rtol=1e-6, atol=1e-9)  # update = sum of rows


def test_aligned_mtl_hand_examples():
    # orthogonal g1 = (2, 0), g2 = (0, 1): M = diag(4, 1), B = 1 * diag(1/2, 1), w = (0.5, 1)
    # so both aligned gradients have norm 1 = sqrt(l_min)
    w = AlignedMTL(["a", "b"]).weights_from_gramian(torch.tensor([[4.0, 0.0], [0.0, 1.0]]))
    torch.testing.assert_close(w, torch.tensor([0.5, 1.0]))
    # parallel g1 = (1, 0), g2 = (2, 0): rank 1, l = 5, v = (1, 2)/sqrt5, B = v v^T,
    # w = (0.6, 1.2) and d = (3, 0) = g1 + g2
    w = AlignedMTL(["a", "b"]).weights_from_gramian(torch.tensor([[1.0, 2.0], [2.0, 4.0]]))
    torch.testing.assert_close(w, torch.tensor([0.6, 1.2]))


# -- UPGrad ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("t", "d"), SHAPES)
def test_upgrad_direction_conflicts_with_no_task(seed, t, d):
    g = grads(seed, t, d)
    scale = float(gram(g).trace())
    exact = UPGrad(names(t), reg_eps=1e-10).weights_from_gramian(gram(g)) @ g
    assert (g @ exact >= -1e-6 * scale).all()
    # default: the projector's reg_eps (relative to the trace) bounds the violation
    w = UPGrad(names(t)).weights_from_gramian(gram(g))
    assert (g @ (w @ g) >= -1e-4 * scale * w.abs().max()).all()


def test_upgrad_is_the_mean_without_conflict_and_hand_example():
    g = torch.rand(3, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    w = UPGrad(names(3), reg_eps=1e-10).weights_from_gramian(gram(g))
    torch.testing.assert_close(w, torch.full((3,), 1 / 3, dtype=torch.float64))
    # pi(g1) = g1 - (g1.g2/|g2|^2) g2 = (0.5, 0.5) = g1 + 0.5 g2; pi(g2) = (0, 1) = g1 + g2;
    # mean: weights (1, 0.75), d = (0.25, 0.75)
    w = UPGrad(["a", "b"], reg_eps=1e-10).weights_from_gramian(gram(HAND))
    torch.testing.assert_close(w, torch.tensor([1.0, 0.75], dtype=torch.float64))


def test_upgrad_qp_failure_is_reported(monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("Failed to solve the quadratic programming problem.")

    monkeypatch.setattr("mtl.weighting.upgrad.UPGradWeighting", broken)
    with pytest.raises(SolverError, match="quadprog"):
        UPGrad(["a", "b"], on_failure="raise").weights_from_gramian(gram(HAND))
    method = UPGrad(["a", "b"])
    w = method.weights_from_gramian(gram(HAND))
    torch.testing.assert_close(w, torch.tensor([0.5, 0.5], dtype=torch.float64))
    assert int(method.solver_failures) == 1


# -- CAGrad ----------------------------------------------------------------------------------------
def simplex_grid(t: int, k: int) -> np.ndarray:
    if t == 2:
        p = np.linspace(0.0, 1.0, k + 1)
        return np.stack([p, 1 - p], 1)
    i, j = np.meshgrid(np.arange(k + 1), np.arange(k + 1))
    keep = i + j <= k
    return np.stack([i[keep] / k, j[keep] / k, 1 - (i[keep] + j[keep]) / k], 1)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("t", [2, 3])
def test_cagrad_solves_its_dual(seed, t):
    g = grads(seed, t, 20)
    a = gram(g).numpy()
    c = 0.4
    radius = c * math.sqrt(a.mean())  # c |g0|

    def dual(x: np.ndarray) -> np.ndarray:  # x^T A b + c |g0| |G^T x|
        quad = np.einsum("ni,ij,nj->n", x, a, x)
        return x @ a @ np.full(t, 1 / t) + radius * np.sqrt(np.clip(quad, 0, None))

    method = CAGrad(names(t), c=c, on_failure="raise")
    x, lam = method.solve_dual(a)
    assert dual(x[None])[0] <= dual(simplex_grid(t, 300)).min() + 1e-7 * a.trace()
    # direction: T (g0 + lam g_x) / (1 + c^2) with lam = c |g0| / |g_x|
    g0, gx = g.mean(0), torch.as_tensor(x) @ g
    assert lam == pytest.approx(radius / float(gx.norm()), rel=1e-6)  # up to the 1e-8 guards
    expected = t * (g0 + lam * gx) / (1 + c**2)
    torch.testing.assert_close(method.weights_from_gramian(gram(g)) @ g, expected)


@pytest.mark.parametrize("seed", SEEDS)
def test_cagrad_direction_maximises_the_worst_task_in_the_ball(seed):
    # the primal: max_d min_i g_i.d over |d - g0| <= c |g0|
    t, c = 3, 0.4
    g = grads(seed, t, 6)
    x, lam = CAGrad(names(t), c=c).solve_dual(gram(g).numpy())
    g0 = g.mean(0)
    best = g0 + lam * (torch.as_tensor(x) @ g)
    radius = c * float(g0.norm())
    assert float((best - g0).norm()) == pytest.approx(radius, rel=1e-6)
    u = torch.randn(4000, 6, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    candidates = g0 + radius * u / u.norm(dim=1, keepdim=True)
    worst = (candidates @ g.T).min(1).values
    assert float((g @ best).min()) >= float(worst.max()) - 1e-6 * float(gram(g).trace())


def test_cagrad_hand_example_and_c_zero_is_ew():
    # A = [[1, -1], [-1, 2]], b = (1/2, 1/2): mean(A) = 1/4, c|g0| = 0.4 * 0.5 = 0.2. With
    # x = (p, 1-p): F(p) = 0.5 (1 - p) + 0.2 sqrt(5p^2 - 6p + 2), F'(1) = -0.1 and F' < 0 on
    # [0, 1], so x = (1, 0), g_x = g1, lam = 0.2. Weights (1 + 2 lam x) / 1.16 = (1.4, 1) / 1.16
    w = CAGrad(["a", "b"]).weights_from_gramian(gram(HAND))
    torch.testing.assert_close(
        w, torch.tensor([1.4 / 1.16, 1.0 / 1.16], dtype=torch.float64), rtol=1e-5, atol=1e-6
    )
    w = CAGrad(names(3), c=0.0).weights_from_gramian(gram(grads(0, 3, 5)))
    torch.testing.assert_close(w, torch.ones(3, dtype=torch.float64))


def test_cagrad_slsqp_failure_is_reported(monkeypatch):
    def failing(fun, x0, **kwargs):
        return OptimizeResult(x=np.asarray(x0), success=False, status=9, message="forced")

    monkeypatch.setattr("mtl.weighting.cagrad.minimize", failing)
    with pytest.raises(SolverError, match="SLSQP: forced"):
        CAGrad(["a", "b"], on_failure="raise").weights_from_gramian(gram(HAND))
    method = CAGrad(["a", "b"])
    w = method.weights_from_gramian(gram(HAND))
    assert int(method.solver_failures) == 1 and torch.isfinite(w).all()


# -- Nash-MTL --------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(("t", "d"), SHAPES)
def test_nash_alpha_solves_the_bargaining_condition(seed, t, d):
    g = grads(seed, t, d)
    k = gram(g)
    alpha = NashMTL(names(t), on_failure="raise").weights_from_gramian(k)
    assert (alpha > 0).all()
    # (G G^T) alpha = 1 / alpha: every task's directional derivative g_i . d is 1 / alpha_i
    torch.testing.assert_close(
        alpha * (k @ alpha), torch.ones(t, dtype=torch.float64), rtol=0, atol=1e-6
    )
    # invariant to the gradients' scale: alpha scales inversely, the direction is unchanged
    scaled = NashMTL(names(t)).weights_from_gramian(k * 100.0)
    torch.testing.assert_close(scaled, alpha / 10.0)


def test_nash_hand_example():
    # alpha1 - alpha2 = 1/alpha1, -alpha1 + 2 alpha2 = 1/alpha2 => alpha1^4 - 4 alpha1^2 + 2 = 0,
    # alpha2 > 0 needs alpha1^2 > 1: alpha1 = sqrt(2 + sqrt2), alpha2 = (1 + sqrt2) / alpha1
    alpha = NashMTL(["a", "b"]).weights_from_gramian(gram(HAND))
    a1 = math.sqrt(2 + math.sqrt(2))
    torch.testing.assert_close(alpha, torch.tensor([a1, (1 + math.sqrt(2)) / a1]).double())


def test_nash_state_resumes_the_same_weights():
    a = NashMTL(names(3))
    for step in range(3):
        a.weights_from_gramian(gram(grads(step, 3, 10)))
        a.step_done()
    state = a.state_dict()
    assert "alpha" in state and not torch.equal(state["alpha"], torch.ones(3))
    b = NashMTL(names(3))
    b.load_state_dict(state)
    m = gram(grads(50, 3, 10))
    torch.testing.assert_close(b.weights_from_gramian(m), a.weights_from_gramian(m))


def test_nash_failure_raises_or_reuses_the_previous_alpha():
    hard = gram(torch.tensor([[1.0, 0.0, 0.0], [-0.999, 0.04, 0.0], [0.0, 0.0, 1e-3]]))
    with pytest.raises(SolverError, match="Newton"):
        NashMTL(names(3), max_iter=1, on_failure="raise").weights_from_gramian(hard)
    method = NashMTL(names(3), max_iter=1)
    torch.testing.assert_close(method.weights_from_gramian(hard), torch.ones(3))
    assert int(method.solver_failures) == 1
    # at a Pareto-stationary point (g1 = -g2) no alpha exists
    method = NashMTL(["a", "b"])
    previous = method.weights_from_gramian(gram(HAND)).clone()
    stationary = gram(torch.tensor([[1.0, 0.0], [-1.0, 0.0]], dtype=torch.float64))
    torch.testing.assert_close(method.weights_from_gramian(stationary), previous)
    assert int(method.solver_failures) == 1


# -- configs ---------------------------------------------------------------------------------------
CONFIGS = {
    "pcgrad": (PCGrad, "params"),
    "gradvac": (GradVac, "params"),
    "cagrad": (CAGrad, "params"),
    "mgda": (MGDA, "params"),
    "mgda_ub": (MGDA, "features"),
    "imtl": (IMTL, "params"),
    "aligned_mtl": (AlignedMTL, "params"),
    "upgrad": (UPGrad, "params"),
    "nash_mtl": (NashMTL, "params"),
}
RANDOM = {"pcgrad", "gradvac"}


def constructor_parameters(cls) -> dict[str, inspect.Parameter]:
    """A method's own keyword parameters plus the common ones its `**common` forwards."""
    params: dict[str, inspect.Parameter] = {}
    for klass in reversed([cls, *[k for k in cls.__mro__ if k is GradientWeighting]]):
        for name, param in inspect.signature(klass.__init__).parameters.items():
            if param.kind is not inspect.Parameter.VAR_KEYWORD:
                params[name] = param
    return params


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_instantiates_with_every_default_written(name, tmp_path: Path):
    cls, source = CONFIGS[name]
    cfg = compose_config(tmp_path, [f"weighting={name}"])
    method = instantiate(cfg.weighting)(task_names=["seg", "cls"])
    assert type(method) is cls and method.grad_source == source
    raw = OmegaConf.load(Path(__file__).parents[2] / "conf" / "weighting" / f"{name}.yaml")
    written = set(raw) - {"_target_", "_partial_"}
    params = constructor_parameters(cls)
    expected = set(params) - {"self", "task_names"} - (set() if name in RANDOM else {"seed"})
    assert written == expected
    for key in written - {"seed", "grad_source"}:
        assert raw[key] == params[key].default, key
    if name in RANDOM:
        assert method.seed == cfg.seed
