# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] nbgrader={"grade": false, "grade_id": "intro", "locked": true, "schema_version": 3, "solution": false, "task": false}
# # Homework 04 — ELBO surgery, priors and vector quantisation
#
# Follows lecture notebook `04_elbo_surgery_and_vq` (lecture 4 of the course notes). Four coded tasks (11 points, graded
# automatically) and one written question (2 points, graded by hand).
#
# | task | what you write | points |
# |---|---|---|
# | 1 | `surgery_terms`: mean KL, mutual information and marginal KL of a set of Gaussian posteriors | 3 |
# | 2 | `mixture_log_prob`: the log-density of a mixture-of-Gaussians prior | 2 |
# | 3 | `vector_quantize`: nearest-code lookup, straight-through output, codebook and commitment losses | 3 |
# | 4 | `fit_mixture_prior`: a mixture prior fitted to a VAE's aggregate posterior, to a stated marginal KL | 3 |
# | 5 | written: posterior collapse | 2 |
#
# **How to work.** Replace every `raise NotImplementedError()` with your code and run the check cell below it: it prints
# `✓ ...` or one line saying what was expected. Hidden checks of the same kind use other inputs. Do not rename functions
# or delete cells; the notebook must run top to bottom in about a minute on a laptop CPU. Write the maths yourself: do not
# call `course_utils.priors` or `course_utils.vq`, which implement these tasks for the lecture.
#
# **Notation.** Posteriors $q(z\mid x_i) = \mathcal{N}(\mu_i, \mathrm{diag}\,e^{\ell_i})$ for $i = 1..n$ are given as `mu`, `logvar`,
# each `[n, L]`; the aggregate posterior is $q(z) = \frac1n\sum_i q(z\mid x_i)$; the prior is $p(z) = \mathcal{N}(0, I)$ unless said otherwise.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch

from course_utils import seed_everything, set_threads
from course_utils.checks import LocalStudent, call, diagnose, expect, expect_close, expect_tensor, hidden_test, passed
from course_utils.data import load_digits
from course_utils.training import fit
from course_utils.vae import VAE, train_digits_vae

seed_everything(0)
set_threads()
torch.set_default_dtype(torch.float32)

# the VAE of chapters 03-04 (8-D latent, N(0, I) prior), and its posteriors on the 1438 training digits
x_train = (load_digits("train")[0] > 0.5).float()
x_test = (load_digits("test")[0] > 0.5).float()
vae, _ = train_digits_vae(x_train, 8, steps=2000, progress=False)
with torch.no_grad():
    mu_train, logvar_train = vae.encoder(x_train)
print(f"posteriors of the training digits: mu {tuple(mu_train.shape)}, logvar {tuple(logvar_train.shape)}")


def _as_float(value, name):
    """A Python float from a float or a 0-d tensor, or a clear error."""
    if isinstance(value, torch.Tensor):
        expect(value.numel() == 1, f"{name} should be one number (a float or a 0-d tensor), got shape {tuple(value.shape)}")
        value = value.item()
    expect(isinstance(value, (int, float)) and math.isfinite(value), f"{name} should be a finite number, got {value!r}")
    return float(value)


# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 — the three terms of ELBO surgery (3 points)
#
# Return `(avg_kl, mutual_info, marginal_kl)` as three floats:
# * `avg_kl` $= \frac1n\sum_i \mathrm{KL}(q(z\mid x_i)\,\|\,\mathcal{N}(0, I))$, in closed form;
# * `mutual_info` $= \mathbb{I}_q[x; z] = \frac1n\sum_i \mathbb{E}_{q(z\mid x_i)}[\log q(z\mid x_i) - \log q(z)]$;
# * `marginal_kl` $= \mathrm{KL}(q(z)\,\|\,\mathcal{N}(0, I)) = \mathbb{E}_{q(z)}[\log q(z) - \log \mathcal{N}(z; 0, I)]$;
#
# the last two by Monte Carlo with `samples_per_point` draws $z \sim q(z\mid x_i)$ for every $i$ (use `generator` in
# `torch.randn`). $\log q(z) = \operatorname{logsumexp}_j \log q(z\mid x_j) - \log n$ needs all $n$ components for every $z$: compute
# it in float64 and in chunks of rows if memory is short. The checks test the closed form, $\mathrm{avg\_kl} = \mathbb{I} + \mathrm{marginal\_kl}$, the extremes $\mathbb{I} = 0$ and
# $\mathbb{I} = \log n$, and a 1-D case whose marginal KL is known by quadrature.

