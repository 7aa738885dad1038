"""Chapter 05: GAN and WGAN losses, the gradient penalty, critics and their Lipschitz constants, the training loop,
mode coverage, and the GAN explorer (state and figure functions, without a browser)."""

import math

import matplotlib.pyplot as plt
import pytest
import torch

from course_utils.data import toy
from course_utils.gan import (LOSSES, SCHEDULES, clip_weights, critic_loss, discriminator_loss, fit_critic,
                              generator_loss, gradient_penalty, lipschitz_estimate, mixture_scores, mlp_critic,
                              mlp_generator, mode_coverage, toy_wgan_gp, train_gan, train_digits_gan)
from course_utils.widgets import GANExplorer, gan_figure, gan_recorder, gan_state


def _linear(w):
    lin = torch.nn.Linear(len(w), 1).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([w], dtype=torch.float64))
    return lin


# --- losses ---------------------------------------------------------------------------------------------------------
def test_generator_losses_have_the_textbook_derivatives_and_never_take_log_zero():
    a = torch.linspace(-30, 30, 13, dtype=torch.float64, requires_grad=True)
    g_mm, = torch.autograd.grad(generator_loss(a, "minimax") * len(a), a)
    g_ns, = torch.autograd.grad(generator_loss(a, "nonsaturating") * len(a), a)
    assert torch.allclose(g_mm, -torch.sigmoid(a), atol=1e-12)          # saturates: ~0 where a << 0
    assert torch.allclose(g_ns, -(1 - torch.sigmoid(a)), atol=1e-12)    # ~ -1 where a << 0
    assert g_mm[0].abs() < 1e-12 and (g_ns[0] + 1).abs() < 1e-12
    extreme = torch.tensor([-1e4, 1e4])
    for kind in ("minimax", "nonsaturating"):
        assert torch.isfinite(generator_loss(extreme, kind))
    assert torch.isfinite(discriminator_loss(extreme, -extreme))
    with pytest.raises(ValueError, match="minimax"):
        generator_loss(a, "wgan")


def test_discriminator_loss_at_the_optimal_logit_is_log4_minus_2js():
    # p = N(0, 1), q = N(1, 1): the optimal logit is log p - log q = 1/2 - x
    p, q = torch.distributions.Normal(0.0, 1.0), torch.distributions.Normal(1.0, 1.0)
    xs = torch.linspace(-12, 13, 100_001, dtype=torch.float64)
    lp, lq = p.log_prob(xs).double(), q.log_prob(xs).double()
    lm = torch.logaddexp(lp, lq) - math.log(2)
    js = (0.5 * (lp.exp() * (lp - lm) + lq.exp() * (lq - lm))).sum().item() * (xs[1] - xs[0]).item()
    g = torch.Generator().manual_seed(0)
    n = 400_000
    xp, xq = torch.randn(n, generator=g, dtype=torch.float64), 1 + torch.randn(n, generator=g, dtype=torch.float64)
    terms = torch.cat([-torch.nn.functional.logsigmoid(0.5 - xp), -torch.nn.functional.logsigmoid(-(0.5 - xq))])
    se = 2 * terms.std().item() / math.sqrt(2 * n)
    loss = discriminator_loss(0.5 - xp, 0.5 - xq).item()
    assert abs(loss - (math.log(4) - 2 * js)) < 4 * se


def test_critic_loss_sign():
    # the critic minimises E f(fake) - E f(real): a critic that scores real higher has a negative loss
    assert critic_loss(torch.ones(5), torch.zeros(5)).item() == -1.0


# --- gradient penalty -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("w", [[3.0, 4.0], [0.3, 0.4], [0.6, 0.8]])
def test_gradient_penalty_of_a_linear_critic(w):
    real, fake = torch.randn(32, 2, dtype=torch.float64), torch.randn(32, 2, dtype=torch.float64)
    gp = gradient_penalty(_linear(w), real, fake)
    assert gp.ndim == 0 and abs(gp.item() - (math.hypot(*w) - 1) ** 2) < 1e-12   # two-sided, no lambda
    one = gradient_penalty(_linear(w), real, fake, one_sided=True)                 # only slopes above 1 cost
    assert abs(one.item() - max(0.0, math.hypot(*w) - 1) ** 2) < 1e-12


