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
# # Homework 02 — normalizing flows
#
# Follows lecture notebook `02_normalizing_flows` (lecture 2 of the course notes). Four coded tasks (11 points, graded
# automatically) and one written question (2 points, graded by hand).
#
# | task | what you write | points |
# |---|---|---|
# | 1 | `AffineCouplingLayer.forward` / `.inverse`: a RealNVP coupling layer with its log-dets | 3 |
# | 2 | `made_masks`: the masks of a MADE network | 2 |
# | 3 | `maf_forward` / `maf_inverse`: MAF density in one pass, sampling in D passes | 3 |
# | 4 | `train_coupling_flow`: a coupling flow fitted to `moons` within a stated KL gap | 3 |
# | 5 | written: why IAF cannot evaluate the density of external data cheaply | 2 |
#
# **How to work.** Replace every `raise NotImplementedError()` with your code and run the check cell below it: it prints
# `✓ ...` or one line saying what was expected. Hidden checks of the same kind use other inputs, so keep your code
# general. Do not rename functions or delete cells; the notebook must run top to bottom in about a minute on a laptop CPU.
#
# The course convention (`course_utils.flows`): a layer maps **data towards the base**, `forward(x) -> (z, log_det)`
# with `log_det = log|det ∂z/∂x|` per sample `[B]`, and `inverse(z) -> (x, log_det)` with `log_det = log|det ∂x/∂z|`.

# %% nbgrader={"grade": false, "grade_id": "setup", "locked": true, "schema_version": 3, "solution": false, "task": false}
import math

import torch

from course_utils import seed_everything, set_threads
from course_utils.checks import (call, diagnose, expect, expect_close, expect_density_fit, expect_tensor, hidden_test,
                                 passed)
from course_utils.data import toy
from course_utils.flows import MADE, AffineCoupling, Flow, jacobian_log_det, randomize_, realnvp, standardize
from course_utils.training import fit

seed_everything(0)
set_threads()
torch.set_default_dtype(torch.float32)

# %% [markdown] nbgrader={"grade": false, "grade_id": "task1_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 1 — an affine coupling layer (3 points)
#
# With a binary `mask` $m$, the kept coordinates pass unchanged and condition an affine map of the others:
# $$z = m \odot x + (1 - m) \odot \big(x \odot e^{s} + t\big), \qquad (s, t) = \texttt{scale\_and\_shift}(m \odot x).$$
# Implement `forward(x) -> (z, log_det)` and `inverse(z) -> (x, log_det)`. The conditioner is given; its log-scale is
# bounded by a `tanh`. Use only the entries of `s` that act on transformed coordinates in the log-det.

# %% nbgrader={"grade": false, "grade_id": "task1_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
class AffineCouplingLayer(torch.nn.Module):
    """RealNVP coupling layer in the course convention (data -> base)."""

    def __init__(self, mask, hidden=64):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.get_default_dtype()))
        d = len(self.mask)
        self.net = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 2 * d))

    def scale_and_shift(self, x_kept):
        """x_kept = mask * x, [B, D] -> (s, t), each [B, D]; s is bounded in (-1, 1)."""
        s, t = self.net(x_kept).chunk(2, dim=-1)
        return torch.tanh(s), t

    def forward(self, x):
        """x [B, D] -> (z [B, D], log|det dz/dx| [B])"""
        ### BEGIN SOLUTION
        s, t = self.scale_and_shift(x * self.mask)
        free = 1 - self.mask
        z = x * self.mask + free * (x * torch.exp(s) + t)
        return z, (free * s).sum(-1)
        ### END SOLUTION

    def inverse(self, z):
        """z [B, D] -> (x [B, D], log|det dx/dz| [B])"""
        ### BEGIN SOLUTION
        s, t = self.scale_and_shift(z * self.mask)  # the kept part of z equals the kept part of x
        free = 1 - self.mask
        x = z * self.mask + free * (z - t) * torch.exp(-s)
        return x, -(free * s).sum(-1)
        ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "task1_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