# %% nbgrader={"grade": false, "grade_id": "task1_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def surgery_terms(mu, logvar, samples_per_point=10, generator=None):
    """mu, logvar [n, L] -> (avg_kl, mutual_info, marginal_kl), floats in nats."""
    ### BEGIN SOLUTION
    mu, logvar = mu.double(), logvar.double()
    n, L = mu.shape
    avg_kl = 0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1).mean()
    z = mu + (0.5 * logvar).exp() * torch.randn(samples_per_point, n, L, generator=generator, dtype=torch.float64)
    z = z.reshape(-1, L)                                                   # [S * n, L]; row s * n + i comes from q(z|x_i)
    own = torch.arange(n).repeat(samples_per_point)

    def log_q_components(zc):                                              # [M, L] -> [M, n]: log q(z_m | x_j)
        return -0.5 * (((zc[:, None, :] - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)

    log_q_own, log_q_agg = [], []
    for rows in torch.arange(len(z)).split(512):
        comp = log_q_components(z[rows])
        log_q_own.append(comp[torch.arange(len(rows)), own[rows]])
        log_q_agg.append(torch.logsumexp(comp, -1) - math.log(n))
    log_q_own, log_q_agg = torch.cat(log_q_own), torch.cat(log_q_agg)
    log_prior = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
    return avg_kl.item(), (log_q_own - log_q_agg).mean().item(), (log_q_agg - log_prior).mean().item()
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task1_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _check_surgery(fn, mu, logvar, what, tol, samples=10, seed=0):
    """Properties every correct answer has (no reference implementation): avg_kl in closed form, 0 <= I <= log n,
    marginal_kl >= 0, and avg_kl = I + marginal_kl within Monte Carlo error."""
    out = call(fn, mu, logvar, samples, torch.Generator().manual_seed(seed), name="surgery_terms")
    expect(isinstance(out, (tuple, list)) and len(out) == 3,
           f"surgery_terms should return a tuple (avg_kl, mutual_info, marginal_kl), got {type(out).__name__}")
    avg, mi, mkl = (_as_float(v, name) for v, name in zip(out, ("avg_kl", "mutual_info", "marginal_kl")))
    m64, v64 = mu.double(), logvar.double()
    closed = (0.5 * (m64**2 + v64.exp() - 1 - v64).sum(-1)).mean().item()
    expect(abs(avg - closed) < 1e-4, f"{what}: avg_kl should be {closed:.4f} (closed form), got {avg:.4f}")
    log_n = math.log(len(mu))
    expect(mi > -tol, f"{what}: mutual_info = {mi:.3f} is negative, but a mutual information is >= 0; if it is off by log n = "
           f"{log_n:.3f}: the aggregate q(z) is the AVERAGE of the n posteriors, so its log needs - log n after the logsumexp")
    expect(mi < log_n + tol, f"{what}: mutual_info should lie between 0 and log n = {log_n:.3f}, got {mi:.3f}")
    expect(mkl > -tol, f"{what}: marginal_kl is a KL divergence, so it cannot be negative; got {mkl:.3f}")
    expect(abs(avg - mi - mkl) < 2 * tol, f"{what}: avg_kl = {avg:.3f} should equal mutual_info + marginal_kl = {mi + mkl:.3f}")
    return avg, mi, mkl


def _check_no_information(fn, mu, logvar, what):
    """Identical posteriors: z says nothing about x, I = 0."""
    _, mi, _ = _check_surgery(fn, mu, logvar, what, 0.1, samples=50)
    expect(abs(mi) < 1e-4, f"{what} carry no information about x: mutual_info should be 0, got {mi:.2e}")


def _check_full_information(fn, mu, logvar, what):
    """Posteriors far apart (many standard deviations): z identifies x, I = log n."""
    _, mi, _ = _check_surgery(fn, mu, logvar, what, 0.1)
    expect(abs(mi) > 1e-3, f"{what} identify x, but mutual_info is 0: the aggregate q(z) must mix all n "
           "posteriors, not only the one z was drawn from")
    expect(abs(mi - math.log(len(mu))) < 1e-3,
           f"{what} identify x: mutual_info should be log n = {math.log(len(mu)):.4f}, got {mi:.4f}")


def _check_quadrature_1d(fn, mu, logvar, what):
    """1-D posteriors: KL(q(z) || N(0, 1)) by quadrature on a fine grid, independently of any Monte Carlo."""
    zg = torch.linspace(-9.0, 9.0, 36_001, dtype=torch.float64)
    log_qg = torch.logsumexp(-0.5 * ((zg[:, None] - mu.T) ** 2 / logvar.T.exp() + logvar.T + math.log(2 * math.pi)), -1) \
        - math.log(len(mu))
    mkl_quad = torch.trapezoid(log_qg.exp() * (log_qg + 0.5 * zg**2 + 0.5 * math.log(2 * math.pi)), zg).item()
    avg, mi, mkl = _check_surgery(fn, mu, logvar, what, 0.03, samples=4000)
    expect(abs(mkl - mkl_quad) < 0.03, f"{what}: marginal_kl should be {mkl_quad:.4f} (by quadrature), got "
           f"{mkl:.4f}: check log q(z) (all n components, each N(mu_j, exp(logvar_j)), minus log n) and the draws")
    expect(abs(mi - (avg - mkl_quad)) < 0.03, f"{what}: mutual_info should be {avg - mkl_quad:.4f}, got {mi:.4f}")


# %% nbgrader={"grade": true, "grade_id": "task1_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
n = 40
_check_no_information(surgery_terms, torch.full((n, 3), 0.7), torch.full((n, 3), -0.5), "identical posteriors")
apart = (torch.arange(n)[:, None] - (n - 1) / 2) * torch.tensor([0.25, 0.0, 0.0])   # 0.25 apart, standard deviation 0.018
_check_full_information(surgery_terms, apart, torch.full((n, 3), -8.0), "far-apart posteriors")
_check_quadrature_1d(surgery_terms, torch.tensor([[-1.5], [-0.2], [0.4], [1.1], [2.0]], dtype=torch.float64),
                     torch.tensor([[-1.0], [-2.0], [-0.5], [-1.5], [-3.0]], dtype=torch.float64), "five 1-D posteriors")
avg, mi, mkl = _check_surgery(surgery_terms, mu_train, logvar_train, "the digits VAE", 0.06)
passed(f"digits VAE: mean KL {avg:.3f} = I {mi:.3f} + marginal KL {mkl:.3f} (log n = {math.log(len(mu_train)):.3f})")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    from course_utils.priors import surgery_terms as reference

    fn, f64 = student.surgery_terms, torch.float64
    g = torch.Generator().manual_seed(41)
    row_mu, row_lv = torch.randn(1, 4, generator=g, dtype=f64), 0.5 * torch.randn(1, 4, generator=g, dtype=f64) - 0.5
    _check_no_information(fn, row_mu.expand(30, 4).clone(), row_lv.expand(30, 4).clone(), "30 identical 4-D posteriors")
    grid = torch.stack(torch.meshgrid(torch.arange(6.0, dtype=f64), torch.arange(5.0, dtype=f64), indexing="ij"), -1)
    _check_full_information(fn, 0.5 * grid.reshape(-1, 2) - 1.2, torch.full((30, 2), -7.0, dtype=f64),
                            "30 far-apart 2-D posteriors")
    _check_quadrature_1d(fn, torch.randn(7, 1, generator=g, dtype=f64), torch.rand(7, 1, generator=g, dtype=f64) * 2.5 - 3.0,
                         "seven 1-D posteriors")
    with torch.no_grad():
        mu_test, logvar_test = vae.encoder(x_test[:200])
    for mu, logvar, what, tol, seed in (
            (1.5 * torch.randn(300, 2, generator=g, dtype=f64), torch.randn(300, 2, generator=g, dtype=f64) - 1,
             "300 random 2-D posteriors", 0.06, 5),
            (mu_test, logvar_test, "the digits VAE on 200 test digits", 0.08, 6)):
        _, mi, mkl = _check_surgery(fn, mu, logvar, what, tol, seed=seed)
        ref = reference(mu, logvar, samples_per_point=20, generator=torch.Generator().manual_seed(seed + 100))
        expect(abs(mi - ref.mutual_info) < tol + 5 * ref.mutual_info_se,
               f"{what}: mutual_info should be about {ref.mutual_info:.3f}, got {mi:.3f}")
        expect(abs(mkl - ref.marginal_kl) < tol + 5 * ref.marginal_kl_se,
               f"{what}: marginal_kl should be about {ref.marginal_kl:.3f}, got {mkl:.3f}")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task2_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 — a mixture prior's log-density (2 points)
#
# $p(z) = \sum_{k=1}^K \pi_k\,\mathcal{N}(z; m_k, \mathrm{diag}\,e^{s_k})$ with $\pi = \mathrm{softmax}(\text{logits})$. Given `means`, `logvars`
# (each `[K, L]`) and `logits` (`[K]`, not necessarily normalised), return $\log p(z)$ for `z` of shape `[..., L]`, shape `[...]`.
# Work in log space (`torch.logsumexp`, `torch.log_softmax`): far from every component the densities underflow to 0.

# %% nbgrader={"grade": false, "grade_id": "task2_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def mixture_log_prob(z, means, logvars, logits):
    """z [..., L] -> log p(z) [...] under a mixture of K diagonal Gaussians."""
    ### BEGIN SOLUTION
    diff = z.unsqueeze(-2) - means                                                     # [..., K, L]
    log_comp = -0.5 * (diff**2 / logvars.exp() + logvars + math.log(2 * math.pi)).sum(-1)   # [..., K]
    return torch.logsumexp(torch.log_softmax(logits, -1) + log_comp, -1)
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task2_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _check_mixture(fn, seed, K, L, batch, shift=0.0):
    """mixture_log_prob on a random mixture (logits unnormalised, then shifted by `shift`) against torch.distributions."""
    g = torch.Generator().manual_seed(seed)
    means, logvars = 2 * torch.randn(K, L, generator=g, dtype=torch.float64), 0.5 * torch.randn(K, L, generator=g, dtype=torch.float64)
    logits = torch.randn(K, generator=g, dtype=torch.float64) + 3.0          # unnormalised on purpose
    z = 2 * torch.randn(*batch, L, generator=g, dtype=torch.float64)
    D = torch.distributions

    def log_p(lv):  # the reference, kept local to this check
        return D.MixtureSameFamily(D.Categorical(logits=logits), D.Independent(D.Normal(means, (0.5 * lv).exp()), 1)).log_prob(z)

    out = call(fn, z, means, logvars, logits + shift, name="mixture_log_prob")
    what = f"mixture_log_prob(z {tuple(z.shape)}, ...)" + (f" with the logits shifted by {shift:g}" if shift else "")
    expect_tensor(out, shape=batch, name=what)
    ref = log_p(logvars)
    diagnose(out, {"mixture_log_prob does not normalise the weights: use log_softmax(logits), not the logits":
                   ref + torch.logsumexp(logits + shift, -1),
                   "mixture_log_prob reads logvars as log standard deviations (exp(logvars) is the variance)":
                   log_p(2 * logvars)}, atol=1e-6)
    expect_close(out, ref, atol=1e-8, name=f"{what} for K={K}, L={L}")
    return means, logvars, logits


def _check_mixture_mass(fn, means, logvars, logits):
    """A 2-D mixture integrates to 1 over the plane, and its log-density is finite far from every component."""
    grid = torch.linspace(-14, 14, 561, dtype=torch.float64)
    zz = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), -1)               # [561, 561, 2]
    lp = expect_tensor(call(fn, zz, means, logvars, logits, name="mixture_log_prob"), shape=(561, 561),
                       name="mixture_log_prob on a [561, 561, 2] grid", finite=False)
    mass = (lp.exp().sum() * (grid[1] - grid[0]) ** 2).item()
    expect(abs(mass - 1) < 1e-3, f"the mixture density should integrate to 1 over the plane, got {mass:.4f}")
    far = call(fn, torch.full((1, 2), 1e3, dtype=torch.float64), means, logvars, logits, name="mixture_log_prob")
    expect(isinstance(far, torch.Tensor) and far.shape == (1,) and bool(torch.isfinite(far).all()),
           "log p(z) far from every component should be a (very negative) finite number of shape (1,), got "
           f"{far.tolist() if isinstance(far, torch.Tensor) else far!r}")
    return mass, far.item()