def test_gradient_penalty_uses_interpolates_and_trains_the_critic():
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(50, 3, generator=g, dtype=torch.float64), 3 + torch.randn(50, 3, generator=g, dtype=torch.float64)
    quad = lambda x: 0.5 * (x**2).sum(1, keepdim=True)                  # gradient = x itself
    gp = gradient_penalty(quad, real, fake, generator=torch.Generator().manual_seed(5))
    t = torch.rand(50, 1, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert abs(gp.item() - ((t * real + (1 - t) * fake).norm(dim=1) - 1).pow(2).mean().item()) < 1e-12
    critic = mlp_critic(3, 16, 2).double()
    gp = gradient_penalty(critic, real, fake)
    grads = torch.autograd.grad(gp, list(critic.parameters()), allow_unused=True)   # the last bias cannot matter
    assert grads[0] is not None and grads[0].abs().sum() > 0
    # images: the norm is over all non-batch dimensions
    img_critic = lambda x: x.flatten(1).sum(1, keepdim=True)             # gradient all ones: norm sqrt(64) = 8
    assert abs(gradient_penalty(img_critic, torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)).item() - 49.0) < 1e-4
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(critic, real, fake[:10])


# --- critics and Lipschitz constants --------------------------------------------------------------------------------
def test_lipschitz_estimate_clip_and_spectral_norm():
    assert abs(lipschitz_estimate(_linear([3.0, 4.0]), torch.randn(10, 2, dtype=torch.float64)) - 5.0) < 1e-12
    torch.manual_seed(0)
    sn = mlp_critic(2, 32, 3, spectral_norm=True)
    for _ in range(30):                                                  # power iterations converge in training mode
        sn(torch.randn(8, 2))
    sn.eval()
    assert lipschitz_estimate(sn, 3 * torch.randn(2000, 2)) <= 1.0 + 1e-3
    clipped = mlp_critic(2, 32, 3)
    clip_weights(clipped, 0.01)
    assert all(p.abs().max() <= 0.01 for p in clipped.parameters())


def test_fit_critic_gp_estimates_w1_of_a_shift():
    # real and fake differ by a shift of 2 along x: W1 = 2, attained by f(x) = -x_1 (gradient norm 1)
    g = torch.Generator().manual_seed(2)
    real = torch.randn(2000, 2, generator=g)
    fake = real + torch.tensor([2.0, 0.0])
    critic = mlp_critic(2, 32, 2)
    losses = fit_critic(critic, real, fake, "gp", steps=300, lr=3e-3, progress=False)
    with torch.no_grad():
        dual = (critic(real).mean() - critic(fake).mean()).item()
    assert abs(dual - 2.0) < 0.2 and losses[-1] < losses[0]
    with pytest.raises(ValueError, match="method"):
        fit_critic(critic, real, fake, "lasso", steps=1)


# --- training loop --------------------------------------------------------------------------------------------------
def _blob(n):
    return torch.tensor([3.0, -2.0]) + 0.3 * torch.randn(n, 2)


@pytest.mark.parametrize("loss", ["nonsaturating", "wgan-gp"])
def test_train_gan_moves_the_generator_onto_a_blob_and_is_reproducible(loss):
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        G, D = mlp_generator(2, 2, 32, 2), mlp_critic(2, 32, 2)
        hist = train_gan(G, D, _blob, loss=loss, steps=150, d_steps=2, lr=3e-3, batch_size=128, seed=0, progress=False,
                         record=gan_recorder(G, D, n_grid=10, n_samples=20), record_every=50)
        runs.append((G, hist))
    (G, hist), (_, hist2) = runs
    assert hist.d_losses == hist2.d_losses and hist.g_losses == hist2.g_losses    # seeded: the same run twice
    assert hist.steps == 150 and [s for s, _ in hist.snapshots] == [0, 50, 100, 150]
    with torch.no_grad():
        mean = G(torch.randn(2000, 2)).mean(0)
    target = torch.tensor([3.0, -2.0])
    assert (mean - target).norm() < 0.45 * target.norm()              # it started near the origin: most of the way there


