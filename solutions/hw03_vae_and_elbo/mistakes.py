"""Plausible wrong answers to homework 03. tests/test_homework.py puts each `code` in place of its task's
solution, runs the task's VISIBLE check, and asserts it fails with a CheckFailed whose message contains `says`."""

MISTAKES = [
    # task 1: Gaussian KL
    dict(task="task1", name="the reverse KL(p || q)", says="reverse direction", code='''
def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    return 0.5 * (torch.exp(logvar_p - logvar_q) + (mu_q - mu_p) ** 2 * torch.exp(-logvar_q) - 1 + logvar_q - logvar_p).sum(-1)
'''),
    dict(task="task1", name="missing the factor 1/2", says="factor 1/2", code='''
def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    return (torch.exp(logvar_q - logvar_p) + (mu_q - mu_p) ** 2 * torch.exp(-logvar_p) - 1 + logvar_p - logvar_q).sum(-1)
'''),
    dict(task="task1", name="log-variance read as log standard deviation", says="log standard deviations", code='''
def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    var_q, var_p = torch.exp(2 * logvar_q), torch.exp(2 * logvar_p)
    return 0.5 * (var_q / var_p + (mu_q - mu_p) ** 2 / var_p - 1 + 2 * logvar_p - 2 * logvar_q).sum(-1)
'''),
    dict(task="task1", name="missing the -1", says="-1 per dimension", code='''
def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    return 0.5 * (torch.exp(logvar_q - logvar_p) + (mu_q - mu_p) ** 2 * torch.exp(-logvar_p) + logvar_p - logvar_q).sum(-1)
'''),
    dict(task="task1", name="not summed over the last dimension", says="should have shape", code='''
def gaussian_kl(mu_q, logvar_q, mu_p, logvar_p):
    return 0.5 * (torch.exp(logvar_q - logvar_p) + (mu_q - mu_p) ** 2 * torch.exp(-logvar_p) - 1 + logvar_p - logvar_q)
'''),
    # task 2: reparameterised ELBO
    dict(task="task2", name="z = mu (no noise)", says="same value on every call", code='''
def reparameterized_elbo(x, encoder, decoder):
    mu, logvar = encoder(x)
    return decoder.log_prob(x, decoder(mu)) - gaussian_kl(mu, logvar, torch.zeros_like(mu), torch.zeros_like(logvar))
'''),
    dict(task="task2", name="standard deviation exp(logvar)", says="exp(logvar) is the variance", code='''
def reparameterized_elbo(x, encoder, decoder):
    mu, logvar = encoder(x)
    z = mu + torch.exp(logvar) * torch.randn_like(mu)
    return decoder.log_prob(x, decoder(z)) - gaussian_kl(mu, logvar, torch.zeros_like(mu), torch.zeros_like(logvar))
'''),
    dict(task="task2", name="KL added", says="KL term is added", code='''
def reparameterized_elbo(x, encoder, decoder):
    mu, logvar = encoder(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    return decoder.log_prob(x, decoder(z)) + gaussian_kl(mu, logvar, torch.zeros_like(mu), torch.zeros_like(logvar))
'''),
    dict(task="task2", name="KL forgotten", says="KL term is missing", code='''
def reparameterized_elbo(x, encoder, decoder):
    mu, logvar = encoder(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    return decoder.log_prob(x, decoder(z))
'''),
    dict(task="task2", name="sample detached (no reparameterisation gradient)", says="reparameterise", code='''
def reparameterized_elbo(x, encoder, decoder):
    mu, logvar = encoder(x)
    z = (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach()
    return decoder.log_prob(x, decoder(z)) - gaussian_kl(mu, logvar, torch.zeros_like(mu), torch.zeros_like(logvar)).detach()
'''),
    dict(task="task2", name="sample detached, KL kept (a gradient reaches mu, through the KL only)",
         says="should average", code='''
def reparameterized_elbo(x, encoder, decoder):
    mu, logvar = encoder(x)
    z = (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).detach()
    return decoder.log_prob(x, decoder(z)) - gaussian_kl(mu, logvar, torch.zeros_like(mu), torch.zeros_like(logvar))
'''),
    # task 3: IWAE
    dict(task="task3", name="average of the log-weights (the ELBO again)", says="grow with K", code='''
def iwae_bound(x, encoder, decoder, k):
    mu, logvar = encoder(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn((k, *mu.shape), dtype=mu.dtype)
    log_q = -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)
    log_prior = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
    return (decoder.log_prob(x, decoder(z)) + log_prior - log_q).mean(0)
'''),
    dict(task="task3", name="logsumexp without - log K", says="subtract log K", code='''
def iwae_bound(x, encoder, decoder, k):
    mu, logvar = encoder(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn((k, *mu.shape), dtype=mu.dtype)
    log_q = -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)
    log_prior = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
    return torch.logsumexp(decoder.log_prob(x, decoder(z)) + log_prior - log_q, 0)
'''),
    dict(task="task3", name="log q(z|x) left out of the weight", says="log q(z|x) both in the log-weight", code='''
def iwae_bound(x, encoder, decoder, k):
    mu, logvar = encoder(x)
    z = mu + torch.exp(0.5 * logvar) * torch.randn((k, *mu.shape), dtype=mu.dtype)
    log_prior = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
    return torch.logsumexp(decoder.log_prob(x, decoder(z)) + log_prior, 0) - math.log(k)
'''),
    dict(task="task3", name="one sample repeated K times", says="grow with K", code='''
def iwae_bound(x, encoder, decoder, k):
    mu, logvar = encoder(x)
    z = (mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)).expand(k, *mu.shape)
    log_q = -0.5 * (((z - mu) ** 2) * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(-1)
    log_prior = -0.5 * (z**2 + math.log(2 * math.pi)).sum(-1)
    return torch.logsumexp(decoder.log_prob(x, decoder(z)) + log_prior - log_q, 0) - math.log(k)
'''),
    # task 4: a VAE on the digits
    dict(task="task4", name="returns the VAE untrained", says="test ELBO should be above", code='''
def train_vae(x_train):
    return VAE(GaussianEncoder(64, 8, (128, 128)), BernoulliDecoder(8, (1, 8, 8), (128, 128)))
'''),
    dict(task="task4", name="minimises the ELBO (wrong sign of the loss)", says="test ELBO should be above", code='''
def train_vae(x_train):
    vae = VAE(GaussianEncoder(64, 8, (128, 128)), BernoulliDecoder(8, (1, 8, 8), (128, 128)))
    fit(lambda: vae.elbo(x_train[torch.randint(len(x_train), (128,))]).mean(), vae, steps=50, lr=2e-3, progress=False)
    return vae
'''),
    dict(task="task4", name="far too few steps", says="test ELBO should be above", code='''
def train_vae(x_train):
    vae = VAE(GaussianEncoder(64, 8, (128, 128)), BernoulliDecoder(8, (1, 8, 8), (128, 128)))
    fit(lambda: -vae.elbo(x_train[torch.randint(len(x_train), (128,))]).mean(), vae, steps=100, lr=2e-3, progress=False)
    return vae
'''),
]