# %% nbgrader={"grade": true, "grade_id": "task2_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
means, logvars, logits = _check_mixture(mixture_log_prob, 0, 5, 2, (100,))
mass, far = _check_mixture_mass(mixture_log_prob, means, logvars, logits)
passed(f"matches torch.distributions, integrates to {mass:.4f}, finite far away ({far:.3g})")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    fn = student.mixture_log_prob
    _check_mixture(fn, 1, 64, 8, (4, 7))
    _check_mixture(fn, 2, 1, 3, (10,))
    _check_mixture(fn, 3, 6, 4, (20,), shift=100.0)      # the weights do not change
    _check_mixture_mass(fn, *_check_mixture(fn, 4, 4, 2, (50,)))
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 — vector quantisation with a straight-through gradient (3 points)
#
# Given encoder outputs `z_e` of shape `[..., d]` and a `codebook` `[K, d]`, return `(z_q, indices, codebook_loss, commitment_loss)`:
# * `indices` `[...]` (int64): $k^* = \arg\min_k \|z_e - e_k\|$ for every vector;
# * `z_q` `[..., d]`: equal in value to $e_{k^*}$, but with the straight-through gradient $\partial z_q/\partial z_e = I$, i.e.
#   $z_q = z_e + \mathrm{sg}[e_{k^*} - z_e]$ (`.detach()` is $\mathrm{sg}$);
# * `codebook_loss` $= \operatorname{mean}\|\mathrm{sg}[z_e] - e_{k^*}\|^2$ (gradient to the codebook only) and
#   `commitment_loss` $= \operatorname{mean}\|z_e - \mathrm{sg}[e_{k^*}]\|^2$ (gradient to `z_e` only): squared distances summed over
#   `d`, averaged over all vectors; scalars.

