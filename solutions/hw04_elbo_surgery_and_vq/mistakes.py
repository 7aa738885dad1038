"""Plausible wrong answers to homework 04. tests/test_homework.py puts each `code` in place of its task's
solution, runs the task's VISIBLE check, and asserts it fails with a CheckFailed whose message contains `says`."""


def _surgery(agg="torch.logsumexp(comp, -1) - math.log(n)", own="comp[torch.arange(len(rows)), own[rows]]",
             std="(0.5 * logvar).exp()", avg="0.5 * (mu**2 + logvar.exp() - 1 - logvar).sum(-1).mean()"):
    return f'''
def surgery_terms(mu, logvar, samples_per_point=10, generator=None):
    mu, logvar = mu.double(), logvar.double()
    n, L = mu.shape
    avg_kl = {avg}
    z = mu + {std} * torch.randn(samples_per_point, n, L, generator=generator, dtype=torch.float64)
    z = z.reshape(-1, L)
    own = torch.arange(n).repeat(samples_per_point)
    log_q_own, log_q_agg = [], []
    for rows in torch.arange(len(z)).split(512):
        comp = -0.5 * (((z[rows][:, None, :] - mu) ** 2) / logvar.exp() + logvar + math.log(2 * math.pi)).sum(-1)
        log_q_own.append({own})
        log_q_agg.append({agg})
    log_q_own, log_q_agg = torch.cat(log_q_own), torch.cat(log_q_agg)
    log_prior = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
    return avg_kl.item(), (log_q_own - log_q_agg).mean().item(), (log_q_agg - log_prior).mean().item()
'''


def _mixture(body):
    return f'''
def mixture_log_prob(z, means, logvars, logits):
    diff = z.unsqueeze(-2) - means
{body}
'''


_VQ = '''
def vector_quantize(z_e, codebook):
    flat = z_e.reshape(-1, z_e.shape[-1])
    indices = torch.cdist(flat, codebook).{pick}(-1)
    e = codebook[indices].reshape(z_e.shape)
    codebook_loss = ((z_e{d1} - e) ** 2).sum(-1).mean()
    commitment_loss = ((z_e - e{d2}) ** 2).sum(-1).mean()
    return {zq}, indices.reshape(z_e.shape[:-1]), codebook_loss, commitment_loss
'''


def _vq(pick="argmin", d1=".detach()", d2=".detach()", zq="z_e + (e - z_e).detach()"):
    return _VQ.format(pick=pick, d1=d1, d2=d2, zq=zq)


def _fit(k=64, steps=1000, ignore_var=False):
    spread = "0 * " if ignore_var else ""
    return f'''
def fit_mixture_prior(mu, logvar):
    K, L = {k}, mu.shape[1]
    g = torch.Generator().manual_seed(0)
    means = torch.randn(K, L, generator=g).requires_grad_(True)
    logvars = torch.zeros(K, L, requires_grad=True)
    logits = torch.zeros(K, requires_grad=True)

    def loss():
        i = torch.randint(len(mu), (512,))
        z = mu[i] + {spread}(0.5 * logvar[i]).exp() * torch.randn(512, L)
        return -mixture_log_prob(z, means, logvars, logits).mean()

    if {steps}:
        fit(loss, [means, logvars, logits], steps={steps}, lr=5e-3, progress=False)
    return means.detach(), logvars.detach(), logits.detach()
'''


MISTAKES = [
    # task 1: ELBO surgery terms
    dict(task="task1", name="aggregate log q(z) without - log n (the identity still holds)", says="- log n",
         code=_surgery(agg="torch.logsumexp(comp, -1)")),
    dict(task="task1", name="aggregate q(z) = the point's own posterior", says="must mix all n posteriors",
         code=_surgery(agg="comp[torch.arange(len(rows)), own[rows]]")),
    dict(task="task1", name="avg KL with the wrong sign of log-variance", says="avg_kl should be",
         code=_surgery(avg="0.5 * (mu**2 + logvar.exp() - 1 + logvar).sum(-1).mean()")),
    dict(task="task1", name="samples with standard deviation exp(logvar)", says="should equal mutual_info + marginal_kl",
         code=_surgery(std="logvar.exp()")),
    # task 2: mixture log-density
    dict(task="task2", name="weights not normalised", says="log_softmax", code=_mixture('''
    log_comp = -0.5 * (diff**2 / logvars.exp() + logvars + math.log(2 * math.pi)).sum(-1)
    return torch.logsumexp(logits + log_comp, -1)''')),
    dict(task="task2", name="log of a sum of exps (underflows far away)", says="finite", code=_mixture('''
    log_comp = -0.5 * (diff**2 / logvars.exp() + logvars + math.log(2 * math.pi)).sum(-1)
    return torch.log((torch.softmax(logits, -1) * log_comp.exp()).sum(-1))''')),
    dict(task="task2", name="logvars read as log standard deviations", says="log standard deviations", code=_mixture('''
    log_comp = -0.5 * (diff**2 / (2 * logvars).exp() + 2 * logvars + math.log(2 * math.pi)).sum(-1)
    return torch.logsumexp(torch.log_softmax(logits, -1) + log_comp, -1)''')),
    dict(task="task2", name="log-weights averaged instead of mixed", says="is off", code=_mixture('''
    log_comp = -0.5 * (diff**2 / logvars.exp() + logvars + math.log(2 * math.pi)).sum(-1)
    return (torch.softmax(logits, -1) * log_comp).sum(-1)''')),
    # task 3: vector quantisation
    dict(task="task3", name="farthest code (argmax)", says="nearest codes", code=_vq(pick="argmax")),
    dict(task="task3", name="no straight-through estimator", says="z_e + (e - z_e).detach()", code=_vq(zq="e")),
    dict(task="task3", name="codebook loss not detached from z_e", says="no gradient to z_e", code=_vq(d1="")),
    dict(task="task3", name="commitment loss moves the codebook", says="no gradient to the codebook", code=_vq(d2="")),
    # task 4: mixture prior fitted to q(z)
    dict(task="task4", name="returns the initial mixture (no fitting)", says="raise the training ELBO", code=_fit(steps=0)),
    dict(task="task4", name="a single Gaussian (K = 1)", says="raise the training ELBO", code=_fit(k=1, steps=300)),
    dict(task="task4", name="far too few steps", says="raise the training ELBO", code=_fit(steps=20)),
]