def test_train_gan_keeps_an_exponential_average_of_the_generator():
    torch.manual_seed(0)
    G, D = mlp_generator(2, 2, 8, 1), mlp_critic(2, 8, 1)
    w0 = [p.detach().clone() for p in G.parameters()]
    hist = train_gan(G, D, _blob, loss="wgan-gp", steps=1, batch_size=16, ema=0.25, progress=False)
    # one generator step: w_ema = 0.25 w_0 + 0.75 w_1, and the trained generator itself is the plain w_1
    for pe, p, p0 in zip(hist.ema.parameters(), G.parameters(), w0):
        assert not torch.equal(p, p0) and torch.allclose(pe, 0.25 * p0 + 0.75 * p, atol=1e-7)
    assert hist.ema is not G and not hist.ema.training and not any(p.requires_grad for p in hist.ema.parameters())
    more = train_gan(G, D, _blob, steps=3, batch_size=16, ema=0.0, progress=False)
    assert all(torch.equal(pe, p) for pe, p in zip(more.ema.parameters(), G.parameters()))   # decay 0: the last weights
    assert train_gan(G, D, _blob, steps=1, batch_size=16, progress=False).ema is None
    with pytest.raises(ValueError, match="ema"):
        train_gan(G, D, _blob, steps=1, ema=1.0)


def test_train_digits_gan_is_seeded_and_returns_images():
    from course_utils.data import load_digits
    x, _ = load_digits("train")
    G1, h1 = train_digits_gan(x[:300], steps=4, d_steps=2, batch_size=32, progress=False)
    G2, h2 = train_digits_gan(x[:300], steps=4, d_steps=2, batch_size=32, progress=False)
    assert h1.d_losses == h2.d_losses and all(torch.equal(a, b) for a, b in zip(G1.parameters(), G2.parameters()))
    with torch.no_grad():
        imgs = G1(torch.randn(5, G1.latent_dim))
    assert imgs.shape == (5, 1, 8, 8) and 0 < imgs.min() and imgs.max() < 1 and not G1.training
    G3, _ = train_digits_gan(x[:300], steps=4, d_steps=2, batch_size=32, seed=3, progress=False)
    assert not all(torch.equal(a, b) for a, b in zip(G1.parameters(), G3.parameters()))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        train_digits_gan(x[:300] * 2 - 1, steps=1, progress=False)


def test_constant_then_linear_schedule_changes_only_the_last_30_percent():
    # 10 steps: learning-rate factor min(1, (10 - i) / 3) at step i, so steps 0..7 run at full rate and 8, 9 at 2/3, 1/3.
    # The critic's loss at step i is logged before its update (the runs agree up to step 8); the generator's after the
    # critic's update of the same step (they agree up to step 7).
    hists = []
    for schedule in (None, "constant-then-linear"):
        torch.manual_seed(0)
        G, D = mlp_generator(2, 2, 8, 1), mlp_critic(2, 8, 1)
        hists.append(train_gan(G, D, _blob, loss="wgan-gp", steps=10, batch_size=16, schedule=schedule, progress=False))
    plain, tail = hists
    assert plain.d_losses[:9] == tail.d_losses[:9] and plain.d_losses[9] != tail.d_losses[9]
    assert plain.g_losses[:8] == tail.g_losses[:8] and plain.g_losses[8] != tail.g_losses[8]
    assert SCHEDULES == (None, "cosine", "constant-then-linear")


def test_first_layer_gain_scales_the_initial_weights_only():
    torch.manual_seed(3)
    plain = mlp_generator(8, 2, 16, 2)
    torch.manual_seed(3)
    steep = mlp_generator(8, 2, 16, 2, first_layer_gain=8)
    assert torch.allclose(steep[0].weight, 8 * plain[0].weight) and torch.equal(steep[0].bias, plain[0].bias)
    assert all(torch.equal(a, b) for a, b in zip(list(steep.parameters())[2:], list(plain.parameters())[2:]))
    for bad in (0, -1.0, float("nan"), "8"):
        with pytest.raises(ValueError, match="first_layer_gain"):
            mlp_generator(first_layer_gain=bad)