# %% nbgrader={"grade": false, "grade_id": "task3_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def vector_quantize(z_e, codebook):
    """z_e [..., d], codebook [K, d] -> (z_q [..., d], indices [...], codebook_loss, commitment_loss)."""
    ### BEGIN SOLUTION
    flat = z_e.reshape(-1, z_e.shape[-1])
    indices = torch.cdist(flat, codebook).argmin(-1)
    e = codebook[indices].reshape(z_e.shape)
    codebook_loss = ((z_e.detach() - e) ** 2).sum(-1).mean()
    commitment_loss = ((z_e - e.detach()) ** 2).sum(-1).mean()
    return z_e + (e - z_e).detach(), indices.reshape(z_e.shape[:-1]), codebook_loss, commitment_loss
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task3_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
# Runs where vector_quantize lives (your notebook; the grader's kernel): calls it on fresh leaves and returns every
# gradient that matters, None where no gradient arrives.
_VQ_GRADIENTS = """lambda vq, z_e, codebook, upstream: (lambda z, c: (lambda out, grad: {
    "z_q -> z_e": grad((out[0] * upstream).sum(), z), "z_q -> codebook": grad((out[0] * upstream).sum(), c),
    "codebook_loss -> codebook": grad(out[2], c), "codebook_loss -> z_e": grad(out[2], z),
    "commitment_loss -> z_e": grad(out[3], z), "commitment_loss -> codebook": grad(out[3], c)})(
    vq(z, c),
    lambda loss, wrt: torch.autograd.grad(loss, wrt, retain_graph=True, allow_unused=True)[0]
    if isinstance(loss, torch.Tensor) and loss.requires_grad else None))(
    z_e.clone().requires_grad_(True), codebook.clone().requires_grad_(True))"""