def _check_coupling(mask, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    layer = call(AffineCouplingLayer, mask, name=f"AffineCouplingLayer({mask.tolist()})").to(dtype)
    x = torch.randn(16, len(mask), dtype=dtype)
    fwd = call(layer.forward, x, name="AffineCouplingLayer.forward")
    expect(isinstance(fwd, tuple) and len(fwd) == 2, "forward(x) should return a pair (z, log_det)")
    z, ld = fwd
    expect_tensor(z, shape=tuple(x.shape), name="z from forward")
    expect_tensor(ld, shape=(16,), name="log_det from forward")
    keep = mask.bool()
    expect_close(z[:, keep], x[:, keep], atol=1e-6, name="the kept coordinates of z (they must pass unchanged)")
    inv = call(layer.inverse, z, name="AffineCouplingLayer.inverse")
    expect(isinstance(inv, tuple) and len(inv) == 2, "inverse(z) should return a pair (x, log_det)")
    x_back, ld_inv = inv
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    with torch.no_grad():
        s, t = layer.scale_and_shift(x * mask)
        s_all, t_all = layer.scale_and_shift(x)
    free = 1 - mask
    diagnose(ld, {"the forward log-det sums s over every coordinate; only the transformed ones (1 - mask) scale":
                  s.sum(-1),
                  "the forward log-det has the wrong sign: z = x * exp(s) + t gives log|dz/dx| = +sum of s": -(free * s).sum(-1)},
             atol=tol)
    diagnose(z, {"the conditioner must see only the kept coordinates: call scale_and_shift(mask * x), not scale_and_shift(x)":
                 x * mask + free * (x * s_all.exp() + t_all)}, atol=tol)
    diagnose(ld_inv, {"the inverse log-det should be minus the forward one (log|dx/dz| = -sum of s), not equal to it":
                      (free * s).sum(-1)}, atol=tol)
    expect_close(x_back, x, atol=tol, name="inverse(forward(x)) (the round trip)")
    expect_close(ld, jacobian_log_det(lambda v: layer.forward(v[None])[0][0], x), atol=tol, name="forward log_det")
    expect_close(ld_inv, jacobian_log_det(lambda v: layer.inverse(v[None])[0][0], z), atol=tol, name="inverse log_det")


_check_coupling(torch.tensor([1.0, 0.0, 1.0, 0.0]))
passed("coupling layer: kept coordinates unchanged, round trip, and both log-dets equal the autograd Jacobian's")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    # the layer gets conditioner weights drawn here (load_state_dict), so every reference is computed from them here
    g = torch.Generator().manual_seed(111)
    for mask in ([0.0, 1.0], [1.0, 1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0, 1.0, 1.0]):
        m = torch.tensor(mask, dtype=torch.float64)
        d, free, keep = len(m), 1 - m, m.bool()
        w0, b0 = 0.6 * torch.randn(64, d, generator=g, dtype=torch.float64), 0.3 * torch.randn(64, generator=g, dtype=torch.float64)
        w2, b2 = 0.4 * torch.randn(2 * d, 64, generator=g, dtype=torch.float64), 0.3 * torch.randn(2 * d, generator=g, dtype=torch.float64)
        layer = call(student.AffineCouplingLayer, m, name=f"AffineCouplingLayer({mask})")
        call(layer.double, name="AffineCouplingLayer.double")
        call(layer.load_state_dict, {"mask": m, "net.0.weight": w0, "net.0.bias": b0, "net.2.weight": w2, "net.2.bias": b2},
             name="AffineCouplingLayer.load_state_dict (keep the given conditioner `net`)")

        def conditioner(v):  # the given scale_and_shift with these weights
            s, t = (torch.tanh(v @ w0.T + b0) @ w2.T + b2).chunk(2, dim=-1)
            return torch.tanh(s), t

        def coupling(v):  # the map forward should compute
            s, t = conditioner(v * m)
            return v * m + free * (v * s.exp() + t)

        x = 1.5 * torch.randn(32, d, generator=g, dtype=torch.float64)
        s, t = conditioner(x * m)
        s_all, t_all = conditioner(x)
        z_ref, ld_ref = coupling(x), jacobian_log_det(coupling, x)
        fwd = call(layer.forward, x, name="AffineCouplingLayer.forward")
        expect(isinstance(fwd, tuple) and len(fwd) == 2, "forward(x) should return a pair (z, log_det)")
        z, ld = fwd
        expect_tensor(z, shape=(32, d), name=f"z from forward with mask {mask}")
        expect_tensor(ld, shape=(32,), name=f"log_det from forward with mask {mask}")
        expect_close(z[:, keep], x[:, keep], atol=1e-12, name="the kept coordinates of z (they must pass unchanged)")
        diagnose(z, {"the conditioner must see only the kept coordinates: call scale_and_shift(mask * x), not scale_and_shift(x)":
                     x * m + free * (x * s_all.exp() + t_all)}, atol=1e-9)
        expect_close(z, z_ref, atol=1e-9, name=f"z from forward with mask {mask}")
        diagnose(ld, {"the forward log-det sums s over every coordinate; only the transformed ones (1 - mask) scale": s.sum(-1),
                      "the forward log-det has the wrong sign: z = x * exp(s) + t gives log|dz/dx| = +sum of s": -ld_ref},
                 atol=1e-9)
        expect_close(ld, ld_ref, atol=1e-9, name=f"forward log_det with mask {mask} (log|det| of the coupling's Jacobian)")
        inv = call(layer.inverse, z_ref, name="AffineCouplingLayer.inverse")
        expect(isinstance(inv, tuple) and len(inv) == 2, "inverse(z) should return a pair (x, log_det)")
        x_back, ld_inv = inv
        expect_tensor(x_back, shape=(32, d), name=f"x from inverse with mask {mask}")
        diagnose(ld_inv, {"the inverse log-det should be minus the forward one (log|dx/dz| = -sum of s), not equal to it":
                          ld_ref}, atol=1e-9)
        expect_close(x_back, x, atol=1e-9, name=f"inverse(forward(x)) with mask {mask} (the round trip)")
        expect_close(ld_inv, -ld_ref, atol=1e-9, name=f"inverse log_det with mask {mask} (log|det| of the inverse's Jacobian)")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task2_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 2 — MADE masks (2 points)
#
# A MADE network with inputs $x_1, \dots, x_D$ (natural order) and hidden layers of sizes `hidden` must make output $i$
# depend on $x_{<i}$ only. Give every hidden unit a degree in $\{1, \dots, D-1\}$ (cycle through them), every input and
# output $i$ the degree $i$. A hidden unit of degree $k$ may see units of the previous layer with degree $\le k$; an output
# of degree $i$ may see last-layer hidden units with degree $< i$.
#
# Return the list of 0/1 masks, one per weight matrix, each of shape `[out_features, in_features]` (as `nn.Linear`
# weights are): `[hidden[0], D]`, `[hidden[1], hidden[0]]`, …, `[D, hidden[-1]]`.

# %% nbgrader={"grade": false, "grade_id": "task2_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def made_masks(dim, hidden):
    """dim: int >= 2, hidden: list of ints -> list of float 0/1 masks, shapes [out, in]."""
    ### BEGIN SOLUTION
    degrees = [torch.arange(1, dim + 1)]
    for h in hidden:
        degrees.append(torch.arange(h) % (dim - 1) + 1)
    masks = [(d_out[:, None] >= d_in[None, :]).float() for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    masks.append((torch.arange(1, dim + 1)[:, None] > degrees[-1][None, :]).float())
    return masks
    ### END SOLUTION


# %% nbgrader={"grade": false, "grade_id": "task2_helpers", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _check_masks(made_masks, dim, hidden):
    """Check the masks that `made_masks(dim, hidden)` returns: shapes, 0/1 entries, cycling degrees, and the paths."""
    masks = call(made_masks, dim, list(hidden), name="made_masks")
    expect(isinstance(masks, (list, tuple)) and len(masks) == len(hidden) + 1,
           f"made_masks({dim}, {list(hidden)}) should return {len(hidden) + 1} masks, one per weight matrix")
    shapes = [(h, d) for d, h in zip([dim, *hidden], [*hidden, dim])]
    for k, (mask, shape) in enumerate(zip(masks, shapes)):
        expect_tensor(mask, shape=shape, name=f"mask {k} of made_masks({dim}, {list(hidden)})")
        expect(((mask == 0) | (mask == 1)).all(), f"mask {k} should contain only 0 and 1")
    paths = masks[0]
    for mask in masks[1:]:
        paths = mask @ paths  # paths[i, j] = number of paths from input j to output i
    degrees = torch.arange(1, dim + 1).float()
    for k, mask in enumerate(masks[:-1]):   # a hidden unit's degree: the largest degree it sees in the layer below
        degrees = (mask * degrees).max(-1).values
        cycle = torch.arange(len(degrees)) % (dim - 1) + 1
        expect(not torch.equal(degrees, cycle.float() - 1), f"hidden layer {k} sees one degree too few: a hidden unit of "
               "degree k may see the units below with degree <= k (use >=, not >)")
        expect(torch.equal(degrees, cycle.float()), f"the degrees of hidden layer {k} should cycle 1, 2, ..., D-1 = {dim - 1} "
               f"(that is {cycle.tolist()}), but the masks give {degrees.long().tolist()}: random or shifted degrees "
               "leave some connections out in other layer sizes")
    lower = torch.tril(torch.ones(dim, dim), -1).bool()
    expect((paths[~lower] == 0).all(), f"an output depends on itself or on a later input (dim={dim}, hidden={list(hidden)})")
    expect((paths[lower] > 0).all(), f"an output cannot see some earlier input (dim={dim}, hidden={list(hidden)})")


# %% nbgrader={"grade": true, "grade_id": "task2_check", "locked": true, "points": 2, "schema_version": 3, "solution": false, "task": false}
_check_masks(made_masks, 3, [8, 8])
_check_masks(made_masks, 6, [5, 7])
passed("output i is connected to exactly the inputs before it")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    for dim, hidden in ((2, [4]), (5, [16]), (6, [12, 12, 12]), (8, [7, 7])):
        _check_masks(student.made_masks, dim, hidden)
    # the same property seen from outputs: a network with the student's masks and random weights (built here);
    # changing input i must leave outputs 1..i unchanged and change every later output
    g = torch.Generator().manual_seed(121)
    dim, hidden = 5, [9, 11]
    masks = call(student.made_masks, dim, hidden, name="made_masks")
    layers = [(torch.randn(mk.shape, generator=g, dtype=torch.float64) * mk.double(),
               0.1 * torch.randn(mk.shape[0], generator=g, dtype=torch.float64)) for mk in masks]

    def net(h):
        for k, (w, b) in enumerate(layers):
            h = h @ w.T + b
            h = torch.tanh(h) if k < len(layers) - 1 else h
        return h

    x = torch.randn(16, dim, generator=g, dtype=torch.float64)
    for i in range(dim):
        moved = x.clone()
        moved[:, i] += 1 + torch.rand(16, generator=g, dtype=torch.float64)
        changed = (net(moved) - net(x)).abs() > 1e-12
        early = [j + 1 for j in range(i + 1) if changed[:, j].any()]
        expect(not early, f"changing input {i + 1} changes output(s) {early} of a network with your masks (dim={dim}, "
               f"hidden={hidden}): output j may depend on inputs before j only")
        expect(changed[:, i + 1:].all(), f"changing input {i + 1} leaves a later output unchanged in a network with your "
               f"masks (dim={dim}, hidden={hidden}): output j should see every input before j")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task3_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 3 — MAF: density in one pass, sampling in D passes (3 points)
#
# `made(h)` (a `course_utils.flows.MADE`) returns `(mu, alpha)`, each `[B, D]`, with entry $i$ depending on $h_{<i}$ only.
# A MAF layer maps data to base by
# $$z_i = (x_i - \mu_i(x_{<i}))\,e^{-\alpha_i(x_{<i})}, \qquad \log\lvert\det \partial z/\partial x\rvert = -\textstyle\sum_i \alpha_i(x_{<i}).$$
# * `maf_forward(made, x) -> (z, log_det)`: **one** call of `made`.
# * `maf_inverse(made, z) -> x`: recover $x$ coordinate by coordinate, calling `made` on the partial $x$ (D calls).

# %% nbgrader={"grade": false, "grade_id": "task3_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def maf_forward(made, x):
    """x [B, D] -> (z [B, D], log_det [B]), one pass of made."""
    ### BEGIN SOLUTION
    mu, alpha = made(x)
    return (x - mu) * torch.exp(-alpha), -alpha.sum(-1)
    ### END SOLUTION


def maf_inverse(made, z):
    """z [B, D] -> x [B, D], D passes of made."""
    ### BEGIN SOLUTION
    x = torch.zeros_like(z)
    for i in range(z.shape[1]):
        mu, alpha = made(x)
        x = x.clone()
        x[:, i] = z[:, i] * torch.exp(alpha[:, i]) + mu[:, i]
    return x
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "task3_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
def _check_maf(dim, dtype=torch.float32, seed=0):
    torch.manual_seed(seed)
    made = randomize_(MADE(dim, hidden=(32, 32)), scale=0.2, seed=seed).to(dtype)
    calls = []
    hook = made.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(8, dim, dtype=dtype)
    out = call(maf_forward, made, x)
    expect(isinstance(out, tuple) and len(out) == 2, "maf_forward should return a pair (z, log_det)")
    z, ld = out
    expect(len(calls) == 1, f"maf_forward should call made once (the density is one pass), it called it {len(calls)} times")
    expect_tensor(z, shape=(8, dim), name="z from maf_forward")
    expect_tensor(ld, shape=(8,), name="log_det from maf_forward")
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    hook.remove()
    with torch.no_grad():
        mu, alpha = made(x)
    diagnose(z, {"maf_forward multiplies by exp(alpha); mapping data to base divides: z = (x - mu) * exp(-alpha)":
                 (x - mu) * alpha.exp()}, atol=tol)
    diagnose(ld, {"maf_forward's log-det has the wrong sign: z = (x - mu) * exp(-alpha) gives log|dz/dx| = -sum of alpha":
                  alpha.sum(-1)}, atol=tol)
    expect_close(ld, jacobian_log_det(lambda v: maf_forward(made, v[None])[0][0], x), atol=tol, name="maf_forward log_det")
    x_back = call(maf_inverse, made, z)
    expect_tensor(x_back, shape=(8, dim), name="x from maf_inverse")
    expect_close(x_back, x, atol=tol, name="maf_inverse(maf_forward(x)) (the round trip)")


_check_maf(3)
passed("MAF: one pass for the density, the log-det equals autograd's, and sampling inverts it")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    # `made` is a MADE built here; the student's functions get a copy as code their kernel builds from its weights.
    # The copy for maf_forward raises on a second call, so "one pass" is checked from the outcome.
    source = ("lambda h: (calls.append(1) if len(calls) < most else (_ for _ in ()).throw(RuntimeError("
              "'made was called a second time: maf_forward should call made once (the density is one pass)')), "
              "(lambda o: (o[..., :D], o[..., D:]))(torch.relu(torch.relu(h @ A0 + c0) @ A1 + c1) @ A2 + c2))[1]")
    g = torch.Generator().manual_seed(131)
    for k, dim in enumerate((2, 5, 7)):
        made = randomize_(MADE(dim, hidden=(32, 32)), scale=0.3, seed=20 + k).double()
        weights = {}
        for j, layer in enumerate(made.net[::2]):
            weights[f"A{j}"], weights[f"c{j}"] = (layer.weight * layer.mask).T.detach(), layer.bias.detach()

        def maf(x):  # the reference z and log-det, computed here
            mu, alpha = made(x)
            return (x - mu) * torch.exp(-alpha), -alpha.sum(-1)

        x = torch.randn(8, dim, generator=g, dtype=torch.float64)
        with torch.no_grad():
            mu, alpha = made(x)
            z_ref, ld_ref = maf(x)
        out = call(student.maf_forward, student.code(source, most=1, calls=[], D=dim, **weights), x, name="maf_forward")
        expect(isinstance(out, tuple) and len(out) == 2, "maf_forward should return a pair (z, log_det)")
        z, ld = out
        expect_tensor(z, shape=(8, dim), name=f"z from maf_forward in D={dim}")
        expect_tensor(ld, shape=(8,), name=f"log_det from maf_forward in D={dim}")
        diagnose(z, {"maf_forward multiplies by exp(alpha); mapping data to base divides: z = (x - mu) * exp(-alpha)":
                     (x - mu) * alpha.exp()}, atol=1e-9)
        diagnose(ld, {"maf_forward's log-det has the wrong sign: z = (x - mu) * exp(-alpha) gives log|dz/dx| = -sum of alpha":
                      alpha.sum(-1)}, atol=1e-9)
        expect_close(z, z_ref, atol=1e-9, name=f"z from maf_forward in D={dim}")
        expect_close(ld, jacobian_log_det(lambda v: maf(v[None])[0][0], x), atol=1e-9,
                     name=f"maf_forward log_det in D={dim} (log|det| of the MAF's Jacobian)")
        # autoregressive, seen from outputs: changing x_i leaves z_j, j < i, unchanged
        moved = x.repeat(dim, 1)
        moved[torch.arange(dim * 8), torch.arange(dim).repeat_interleave(8)] += 1.0
        z_moved = call(student.maf_forward, student.code(source, most=1, calls=[], D=dim, **weights), moved,
                       name="maf_forward")[0]
        expect_tensor(z_moved, shape=(dim * 8, dim), name=f"z from maf_forward in D={dim}")
        for i in range(dim):
            expect(((z_moved[8 * i:8 * (i + 1), :i] - z[:, :i]).abs() < 1e-10).all(),
                   f"changing x_{i + 1} changes an earlier z_j in maf_forward: z_j may depend on x_1..x_j only")
        # sampling: D passes of made on the partial x; changing z_i leaves x_j, j < i, unchanged
        x_back = call(student.maf_inverse, student.code(source, most=10**6, calls=[], D=dim, **weights), z_ref,
                      name="maf_inverse")
        expect_tensor(x_back, shape=(8, dim), name=f"x from maf_inverse in D={dim}")
        expect_close(x_back, x, atol=1e-9, name=f"maf_inverse(maf_forward(x)) in D={dim} (the round trip)")
        moved = z_ref.repeat(dim, 1)
        moved[torch.arange(dim * 8), torch.arange(dim).repeat_interleave(8)] += 1.0
        x_moved = call(student.maf_inverse, student.code(source, most=10**6, calls=[], D=dim, **weights), moved,
                       name="maf_inverse")
        expect_tensor(x_moved, shape=(dim * 8, dim), name=f"x from maf_inverse in D={dim}")
        with torch.no_grad():
            z_back = maf(x_moved)[0]
        expect_close(z_back, moved, atol=1e-9, name=f"maf_forward(maf_inverse(z)) in D={dim} (the round trip)")
        for i in range(dim):
            expect(((x_moved[8 * i:8 * (i + 1), :i] - x[:, :i]).abs() < 1e-10).all(),
                   f"changing z_{i + 1} changes an earlier x_j in maf_inverse: x_j may depend on z_1..z_j only")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task4_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 4 — a coupling flow on `moons` (3 points)
#
# Build a flow with coupling layers (your `AffineCouplingLayer` or `course_utils.flows.AffineCoupling`; `realnvp` and
# `standardize` may help), fit it by maximum likelihood to `x_train` with `fit`, and return it.
# **Target: a KL gap below 0.15 nats** on the test set, with about 15 seconds of training.

# %% nbgrader={"grade": false, "grade_id": "task4_data", "locked": true, "schema_version": 3, "solution": false, "task": false}
def _moons(seed, n_train, n_test):
    """Train and test sets from `moons` with the test set's exact log-density (the target itself is not kept)."""
    target, g = toy("moons"), torch.Generator().manual_seed(seed)
    train = target.sample((n_train,), generator=g) if n_train else torch.zeros(0, 2)
    test = target.sample((n_test,), generator=g)
    return train, test, target.log_prob(test)


x_train, x_test, log_p_test = _moons(0, 4000, 20000)
print(f"train {tuple(x_train.shape)}, test {tuple(x_test.shape)}, entropy on the test set {-log_p_test.mean():.4f} nats")

# %% nbgrader={"grade": false, "grade_id": "task4_solution", "locked": false, "schema_version": 3, "solution": true, "task": false}
def train_coupling_flow(x_train):
    """Fit a coupling flow to x_train [N, 2] by maximum likelihood; return it (a Flow with .log_prob)."""
    ### BEGIN SOLUTION
    model = Flow([standardize(x_train), *realnvp(2, n_layers=8, hidden=(32, 32)).layers])

    def nll():
        batch = x_train[torch.randint(len(x_train), (1024,))]
        return -model.log_prob(batch).mean()

    fit(nll, model, steps=1500, lr=1e-2, clip_grad=10.0, desc="RealNVP on moons")
    return model
    ### END SOLUTION


# %% nbgrader={"grade": true, "grade_id": "task4_check", "locked": true, "points": 3, "schema_version": 3, "solution": false, "task": false}
model = call(train_coupling_flow, x_train)
expect(hasattr(model, "log_prob") and isinstance(model, torch.nn.Module),
       "train_coupling_flow should return a model (an nn.Module) with a .log_prob(x) method")
expect(any(isinstance(m, (AffineCoupling, AffineCouplingLayer)) for m in model.modules()),
       "the model should contain coupling layers (AffineCouplingLayer or course_utils.flows.AffineCoupling)")
with torch.no_grad():
    log_q = call(model.log_prob, x_test, name="model.log_prob")
expect_tensor(log_q, shape=(len(x_test),), name="model.log_prob(x_test)")
expect((log_q - log_p_test).abs().max().item() > 1e-5,
       "train_coupling_flow returned the true moons density itself (it matches to 1e-5), not a model fitted to x_train")
print(f"test NLL {-log_q.mean().item():.4f} nats")
gap = expect_density_fit(log_q, log_p_test, 0.15, "the coupling flow")  # (more layers, steps or a better learning rate)
passed(f"KL gap {gap:.4f} < 0.15 nats")
### BEGIN HIDDEN TESTS
@hidden_test
def _(student):
    model = student.model  # the flow the check above trained with the student's train_coupling_flow
    kinds = call(student.code("lambda m: [f'{type(x).__module__}.{type(x).__qualname__}' for x in m.modules()] "
                              "if isinstance(m, torch.nn.Module) and hasattr(m, 'log_prob') else None"), model,
                 name="the model's modules")
    expect(kinds is not None, "train_coupling_flow should return a model (an nn.Module) with a .log_prob(x) method")
    expect(any(k == "course_utils.flows.AffineCoupling" or k.endswith(".AffineCouplingLayer") for k in kinds),
           "the model should contain coupling layers (AffineCouplingLayer or course_utils.flows.AffineCoupling)")
    _, x_fresh, log_p_fresh = _moons(7, 0, 50000)
    log_q = call(model.log_prob, x_fresh, name="model.log_prob")
    expect_tensor(log_q, shape=(len(x_fresh),), name="model.log_prob(x)")
    expect((log_q - log_p_fresh).abs().max().item() > 1e-5,
           "train_coupling_flow returned the true moons density itself, not a model fitted to x_train")
    expect_density_fit(log_q, log_p_fresh, 0.18, "the coupling flow on fresh data from the target")
### END HIDDEN TESTS

# %% [markdown] nbgrader={"grade": false, "grade_id": "task5_text", "locked": true, "schema_version": 3, "solution": false, "task": false}
# ## Task 5 — written (2 points, graded by hand)
#
# An IAF layer computes $x_i = \mu_i(z_{<i}) + e^{\alpha_i(z_{<i})} z_i$. (a) Why can an IAF not evaluate the density of
# *external* data (say, a test set) cheaply, while it can evaluate the density of its own samples in one pass?
# (b) Which of MAF and IAF would you choose to fit a density to data by maximum likelihood, and which as the
# variational posterior of a VAE (chapter 03), and why?

# %% [markdown] nbgrader={"grade": true, "grade_id": "task5_answer", "locked": false, "points": 2, "schema_version": 3, "solution": true, "task": false}
# ### BEGIN SOLUTION
# (a) The density needs $z = f(x)$ and $\sum_i \alpha_i(z_{<i})$. For an external $x$ only $x$ is known, and
# $z_i = (x_i - \mu_i(z_{<i}))e^{-\alpha_i(z_{<i})}$ depends on the earlier $z$'s: they must be recovered one coordinate
# at a time, $D$ sequential network passes. For its own samples the IAF drew $z$ first, so $\alpha(z)$ is already at hand
# and the density costs nothing extra.
#
# (b) Maximum likelihood evaluates the density of every training point at every step: MAF (one pass per density;
# slow sampling is acceptable). A VAE posterior is *sampled* (reparameterised) and only its own samples are scored:
# IAF (one pass per sample, and its own samples' densities for free).
# ### END SOLUTION
