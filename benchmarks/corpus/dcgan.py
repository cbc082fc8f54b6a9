"""pytorch/examples' DCGAN, shrunk to 8x8 digits: a transposed-conv generator with batch norm and
ReLU (tanh output), a strided-conv discriminator with LeakyReLU (sigmoid output), BCELoss, Adam at
2e-4 with beta1 0.5, real label 1 / fake label 0, the generator trained on D's verdict. Recorded as
a user would: probes on the generator, Loss_G as the loss, Loss_D, D(x) and D(G(z)) as extra
scalars (the numbers the example prints).

Variants: healthy; unbalanced (the discriminator learns 5x faster: D wins most of the time and the
generator's loss climbs, a normal if lopsided GAN).
"""

import torch
import torch.nn as nn

import probes
from common import digits, parse

VARIANTS = {"healthy": 2e-4, "unbalanced": 1e-3}
a = parse(VARIANTS)
lr_d = VARIANTS[a.variant]
lr_g, nz, ngf, ndf, bs = 2e-4, 16, 16, 16, 64
xt, _, _, _ = digits(normalize=False)
xt = xt / 8.0 - 1.0  # pixels 0-16 to [-1, 1], the generator's tanh range


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(nz, ngf * 2, 4, 1, 0, bias=False), nn.BatchNorm2d(ngf * 2), nn.ReLU(True),
            nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(ngf), nn.ReLU(True),
            nn.ConvTranspose2d(ngf, 1, 3, 1, 1, bias=False), nn.Tanh())

    def forward(self, z):
        return self.main(z)


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(1, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf, ndf * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(ndf * 2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(ndf * 2, 1, 2, 1, 0, bias=False), nn.Sigmoid())

    def forward(self, x):
        return self.main(x).view(-1)


def weights_init(m):
    if "Conv" in type(m).__name__:
        nn.init.normal_(m.weight, 0.0, 0.02)
    elif "BatchNorm" in type(m).__name__:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


netG, netD = Generator(), Discriminator()
netG.apply(weights_init)
netD.apply(weights_init)
criterion = nn.BCELoss()
optimizerD = torch.optim.Adam(netD.parameters(), lr=lr_d, betas=(0.5, 0.999))
optimizerG = torch.optim.Adam(netG.parameters(), lr=lr_g, betas=(0.5, 0.999))
rec = probes.attach(netG, optimizerG, run_dir=a.run_dir, every=5, hparams={"lr": lr_g, "lr_D": lr_d, "batch_size": bs})
for epoch in range(12):
    perm = torch.randperm(len(xt))
    for i in range(0, len(xt) - bs + 1, bs):
        real = xt[perm[i:i + bs]]
        netD.zero_grad()
        output = netD(real)
        errD_real = criterion(output, torch.ones(bs))
        errD_real.backward()
        D_x = output.mean().item()
        fake = netG(torch.randn(bs, nz, 1, 1))
        output = netD(fake.detach())
        errD_fake = criterion(output, torch.zeros(bs))
        errD_fake.backward()
        errD = errD_real + errD_fake
        optimizerD.step()
        netG.zero_grad()
        output = netD(fake)
        errG = criterion(output, torch.ones(bs))
        errG.backward()
        optimizerG.step()
        rec.record_step(errG, Loss_D=errD, D_x=D_x, D_G_z=output.mean().item())
rec.close()