def _check_vq(student, seed, batch, K, d):
    """Nearest codes, the straight-through gradient, and each loss's value and gradients (computed here exactly)."""
    g = torch.Generator().manual_seed(seed)
    z_e = torch.randn(*batch, d, generator=g, dtype=torch.float64)
    codebook = torch.randn(K, d, generator=g, dtype=torch.float64)
    out = call(student.vector_quantize, z_e, codebook, name="vector_quantize")
    expect(isinstance(out, (tuple, list)) and len(out) == 4,
           "vector_quantize should return a tuple (z_q, indices, codebook_loss, commitment_loss)")
    z_q, idx, cb_loss, commit = out
    expect_tensor(idx, shape=batch, name="indices")
    expect(idx.dtype == torch.int64, f"indices should be int64 (usable to index the codebook), got {idx.dtype}")
    brute = ((z_e[..., None, :] - codebook) ** 2).sum(-1).argmin(-1)
    expect(torch.equal(idx, brute), f"indices should be the nearest codes; {int((idx != brute).sum())} of {idx.numel()} are not")
    e = codebook[brute]
    expect_tensor(z_q, shape=(*batch, d), name="z_q")
    expect_close(z_q, e, atol=1e-10, name="z_q (its value should be the nearest code)")
    upstream = torch.randn(*batch, d, generator=g, dtype=torch.float64)
    grads = call(student.code(_VQ_GRADIENTS), student.vector_quantize, z_e, codebook, upstream, name="vector_quantize")

    def zero(v):
        return v is None or (isinstance(v, torch.Tensor) and bool((v == 0).all()))

    expect(not zero(grads["z_q -> z_e"]), "no gradient reaches z_e through z_q: use z_q = z_e + (e - z_e).detach()")
    expect_close(grads["z_q -> z_e"], upstream, atol=1e-10,
                 name="the gradient reaching z_e through z_q (should pass straight through)")
    expect(zero(grads["z_q -> codebook"]), "z_q should send no gradient to the codebook (only the codebook loss does)")
    n_vectors = brute.numel()
    to_z_e = 2 * (z_e - e) / n_vectors                                         # d/dz_e of mean |z_e - e|^2
    to_codebook = torch.zeros(K, d, dtype=torch.float64).index_add_(0, brute.flatten(), -to_z_e.reshape(-1, d))
    label = {"codebook": "the codebook", "z_e": "z_e"}
    for loss, name, own, other in ((cb_loss, "codebook_loss", "codebook", "z_e"), (commit, "commitment_loss", "z_e", "codebook")):
        expect_tensor(loss, shape=(), name=name)
        expect_close(loss, ((z_e - e) ** 2).sum(-1).mean(), atol=1e-10, name=name)
        expect(not zero(grads[f"{name} -> {own}"]), f"{name} should have a gradient with respect to {label[own]}")
        expect(zero(grads[f"{name} -> {other}"]), f"{name} should send no gradient to {label[other]} (use .detach())")
        expect_close(grads[f"{name} -> {own}"], to_codebook if own == "codebook" else to_z_e, atol=1e-10,
                     name=f"the gradient of {name} with respect to {label[own]}")


