"""Chapter 08: ODE solvers, divergences, exact ODE log-likelihoods, SDEs, the VP-SDE and flow matching."""

import math

import numpy as np
import pytest
import torch
import torchdiffeq

from course_utils import set_threads

from course_utils.flow_matching import (LinearPath, LowDensityShare, VelocityMLP, cfm_loss, fm_sample,
                                        gmm_marginal_velocity, independent_coupling, ot_coupling, straightness,
                                        train_flow_matching)
from course_utils.ode import (VPSDE, CountNFE, OrnsteinUhlenbeck, divergence, divergence_hutchinson, euler_maruyama,
                              ode_log_likelihood, odeint, standard_normal_log_prob)

D = torch.distributions


@pytest.fixture(autouse=True, scope="module")
def _one_thread_policy():
    """The course's thread policy for this module (small models: one thread on a busy 2-core machine), restored after."""
    before = torch.get_num_threads()
    set_threads()
    yield
    torch.set_num_threads(before)


def _field(t, x):  # a nonlinear, time-dependent field on any shape
    return torch.sin(x) * torch.cos(3 * t) - 0.5 * x


# --- solvers -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("ours, theirs", [("euler", "euler"), ("heun", "heun2")])
@pytest.mark.parametrize("shape", [(5, 2), (3, 1, 4, 4)])
def test_odeint_matches_torchdiffeq_call_for_call(ours, theirs, shape):
    x0 = torch.randn(*shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for ts in (torch.linspace(0, 1, 7, dtype=torch.float64), torch.tensor([1.0, 0.7, 0.2, 0.0], dtype=torch.float64)):
        a, b = odeint(_field, x0, ts, method=ours), torchdiffeq.odeint(_field, x0, ts, method=theirs)
        assert a.shape == (len(ts), *shape) == b.shape
        assert torch.allclose(a, b, atol=1e-12), (ours, ts)
        assert torch.equal(a[0], x0)


def test_solver_orders_and_nfe():
    # dx/dt = cos(t) x  has  x(t) = x0 exp(sin t)
    f = lambda t, x: torch.cos(t) * x  # noqa: E731
    x0 = torch.tensor([[1.0]], dtype=torch.float64)
    exact = math.exp(math.sin(2.0))
    for method, order, per_step in (("euler", 1, 1), ("heun", 2, 2)):
        errs = []
        for n in (16, 32, 64, 128):
            g = CountNFE(f)
            x1 = odeint(g, x0, torch.linspace(0, 2, n + 1, dtype=torch.float64), method)[-1]
            assert g.nfe == per_step * n
            errs.append(abs(x1.item() - exact))
        slope = -np.polyfit(np.log([16, 32, 64, 128]), np.log(errs), 1)[0]
        assert abs(slope - order) < 0.15, (method, slope)


def test_odeint_bad_input():
    x0 = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="method must be one of"):
        odeint(_field, x0, torch.linspace(0, 1, 3), method="rk4")
    with pytest.raises(ValueError, match="strictly increasing or strictly decreasing"):
        odeint(_field, x0, torch.tensor([0.0, 0.5, 0.2]))
    with pytest.raises(ValueError, match="at least 2 times"):
        odeint(_field, x0, torch.tensor([0.0]))


# --- divergences -----------------------------------------------------------------------------------------------
def _mlp_field(dtype=torch.float64):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3)).to(dtype)
    return lambda t, x: net(torch.cat([x, t.expand(len(x), 1) if torch.is_tensor(t) else torch.full((len(x), 1), t, dtype=x.dtype)], 1))