def test_toy_wgan_gp_recipe_is_the_documented_one():
    G, D, kw = toy_wgan_gp(seed=1)
    G2, _, _ = toy_wgan_gp(seed=1)
    assert all(torch.equal(a, b) for a, b in zip(G.parameters(), G2.parameters()))           # seeded
    assert G[0].in_features == kw["latent_dim"] == 8 and G[0].out_features == 64
    assert kw["loss"] == "wgan-gp" and kw["gp_one_sided"] and kw["schedule"] == "constant-then-linear"
    assert kw["steps"] == 3000 and kw["d_steps"] == 5 and kw["ema"] == 0.99 and kw["seed"] == 1


def test_mixture_scores_of_the_truth_and_of_a_collapsed_generator():
    eight = toy("8gaussians")
    real = eight.sample((2000,), generator=torch.Generator().manual_seed(5)).float()
    truth = lambda z: eight.sample((len(z),), generator=torch.Generator().manual_seed(9)).float()
    row, s = mixture_scores(truth, 2, eight, real)
    assert s.shape == (2000, 2) and row["modes"] == "8/8" and row["high quality"] > 0.98
    assert row["precision"] > 0.95 and row["recall"] > 0.95 and set(row) == {"modes", "high quality", "precision", "recall"}
    one_mode = lambda z: eight.centers[0].float() + eight.std * z        # every sample on mode 0
    row, _ = mixture_scores(one_mode, 2, eight, real)
    assert row["modes"] == "1/8" and row["precision"] > 0.95 and row["recall"] < 0.2     # quality without coverage


def test_bench_gan_variants_differ_from_the_recipe_in_one_thing_each():
    from course_utils.course.bench import _gan_variants
    zoo = _gan_variants()
    G, D, kw = zoo["recipe"](0)
    for name, build in zoo.items():
        G2, D2, kw2 = build(0)
        assert all(torch.equal(a, b) for a, b in zip(D.parameters(), D2.parameters()))    # the same critic
        changed = {k for k in kw if kw[k] != kw2[k]}
        same_g = all(torch.equal(a, b) for a, b in zip(G.parameters(), G2.parameters()))
        expected = {"recipe": (set(), True), "two-sided penalty": ({"gp_one_sided"}, True),
                    "default initialisation": (set(), False), "two-sided, default init.": ({"gp_one_sided"}, False),
                    "2000 steps": ({"steps"}, True)}[name]
        assert (changed, same_g) == expected, name
    assert torch.allclose(zoo["recipe"](0)[0][0].weight, 8 * zoo["default initialisation"](0)[0][0].weight)
    from course_utils.course.bench import bench_gan
    with pytest.raises(SystemExit, match="unknown variant"):
        bench_gan(variants=["lsgan"])


def test_train_gan_rejects_bad_arguments():
    G, D = mlp_generator(), mlp_critic()
    with pytest.raises(ValueError, match="loss must be one of"):
        train_gan(G, D, _blob, loss="lsgan", steps=1)
    with pytest.raises(ValueError, match="d_steps"):
        train_gan(G, D, _blob, steps=1, d_steps=0)
    with pytest.raises(ValueError, match="data must be"):
        train_gan(G, D, torch.zeros(5), steps=1)
    with pytest.raises(ValueError, match="constant-then-linear"):
        train_gan(G, D, _blob, steps=1, schedule="linear")
    assert set(LOSSES) == {"minimax", "nonsaturating", "wgan-clip", "wgan-gp", "wgan"}