# %% nbgrader={"grade": true, "grade_id": "task3_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
_check_vq(LocalStudent(globals()), 0, (16, 4), 32, 4)
passed("nearest codes, straight-through gradient, and each loss moves only its own side")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    _check_vq(student, 1, (5,), 7, 3)
    _check_vq(student, 2, (2, 3, 6), 50, 8)
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task4_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 4 — a better prior for the digits VAE (3 points)
#
# Keep the VAE above fixed. Only the prior appears in the marginal-KL term, so fitting a prior $p_\lambda$ to the aggregate
# posterior — maximising $\mathbb{E}_{q(z)}\log p_\lambda(z)$ — raises the training ELBO by exactly
# $\mathrm{KL}(q(z)\,\|\,\mathcal{N}(0, I)) - \mathrm{KL}(q(z)\,\|\,p_\lambda)$. Fit a mixture of $K$ diagonal Gaussians (your choice of $K$) with your
# `mixture_log_prob` and `fit` (`fit(loss_fn, [params...], steps=..., lr=...)`), sampling $z \sim q(z)$ by picking a random
# training image $i$ and drawing $z \sim q(z\mid x_i)$. Return `(means, logvars, logits)`.
# **Target: $\mathrm{KL}(q(z)\,\|\,p_\lambda) < 0.45$ nats** ($\mathcal{N}(0, I)$ gives about 0.75), in about 10 seconds.

