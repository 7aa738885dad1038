"""Plausible wrong answers to homework 05. tests/test_homework.py puts each `code` in place of its task's
solution, runs the task's VISIBLE check, and asserts it fails with a CheckFailed whose message contains `says`."""
MISTAKES = [
    # --- task 1: JS and the GAN value ---
    dict(task="task1", name="JS with log base 2 (bits)", says="bits", code='''
def js_divergence(p, q):
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    kl = lambda a: torch.where(a > 0, a * torch.log2(a / m), torch.zeros_like(a)).sum()
    return 0.5 * kl(p) + 0.5 * kl(q)
'''),
    dict(task="task1", name="the square root of JS, as scipy's jensenshannon returns", says="square root", code='''
def js_divergence(p, q):
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    kl = lambda a: torch.where(a > 0, a * (a / m).log(), torch.zeros_like(a)).sum()
    return (0.5 * kl(p) + 0.5 * kl(q)).sqrt()
'''),
    dict(task="task1", name="KL(p||m) + KL(q||m) without the halves", says="twice JS", code='''
def js_divergence(p, q):
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    kl = lambda a: torch.where(a > 0, a * (a / m).log(), torch.zeros_like(a)).sum()
    return kl(p) + kl(q)
'''),
    dict(task="task1", name="0 log 0 computed as NaN", says="NaN", code='''
def js_divergence(p, q):
    p, q = p.double(), q.double()
    m = 0.5 * (p + q)
    return 0.5 * (p * (p / m).log()).sum() + 0.5 * (q * (q / m).log()).sum()
'''),
    dict(task="task1", name="the value as JS - log 4", says="2 JS - log 4", code='''
def gan_value(p, q):
    return js_divergence(p, q) - math.log(4)
'''),
    # --- task 2: gradient penalty ---
    dict(task="task2", name="one-sided penalty", says="one-sided", code='''
def gradient_penalty(critic, real, fake, generator=None):
    t = torch.rand(len(real), 1, generator=generator, dtype=real.dtype)
    x_hat = (t * real.detach() + (1 - t) * fake.detach()).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.norm(dim=1) - 1).clamp_min(0).pow(2).mean()
'''),
    dict(task="task2", name="lambda included", says="without the weight", code='''
def gradient_penalty(critic, real, fake, generator=None):
    t = torch.rand(len(real), 1, generator=generator, dtype=real.dtype)
    x_hat = (t * real.detach() + (1 - t) * fake.detach()).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return 10 * (grad.norm(dim=1) - 1).pow(2).mean()
'''),
    dict(task="task2", name="squared gradient norm", says="squared norm", code='''
def gradient_penalty(critic, real, fake, generator=None):
    t = torch.rand(len(real), 1, generator=generator, dtype=real.dtype)
    x_hat = (t * real.detach() + (1 - t) * fake.detach()).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.pow(2).sum(1) - 1).pow(2).mean()
'''),
    dict(task="task2", name="gradient of the mean, not the sum", says="divided by the batch size", code='''
def gradient_penalty(critic, real, fake, generator=None):
    t = torch.rand(len(real), 1, generator=generator, dtype=real.dtype)
    x_hat = (t * real.detach() + (1 - t) * fake.detach()).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).mean(), x_hat, create_graph=True)
    return (grad.norm(dim=1) - 1).pow(2).mean()
'''),
    dict(task="task2", name="one norm over the whole batch", says="whole batch", code='''
def gradient_penalty(critic, real, fake, generator=None):
    t = torch.rand(len(real), 1, generator=generator, dtype=real.dtype)
    x_hat = (t * real.detach() + (1 - t) * fake.detach()).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.norm() - 1).pow(2)
'''),
    dict(task="task2", name="penalty at the real points", says="interpolates", code='''
def gradient_penalty(critic, real, fake, generator=None):
    x_hat = real.detach().clone().requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return (grad.norm(dim=1) - 1).pow(2).mean()
'''),
    dict(task="task2", name="no create_graph", says="create_graph", code='''
def gradient_penalty(critic, real, fake, generator=None):
    t = torch.rand(len(real), 1, generator=generator, dtype=real.dtype)
    x_hat = (t * real.detach() + (1 - t) * fake.detach()).requires_grad_(True)
    grad, = torch.autograd.grad(critic(x_hat).sum(), x_hat)
    return (grad.norm(dim=1) - 1).pow(2).mean()
'''),
    dict(task="task2", name="a wrapper of the library's gradient_penalty", says="write it yourself", code='''
from course_utils import gan as _gan

def gradient_penalty(critic, real, fake, generator=None):
    return _gan.gradient_penalty(critic, real, fake, generator)
'''),
    # --- task 3: Fréchet distance ---
    dict(task="task3", name="square root of FD (W2 instead of W2^2)", says="squared W2", code='''
def frechet_distance(mu1, sigma1, mu2, sigma2):
    mu1, mu2, s1, s2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    def sqrt_psd(s):
        w, v = torch.linalg.eigh(0.5 * (s + s.T))
        return (v * w.clamp_min(0).sqrt()) @ v.T
    r = sqrt_psd(s1)
    m = r @ s2 @ r
    tr_sqrt = torch.linalg.eigvalsh(0.5 * (m + m.T)).clamp_min(0).sqrt().sum()
    fd = ((mu1 - mu2) ** 2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_sqrt
    return math.sqrt(max(fd.item(), 0.0))
'''),
    dict(task="task3", name="the mean term forgotten", says="mean term", code='''
def frechet_distance(mu1, sigma1, mu2, sigma2):
    s1, s2 = sigma1.double(), sigma2.double()
    def sqrt_psd(s):
        w, v = torch.linalg.eigh(0.5 * (s + s.T))
        return (v * w.clamp_min(0).sqrt()) @ v.T
    r = sqrt_psd(s1)
    m = r @ s2 @ r
    return (torch.trace(s1) + torch.trace(s2) - 2 * torch.linalg.eigvalsh(0.5 * (m + m.T)).clamp_min(0).sqrt().sum()).item()
'''),
    dict(task="task3", name="the commuting formula S1^1/2 S2^1/2", says="commute", code='''
def frechet_distance(mu1, sigma1, mu2, sigma2):
    mu1, mu2, s1, s2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    def sqrt_psd(s):
        w, v = torch.linalg.eigh(s)
        return (v * w.clamp_min(0).sqrt()) @ v.T
    return (((mu1 - mu2) ** 2).sum() + torch.trace(s1 + s2 - 2 * sqrt_psd(s1) @ sqrt_psd(s2))).item()
'''),
    dict(task="task3", name="sqrtm of the non-symmetric product via eig (complex result)", says="complex", code='''
def frechet_distance(mu1, sigma1, mu2, sigma2):
    mu1, mu2, s1, s2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    w = torch.linalg.eigvals(s1 @ s2)
    return ((mu1 - mu2) ** 2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * w.sqrt().sum()
'''),
    dict(task="task3", name="square roots of eigenvalues without clamping at 0", says="clamp the eigenvalues", code='''
def frechet_distance(mu1, sigma1, mu2, sigma2):
    mu1, mu2, s1, s2 = (t.double() for t in (mu1, mu2, sigma1, sigma2))
    def sqrt_psd(s):
        w, v = torch.linalg.eigh(0.5 * (s + s.T))
        return (v * w.sqrt()) @ v.T
    r = sqrt_psd(s1)
    m = r @ s2 @ r
    tr_sqrt = torch.linalg.eigvalsh(0.5 * (m + m.T)).sqrt().sum()
    return (((mu1 - mu2) ** 2).sum() + torch.trace(s1) + torch.trace(s2) - 2 * tr_sqrt).item()
'''),
    dict(task="task3", name="the library's frechet_distance itself", says="write it yourself", code='''
from course_utils.metrics import frechet_distance
'''),
    # --- task 4: precision and recall ---
    dict(task="task4", name="precision and recall swapped", says="swapped", code='''
def precision_recall(real, fake, k=3):
    real, fake = real.double(), fake.double()
    radii = lambda x: torch.cdist(x, x).kthvalue(k + 1, dim=1).values
    inside = lambda p, c: (torch.cdist(p, c) <= radii(c)[None, :]).any(1).double().mean().item()
    return inside(real, fake), inside(fake, real)
'''),
    dict(task="task4", name="strict < at the boundary", says="<=", code='''
def precision_recall(real, fake, k=3):
    real, fake = real.double(), fake.double()
    radii = lambda x: torch.cdist(x, x).kthvalue(k + 1, dim=1).values
    inside = lambda p, c: (torch.cdist(p, c) < radii(c)[None, :]).any(1).double().mean().item()
    return inside(fake, real), inside(real, fake)
'''),
    dict(task="task4", name="the point itself counted as its nearest neighbour", says="itself", code='''
def precision_recall(real, fake, k=3):
    real, fake = real.double(), fake.double()
    radii = lambda x: torch.cdist(x, x).kthvalue(k, dim=1).values
    inside = lambda p, c: (torch.cdist(p, c) <= radii(c)[None, :]).any(1).double().mean().item()
    return inside(fake, real), inside(real, fake)
'''),
    dict(task="task4", name="the point left out by distance > 0, not by index", says="by its index", code='''
def precision_recall(real, fake, k=3):
    real, fake = real.double(), fake.double()
    def radii(x):
        d = torch.cdist(x, x)
        return torch.where(d > 0, d, torch.full_like(d, float("inf"))).kthvalue(k, dim=1).values
    inside = lambda p, c: (torch.cdist(p, c) <= radii(c)[None, :]).any(1).double().mean().item()
    return inside(fake, real), inside(real, fake)
'''),
    dict(task="task4", name="a wrapper of the library's precision_recall", says="write it yourself", code='''
def precision_recall(real, fake, k=3):
    import course_utils.metrics
    return course_utils.metrics.precision_recall(real, fake, k)
'''),
    # --- task 5: WGAN-GP (cheap stand-ins for failed trainings, and modules that are not the trained generator) ---
    dict(task="task5", name="an untrained generator", says="modes", code='''
def train_wgan_gp(steps=300, d_steps=5, seed=0):
    seed_everything(seed)
    return mlp_generator(2, 2, 64, 3)
'''),
    dict(task="task5", name="complete mode collapse", says="mode collapse", code='''
def train_wgan_gp(steps=300, d_steps=5, seed=0):
    seed_everything(seed)
    G = mlp_generator(2, 2, 64, 3)
    with torch.no_grad():                 # every latent lands next to one centre
        G[-1].weight.mul_(0.01)
        G[-1].bias.copy_(eight.centers[0].float())
    return G
'''),
    dict(task="task5", name="returns the critic instead of the generator", says="shape", code='''
def train_wgan_gp(steps=300, d_steps=5, seed=0):
    seed_everything(seed)
    return mlp_critic(2, 64, 3)
'''),
    dict(task="task5", name="a module that returns draws of the true data", says="mlp_generator(2, 2, 64, 3) builds", code='''
class _TrueSampler(torch.nn.Module):
    def forward(self, z):
        return eight.sample((len(z),)).float()

def train_wgan_gp(steps=300, d_steps=5, seed=0):
    return _TrueSampler()
'''),
    dict(task="task5", name="an mlp_generator whose forward draws the true data", says="not the outputs of the generator's own network",
         code='''
def train_wgan_gp(steps=300, d_steps=5, seed=0):
    G = mlp_generator(2, 2, 64, 3)
    G.forward = lambda z: eight.sample((len(z),)).float()
    return G
'''),
]