def test_mode_coverage_by_hand():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = torch.cat([torch.zeros(50, 2), torch.full((45, 2), 5.0), torch.tensor([[10.0, 0.5]] * 5)])
    cov = mode_coverage(samples, centers, std=0.25)
    # 55 of 100 within 0.75 of a centre; mode 0 gets 50 (>= 0.2 * 100 / 3), mode 1 gets 5 (< 6.7), mode 2 none
    assert cov["modes"] == 1 and cov["of"] == 3 and abs(cov["high_quality"] - 0.55) < 1e-12
    assert cov["counts"].tolist() == [50, 5, 0]
    with pytest.raises(ValueError, match="centers"):
        mode_coverage(torch.zeros(4, 3), centers, 0.25)


# --- the explorer ----------------------------------------------------------------------------------------------------
def test_gan_explorer_state_figure_and_controls():
    runs = {}
    for loss in ("nonsaturating", "wgan-clip"):
        torch.manual_seed(0)
        G, D = mlp_generator(2, 2, 16, 2), mlp_critic(2, 16, 2)
        runs[loss] = train_gan(G, D, toy("8gaussians").sample((500,)).float(), loss=loss, steps=20, batch_size=64,
                               progress=False, record=gan_recorder(G, D, n_grid=12, n_samples=30), record_every=10)
    density = torch.ones(12, 12).numpy()
    first, last = gan_state(runs, "nonsaturating", 0, density), gan_state(runs, "nonsaturating", 2, density)
    assert first.step == 0 and last.step == 20 and first.samples.shape == (30, 2) and first.field.shape == (12, 12)
    assert not (first.samples == last.samples).all()
    w = gan_state(runs, "wgan-clip", 1, density)
    assert w.is_wgan and abs(w.field.mean()) < 1e-6                        # a critic is shown up to its constant
    # one colour scale per run, shared along the step slider (not rescaled per snapshot), covering every snapshot:
    # a critic's |f - mean| up to the run's largest, a discriminator's probability on [0, 1]
    states = [gan_state(runs, "wgan-clip", i, density) for i in range(3)]
    assert len({(st.vmin, st.vmax) for st in states}) == 1 and states[0].vmin == -states[0].vmax
    assert max(abs(st.field).max() for st in states) == pytest.approx(states[0].vmax)
    assert any(abs(st.field).max() < 0.99 * st.vmax for st in states)       # a per-snapshot scale would fail this
    for i in range(3):
        st = gan_state(runs, "nonsaturating", i, density)
        assert (st.vmin, st.vmax) == (0.0, 1.0) and 0 <= st.field.min() and st.field.max() <= 1
    logits = runs["nonsaturating"].snapshots[2][1]["field"]
    assert abs(last.field - 1 / (1 + torch.exp(-torch.as_tensor(logits)).numpy())).max() < 1e-6     # D = sigmoid(logit)
    fig = gan_figure(last)
    assert len(fig.axes) >= 3
    plt.close(fig)
    with pytest.raises(ValueError, match="no run was recorded"):
        gan_state(runs, "wgan-gp", 0, density)
    with pytest.raises(ValueError, match="snapshot index"):
        gan_state(runs, "nonsaturating", 7, density)
    ex = GANExplorer(runs, toy("8gaussians"))
    before = ex.image.value
    ex.slider.value = 0
    after_slider = ex.image.value
    ex.loss.value = "wgan-clip"
    assert before != after_slider and after_slider != ex.image.value
    # runs of different lengths: switching the loss gives the slider the run's own range, at the same fraction of it
    torch.manual_seed(0)
    G, D = mlp_generator(2, 2, 16, 2), mlp_critic(2, 16, 2)
    runs["wgan-gp"] = train_gan(G, D, toy("8gaussians").sample((500,)).float(), loss="wgan-gp", steps=20, batch_size=64,
                                progress=False, record=gan_recorder(G, D, n_grid=12, n_samples=30), record_every=4)
    ex = GANExplorer(runs, toy("8gaussians"))
    assert ex.slider.max == 2 and ex.slider.value == 2
    ex.loss.value = "wgan-gp"
    assert ex.slider.max == 5 and ex.slider.value == 5 and ex.state().step == 20      # the end stays the end
    ex.slider.value = 1
    ex.loss.value = "wgan-clip"
    assert ex.slider.max == 2 and ex.state().step == 0
    plt.close("all")