# %% nbgrader={"grade": false, "grade_id": "task4_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def fit_mixture_prior(mu, logvar):
    """mu, logvar [n, L] of q(z|x_i) -> (means [K, L], logvars [K, L], logits [K]) of a mixture fitted to q(z)."""
    ### BEGIN SOLUTION
    K, L = 64, mu.shape[1]
    g = torch.Generator().manual_seed(0)
    means = torch.randn(K, L, generator=g).requires_grad_(True)
    logvars = torch.zeros(K, L, requires_grad=True)
    logits = torch.zeros(K, requires_grad=True)

    def loss():
        i = torch.randint(len(mu), (512,))
        z = mu[i] + (0.5 * logvar[i]).exp() * torch.randn(512, L)
        return -mixture_log_prob(z, means, logvars, logits).mean()

    fit(loss, [means, logvars, logits], steps=1000, lr=5e-3, progress=False)
    return means.detach(), logvars.detach(), logits.detach()
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task4_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _mixture_params(out):
    """(means [K, 8], logvars [K, 8], logits [K]) from fit_mixture_prior's answer, as float64, or a clear message."""
    expect(isinstance(out, (tuple, list)) and len(out) == 3, "fit_mixture_prior should return a tuple (means, logvars, logits)")
    means, logvars, logits = out
    expect_tensor(means, name="means")
    expect(means.ndim == 2 and means.shape[0] >= 1, f"means should have shape [K, 8], got {tuple(means.shape)}")
    K = means.shape[0]
    expect_tensor(means, shape=(K, 8), name="means")
    expect_tensor(logvars, shape=(K, 8), name="logvars")
    expect_tensor(logits, shape=(K,), name="logits")
    return tuple(t.detach().double() for t in (means, logvars, logits))


def _elbo_gain(x, means, logvars, logits, reps=10):
    """Mean ELBO of the VAE above with the mixture as its prior minus with N(0, I): same encoder, decoder and draws
    (common random numbers). The mixture's log-density is torch.distributions', not your task-2 code."""
    D = torch.distributions
    mixture = D.MixtureSameFamily(D.Categorical(logits=logits), D.Independent(D.Normal(means, (0.5 * logvars).exp()), 1))

    class Prior(torch.nn.Module):
        def log_prob(self, z):
            return mixture.log_prob(z.double()).to(z.dtype)

    prior, gains = Prior(), []
    for r in range(reps):
        with torch.no_grad():
            torch.manual_seed(r)
            with_prior = VAE(vae.encoder, vae.decoder, prior).elbo(x)
            torch.manual_seed(r)
            gains.append((with_prior - vae.elbo(x)).mean())
    return torch.stack(gains).mean().item()