def test_divergence_exact_equals_jacobian_trace():
    f = _mlp_field()
    x, t = torch.randn(6, 3, dtype=torch.float64), torch.tensor(0.3, dtype=torch.float64)
    jac = torch.stack([torch.autograd.functional.jacobian(lambda y: f(t, y[None])[0], xi) for xi in x])
    assert torch.allclose(divergence(f, t, x), jac.diagonal(dim1=1, dim2=2).sum(1), atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_hutchinson_unbiased_with_the_formula_variance(dtype):
    a = torch.tensor([[1.0, 2.0, -1.0], [0.5, -3.0, 1.5], [2.0, 0.0, 0.7]], dtype=dtype)
    f = lambda t, x: x @ a.T  # noqa: E731  Jacobian a at every x
    x = torch.zeros(20_000, 3, dtype=dtype)
    t = torch.tensor(0.0, dtype=dtype)
    fro, tr2, diag2 = (a ** 2).sum().item(), torch.trace(a @ a).item(), (a.diagonal() ** 2).sum().item()
    for probe, var in (("rademacher", fro + tr2 - 2 * diag2), ("gaussian", fro + tr2)):
        est = divergence_hutchinson(f, t, x, probe=probe, generator=torch.Generator().manual_seed(1))
        assert est.dtype == dtype
        se = math.sqrt(var / len(x))
        assert abs(est.double().mean().item() - torch.trace(a).item()) < 4 * se, probe
        assert abs(est.double().var().item() / var - 1) < 0.05, probe


# --- exact log-likelihood along an ODE ------------------------------------------------------------------------
def test_log_likelihood_of_a_translation():
    c = torch.tensor([1.5, -0.5], dtype=torch.float64)
    f = lambda t, x: c.expand_as(x)  # noqa: E731  x(1) = x(0) + c
    x = torch.randn(50, 2, dtype=torch.float64)
    lp, nfe = ode_log_likelihood(f, x, t_data=1.0, t_noise=0.0, steps=10, method="euler", return_nfe=True)
    assert nfe == 10
    assert torch.allclose(lp, standard_normal_log_prob(x - c), atol=1e-10)


@pytest.mark.parametrize("div", ["exact", "hutchinson"])
def test_log_likelihood_of_a_linear_field_in_closed_form(div):
    # dx/dt = A x: x(1) = e^A x(0), so p_1 = N(0, e^A e^{A^T}) and log p_1(x) = log N(e^{-A} x) - tr A
    a = torch.tensor([[0.3, -0.8], [0.5, -0.1]], dtype=torch.float64)
    f = lambda t, x: x @ a.T  # noqa: E731
    x = torch.randn(200, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    m = torch.linalg.matrix_exp(a)
    truth = D.MultivariateNormal(torch.zeros(2, dtype=torch.float64), m @ m.T).log_prob(x)
    lp = ode_log_likelihood(f, x, 1.0, 0.0, steps=200, method="heun", div=div,
                            generator=torch.Generator().manual_seed(0))
    # Hutchinson is exact here only on average: tr(A) per probe varies, its error is the off-diagonal part
    tol = 1e-5 if div == "exact" else 3.0
    assert (lp - truth).abs().max() < tol
    if div == "hutchinson":
        assert abs((lp - truth).mean()) < 0.2
    wrong_sign = standard_normal_log_prob(x @ torch.linalg.inv(m).T) + torch.trace(a)
    assert (wrong_sign - truth).abs().min() > 0.1   # the sign matters: tr A = 0.2


# --- SDEs ------------------------------------------------------------------------------------------------------------
def test_ou_stationary_variance_is_sigma2_over_2theta():
    ou = OrnsteinUhlenbeck(theta=2.0, sigma=1.5)
    assert ou.stationary_var == pytest.approx(1.5 ** 2 / 4)
    x0 = torch.full((40_000, 1), 3.0, dtype=torch.float64)
    ts = torch.linspace(0, 0.5, 201, dtype=torch.float64)
    x = euler_maruyama(ou.drift, ou.diffusion, x0, ts, generator=torch.Generator().manual_seed(0))
    mean, std = ou.marginal(x0[:1], 0.5)
    assert abs(x.mean().item() - mean.item()) < 4 * std / math.sqrt(len(x)) + 0.01
    assert abs(x.std().item() / std - 1) < 0.02
    with pytest.raises(ValueError, match="positive"):
        OrnsteinUhlenbeck(theta=-1.0)


def test_vpsde_marginal_matches_simulation_and_broadcasts():
    sde = VPSDE()
    x0 = torch.tensor([[2.0, -1.0]], dtype=torch.float64).expand(20_000, 2)
    ts = torch.linspace(0, 0.4, 401, dtype=torch.float64)
    drift = lambda t, x: sde.sde(x, t)[0]  # noqa: E731
    diff = lambda t, x: sde.sde(x, t)[1]  # noqa: E731
    x = euler_maruyama(drift, diff, x0, ts, generator=torch.Generator().manual_seed(0))
    mean, std = sde.marginal_prob(x0, 0.4)
    assert torch.allclose(x.mean(0), mean[0], atol=0.02) and torch.allclose(x.std(0), std[0], rtol=0.02)
    for shape in ((4, 2), (4, 3, 5, 5), (4, 7)):
        m, s = sde.marginal_prob(torch.ones(shape), torch.rand(4))
        assert m.shape == shape and s.shape == (4,) + (1,) * (len(shape) - 1)


def test_vpsde_is_the_limit_of_the_ddpm_chain():
    # chapter 07's linear schedule, T = 1000, beta from 1e-4 to 0.02, is beta_i = beta(i/T)/T of VPSDE(0.1, 20)
    diffusion = pytest.importorskip("course_utils.diffusion")
    T = 1000
    sched = diffusion.Schedule.linear(T)
    t = torch.arange(0, T + 1)
    ab_chain = sched.alpha_bars.double()
    ab_sde = VPSDE(0.1, 20.0).alpha_bar(t / T)
    assert (ab_chain - ab_sde).abs().max() < 2e-3
    assert ab_sde[-1] < 1e-4


def test_reverse_sde_and_probability_flow_on_gaussian_data():
    # data N(0, s^2 I): p_t = N(0, alpha^2 s^2 + 1 - alpha^2), exact score; both reverse processes recover s^2
    sde, s2 = VPSDE(), 0.25

    def score(x, t):
        a2 = torch.exp(2 * sde.log_alpha(t)).reshape(-1, *([1] * (x.ndim - 1)))
        return -x / (a2 * s2 + 1 - a2)

    rev_sde, rev_ode = sde.reverse(score), sde.reverse(score, probability_flow=True)
    x = torch.randn(3, 2, 4, 4)
    f, g = sde.sde(x, 0.5)
    drift, g0 = rev_ode.sde(x, 0.5)
    assert torch.allclose(drift, f - 0.5 * g ** 2 * score(x, torch.tensor([0.5] * 3)))
    assert (g0 == 0).all() and (rev_sde.sde(x, 0.5)[1] == g).all()
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(20_000, 2, generator=gen, dtype=torch.float64)
    ts = torch.linspace(1.0, 1e-3, 501, dtype=torch.float64)
    x_ode = odeint(rev_ode.ode_field, z, ts, "heun")[-1]
    x_sde = euler_maruyama(rev_sde.drift, rev_sde.diffusion, z, ts, generator=gen)
    assert abs(x_ode.var().item() / s2 - 1) < 0.03 and abs(x_sde.var().item() / s2 - 1) < 0.05


# --- flow matching ----------------------------------------------------------------------------------------------------
MEANS = torch.tensor([[2.0, 0.0], [-1.0, 1.5], [0.0, -2.0]], dtype=torch.float64)
STD = 0.3


def _gmm():
    comp = D.Independent(D.Normal(MEANS, torch.full_like(MEANS, STD)), 1)
    return D.MixtureSameFamily(D.Categorical(torch.ones(3, dtype=torch.float64)), comp)


def test_linear_path_endpoints_and_velocity():
    x0, x1 = torch.randn(5, 2), torch.randn(5, 2)
    path = LinearPath()
    for t, want in ((0.0, x0), (1.0, x1)):
        xt, u = path.sample(x0, x1, torch.full((5,), t))
        assert torch.allclose(xt, want) and torch.allclose(u, x1 - x0)
    with pytest.raises(ValueError, match="same shape"):
        path.sample(x0, x1[:3], torch.zeros(5))


def test_gmm_marginal_velocity_endpoints_and_exact_likelihood():
    x = torch.randn(100, 2, dtype=torch.float64)
    v0 = gmm_marginal_velocity(x, torch.zeros(100), MEANS, STD)
    assert torch.allclose(v0, MEANS.mean(0) - x, atol=1e-10)           # E[x1 - x0 | x0 = x]
    v1 = gmm_marginal_velocity(x, torch.ones(100), MEANS, STD)          # E[x1 - x0 | x1 = x] = x
    assert torch.allclose(v1, x, atol=1e-10)
    # the marginal velocity's flow carries N(0, I) to the mixture: the ODE likelihood is the mixture's density
    field = lambda t, y: gmm_marginal_velocity(y, t.expand(len(y)), MEANS, STD)  # noqa: E731
    xd = _gmm().sample((300,))
    lp = ode_log_likelihood(field, xd, 1.0, 0.0, steps=200, method="heun")
    assert (lp - _gmm().log_prob(xd)).abs().max() < 0.02


def test_cfm_equals_fm_plus_a_constant():
    gen = torch.Generator().manual_seed(0)
    n = 200_000
    x1 = _gmm().sample((n,)).float()
    x0 = torch.randn(n, 2, generator=gen)
    t = torch.rand(n, generator=gen)
    xt, u = LinearPath().sample(x0, x1, t)
    marg = gmm_marginal_velocity(xt.double(), t, MEANS, STD).float()
    diffs = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        model = VelocityMLP(2, 32, 2)
        with torch.no_grad():
            v = model(t, xt)
            per = ((v - u) ** 2).sum(1) - ((v - marg) ** 2).sum(1)
        diffs.append((per.mean().item(), per.std().item() / math.sqrt(n)))
    const = ((u - marg) ** 2).sum(1).mean().item()       # E ||u_cond - u_marg||^2 = E Var[x1 - x0 | x_t]
    for d, se in diffs:
        assert abs(d - const) < 4 * se + 0.01


def test_ot_coupling_is_the_optimal_permutation():
    import itertools

    gen = torch.Generator().manual_seed(0)
    x0, x1 = torch.randn(6, 2, generator=gen), torch.randn(6, 2, generator=gen)
    y0, y1 = ot_coupling(x0, x1)
    assert torch.equal(y1, x1) and sorted(map(tuple, y0.tolist())) == sorted(map(tuple, x0.tolist()))
    best = min(sum(((x0[p[j]] - x1[j]) ** 2).sum().item() for j in range(6)) for p in itertools.permutations(range(6)))
    assert ((y0 - x1) ** 2).sum().item() == pytest.approx(best, rel=1e-5)
    i0, _ = independent_coupling(x0, x1)
    assert ((y0 - x1) ** 2).sum() <= ((i0 - x1) ** 2).sum()
    with pytest.raises(ValueError, match="equal size"):
        ot_coupling(x0, x1[:4])


def test_flow_matching_trains_and_ot_paths_are_straighter():
    x = _gmm().sample((4000,)).float()
    lasts, curv = {}, {}
    for coupling in ("independent", "ot"):
        model, hist = train_flow_matching(x, coupling=coupling, steps=300, hidden=64, progress=False)
        lasts[coupling] = hist.losses
        path, nfe = fm_sample(model, 500, steps=20, generator=torch.Generator().manual_seed(0), keep_path=True)
        assert path.shape == (21, 500, 2) and nfe == 40
        curv[coupling] = straightness(path)
    for losses in lasts.values():
        assert np.mean(losses[-50:]) < 0.8 * np.mean(losses[:50])
    assert curv["ot"] < 0.5 * curv["independent"]
    with pytest.raises(ValueError, match="coupling must be one of"):
        train_flow_matching(x, coupling="sinkhorn", steps=1)


def test_low_density_share_is_q_for_exact_samples_and_counts_strays():
    from course_utils.data import toy

    target = toy("8gaussians")
    share = LowDensityShare(target, q=0.05)
    n = 20_000
    exact = share(target.sample((n,), generator=torch.Generator().manual_seed(7)))
    assert abs(exact - 0.05) < 4 * math.sqrt(0.05 * 0.95 / n) + 0.005      # the q-quantile, up to binomial noise
    angle = math.pi / 8 + torch.arange(8) * math.pi / 4                   # half-way between neighbouring centres
    between = 2.8 * torch.stack([torch.cos(angle), torch.sin(angle)], 1)
    assert share(between) == 1.0                                        # half-way between two clusters: all strays
    assert share(target.centers.float()) == 0.0                         # the modes themselves: none
    with pytest.raises(ValueError, match="q must lie in"):
        LowDensityShare(target, q=1.0)


# --- the explorer ------------------------------------------------------------------------------------------------
def test_ode_explorer_state_and_figure():
    import matplotlib.pyplot as plt

    from course_utils.data import toy
    from course_utils.widgets import OdeExplorer, ode_figure, ode_state

    target = toy("8gaussians")
    x = target.sample((2000,), generator=torch.Generator().manual_seed(0))
    models = {"independent": train_flow_matching(x, steps=200, hidden=32, progress=False)[0]}
    euler = ode_state(models, target, "independent", "euler", 4)
    heun = ode_state(models, target, "independent", "heun", 4)
    assert euler.nfe == 4 and heun.nfe == 4 and euler.paths.shape[0] == 5 and heun.paths.shape[0] == 3
    assert euler.ratio > 0 and np.isfinite(euler.ratio) and not np.allclose(euler.samples, heun.samples)
    assert 0 <= euler.low_density <= 1 and euler.truth.shape == euler.samples.shape == (1000, 2)
    assert euler.straightness == heun.straightness > 0          # the model's own flow, whatever the solver drawn
    plt.close(ode_figure(euler))
    with pytest.raises(ValueError, match="coupling must be one of"):
        ode_state(models, target, "ot")
    with pytest.raises(ValueError, match="nfe must be"):
        ode_state(models, target, "independent", "heun", 1)
    ex = OdeExplorer(models, target)
    before = ex.image.value
    ex.method.value = "heun"
    assert ex.image.value != before
