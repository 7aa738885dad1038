"""Plausible wrong answers to homework 02. tests/test_homework.py puts each `code` in place of its task's
solution, runs the task's VISIBLE check, and asserts it fails with a CheckFailed whose message contains `says`."""

_LAYER = '''
class AffineCouplingLayer(torch.nn.Module):
    def __init__(self, mask, hidden=64):
        super().__init__()
        self.register_buffer("mask", torch.as_tensor(mask, dtype=torch.get_default_dtype()))
        d = len(self.mask)
        self.net = torch.nn.Sequential(torch.nn.Linear(d, hidden), torch.nn.Tanh(), torch.nn.Linear(hidden, 2 * d))

    def scale_and_shift(self, x_kept):
        s, t = self.net(x_kept).chunk(2, dim=-1)
        return torch.tanh(s), t
'''

MISTAKES = [
    # task 1: affine coupling
    dict(task="task1", name="log-det sums s over the kept coordinates too", says="only the transformed ones", code=_LAYER + '''
    def forward(self, x):
        s, t = self.scale_and_shift(x * self.mask)
        free = 1 - self.mask
        return x * self.mask + free * (x * torch.exp(s) + t), s.sum(-1)

    def inverse(self, z):
        s, t = self.scale_and_shift(z * self.mask)
        free = 1 - self.mask
        return z * self.mask + free * (z - t) * torch.exp(-s), -s.sum(-1)
'''),
    dict(task="task1", name="conditioner sees all of x", says="only the kept coordinates", code=_LAYER + '''
    def forward(self, x):
        s, t = self.scale_and_shift(x)
        free = 1 - self.mask
        return x * self.mask + free * (x * torch.exp(s) + t), (free * s).sum(-1)

    def inverse(self, z):
        s, t = self.scale_and_shift(z)
        free = 1 - self.mask
        return z * self.mask + free * (z - t) * torch.exp(-s), -(free * s).sum(-1)
'''),
    dict(task="task1", name="inverse log-det equal to the forward one", says="minus the forward one", code=_LAYER + '''
    def forward(self, x):
        s, t = self.scale_and_shift(x * self.mask)
        free = 1 - self.mask
        return x * self.mask + free * (x * torch.exp(s) + t), (free * s).sum(-1)

    def inverse(self, z):
        s, t = self.scale_and_shift(z * self.mask)
        free = 1 - self.mask
        return z * self.mask + free * (z - t) * torch.exp(-s), (free * s).sum(-1)
'''),
    dict(task="task1", name="inverse undoes shift and scale in the wrong order", says="round trip", code=_LAYER + '''
    def forward(self, x):
        s, t = self.scale_and_shift(x * self.mask)
        free = 1 - self.mask
        return x * self.mask + free * (x * torch.exp(s) + t), (free * s).sum(-1)

    def inverse(self, z):
        s, t = self.scale_and_shift(z * self.mask)
        free = 1 - self.mask
        return z * self.mask + free * (z * torch.exp(-s) - t), -(free * s).sum(-1)
'''),
    dict(task="task1", name="forward log-det with the wrong sign", says="wrong sign", code=_LAYER + '''
    def forward(self, x):
        s, t = self.scale_and_shift(x * self.mask)
        free = 1 - self.mask
        return x * self.mask + free * (x * torch.exp(s) + t), -(free * s).sum(-1)

    def inverse(self, z):
        s, t = self.scale_and_shift(z * self.mask)
        free = 1 - self.mask
        return z * self.mask + free * (z - t) * torch.exp(-s), (free * s).sum(-1)
'''),
    # task 2: MADE masks
    dict(task="task2", name="random hidden degrees", says="should cycle", code='''
def made_masks(dim, hidden):
    g = torch.Generator().manual_seed(3)
    degrees = [torch.arange(1, dim + 1)]
    for h in hidden:
        degrees.append(torch.randint(1, dim, (h,), generator=g))
    masks = [(d_out[:, None] >= d_in[None, :]).float() for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    masks.append((torch.arange(1, dim + 1)[:, None] > degrees[-1][None, :]).float())
    return masks
'''),
    dict(task="task2", name="output mask with >= (an output sees its own input)", says="depends on itself", code='''
def made_masks(dim, hidden):
    degrees = [torch.arange(1, dim + 1)]
    for h in hidden:
        degrees.append(torch.arange(h) % (dim - 1) + 1)
    masks = [(d_out[:, None] >= d_in[None, :]).float() for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    masks.append((torch.arange(1, dim + 1)[:, None] >= degrees[-1][None, :]).float())
    return masks
'''),
    dict(task="task2", name="hidden masks with > (off by one)", says="use >=, not >", code='''
def made_masks(dim, hidden):
    degrees = [torch.arange(1, dim + 1)]
    for h in hidden:
        degrees.append(torch.arange(h) % (dim - 1) + 1)
    masks = [(d_out[:, None] > d_in[None, :]).float() for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    masks.append((torch.arange(1, dim + 1)[:, None] > degrees[-1][None, :]).float())
    return masks
'''),
    dict(task="task2", name="masks in [in, out] layout", says="should have shape", code='''
def made_masks(dim, hidden):
    degrees = [torch.arange(1, dim + 1)]
    for h in hidden:
        degrees.append(torch.arange(h) % (dim - 1) + 1)
    masks = [(d_out[None, :] >= d_in[:, None]).float() for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    masks.append((torch.arange(1, dim + 1)[None, :] > degrees[-1][:, None]).float())
    return masks
'''),
    dict(task="task2", name="hidden degrees cycle from 0", says="should cycle", code='''
def made_masks(dim, hidden):
    degrees = [torch.arange(1, dim + 1)]
    for h in hidden:
        degrees.append(torch.arange(h) % dim)
    masks = [(d_out[:, None] >= d_in[None, :]).float() for d_in, d_out in zip(degrees[:-1], degrees[1:])]
    masks.append((torch.arange(1, dim + 1)[:, None] > degrees[-1][None, :]).float())
    return masks
'''),
    # task 3: MAF
    dict(task="task3", name="MAF log-det with the wrong sign", says="wrong sign", code='''
def maf_forward(made, x):
    mu, alpha = made(x)
    return (x - mu) * torch.exp(-alpha), alpha.sum(-1)
'''),
    dict(task="task3", name="MAF forward multiplies by exp(alpha)", says="divides", code='''
def maf_forward(made, x):
    mu, alpha = made(x)
    return (x - mu) * torch.exp(alpha), alpha.sum(-1)
'''),
    dict(task="task3", name="density in D passes", says="call made once", code='''
def maf_forward(made, x):
    z = torch.zeros_like(x)
    for i in range(x.shape[1]):
        mu, alpha = made(x)
        z[:, i] = (x[:, i] - mu[:, i]) * torch.exp(-alpha[:, i])
    return z, -alpha.sum(-1)
'''),
    dict(task="task3", name="sampling in one pass (uses the zeros, not the partial x)", says="round trip", code='''
def maf_inverse(made, z):
    mu, alpha = made(torch.zeros_like(z))
    return z * torch.exp(alpha) + mu
'''),
    # task 4: coupling flow on moons
    dict(task="task4", name="a flow without coupling layers", says="coupling layers", code='''
def train_coupling_flow(x_train):
    model = Flow([standardize(x_train)])
    return model
'''),
    dict(task="task4", name="returns the coupling flow untrained", says="KL gap should be below", code='''
def train_coupling_flow(x_train):
    return Flow([standardize(x_train), *realnvp(2, n_layers=4, hidden=(32, 32)).layers])
'''),
    dict(task="task4", name="returns the true density wrapped in a module", says="true moons density", code='''
class _Cheat(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layer = AffineCouplingLayer(torch.tensor([1.0, 0.0]))
        self.target = toy("moons")

    def log_prob(self, x):
        return self.target.log_prob(x)


def train_coupling_flow(x_train):
    return _Cheat()
'''),
    dict(task="task4", name="too few steps", says="KL gap should be below", code='''
def train_coupling_flow(x_train):
    model = Flow([standardize(x_train), *realnvp(2, n_layers=4, hidden=(32, 32)).layers])
    fit(lambda: -model.log_prob(x_train[:512]).mean(), model, steps=20, lr=1e-2, progress=False)
    return model
'''),
]