# %% nbgrader={"grade": true, "grade_id": "task4_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
fitted_mixture = call(fit_mixture_prior, mu_train, logvar_train)
means, logvars, logits = _mixture_params(fitted_mixture)
# The prior enters the averaged ELBO only through -KL(q(z) || p), so the gain over N(0, I) is
# KL(q(z) || N(0, I)) - KL(q(z) || p). For this VAE KL(q(z) || N(0, I)) is about 0.75 nats, so KL(q(z) || p) < 0.45
# means a gain above 0.30 nats per training image.
gain = _elbo_gain(x_train, means, logvars, logits)
print(f"training ELBO with your mixture of {len(means)}: {gain:+.3f} nats per image over N(0, I)")
expect(gain > 0.30, f"the fitted prior should raise the training ELBO by more than 0.30 nats per image (KL(q(z) || p) below "
       f"0.45 nats), but it raises it by {gain:+.3f}: fit the mixture to samples of q(z) (mu + sigma * eps, not mu alone), "
       "with enough components and steps")
passed(f"training ELBO +{gain:.3f} nats per image > 0.30")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    from course_utils.priors import MixturePrior
    from course_utils.priors import surgery_terms as reference

    # the mixture the check above fitted with the student's fit_mixture_prior, judged on the grader's own VAE
    means, logvars, logits = _mixture_params(student.value(student.fitted_mixture))
    gain = _elbo_gain(x_train, means, logvars, logits)
    expect(gain > 0.30, f"the fitted prior should raise the training ELBO by more than 0.30 nats per image, got {gain:+.3f}")
    test_gain = _elbo_gain(x_test, means, logvars, logits)
    expect(test_gain > 0.1, f"the fitted prior should also raise the test ELBO (by more than 0.1 nats), got {test_gain:+.3f}")
    prior = MixturePrior(8, len(means)).double()
    with torch.no_grad():
        prior.means.copy_(means), prior.logvars.copy_(logvars), prior.logits.copy_(logits)
    fitted = reference(mu_train, logvar_train, prior.log_prob, generator=torch.Generator().manual_seed(1))
    expect(fitted.marginal_kl < 0.5, f"KL(q(z) || p) should be below 0.5 nats, got {fitted.marginal_kl:.3f}")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task5_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 5 — written: posterior collapse (2 points, graded by hand)
#
# (a) Starting from $\mathcal{L}(x) = \log p_\theta(x) - \mathrm{KL}(q(z\mid x)\,\|\,p_\theta(z\mid x))$, explain why a decoder that can model the
# data without $z$ (for example an autoregressive one) makes $q(z\mid x) = p(z)$ an optimum of the ELBO. How do you see collapse
# in a trained model, and why does the total loss not show it?
# (b) In the lecture's β sweep every dimension collapsed at β = 5. Name two remedies for unwanted collapse and say what each
# costs; and say why the β = 0.1 model's objective is no longer a bound on $\log p(x)$.

# %% [markdown] nbgrader={"grade": true, "grade_id": "task5_answer", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# (a) If $p_\theta(x\mid z) = p_\theta(x)$ for all $z$, then $p_\theta(z\mid x) = p(z)p_\theta(x\mid z)/p_\theta(x) = p(z)$, and
# $q(z\mid x) = p(z)$ makes the KL to the posterior 0: the ELBO equals $\log p_\theta(x)$, the best it can be for that decoder.
# Any information in $z$ costs KL to the prior and buys nothing the decoder cannot do itself, so the optimiser switches $z$
# off. It shows in the per-dimension KL, $\frac1n\sum_i\mathrm{KL}(q(z_j\mid x_i)\,\|\,\mathcal{N}(0, 1)) \approx 0$ (and in decoder outputs
# that ignore $z$); the total loss can be excellent, because the decoder alone models the data well.
#
# (b) KL warm-up (anneal β from 0 to 1: the code is used early on; costs a schedule, and the gain may fade once β = 1);
# free bits (no KL penalty below a minimum rate per dimension: keeps a rate floor, but the objective is no longer the ELBO);
# a weaker decoder (factorised, or a limited receptive field: forces use of $z$, at the cost of likelihood). With β < 1 the
# objective is $\mathbb{E}\log p(x\mid z) - \beta\,\mathrm{KL}$, which is larger than the ELBO, and can exceed $\log p(x)$: it is not a bound.
# ### END SOLUTION
