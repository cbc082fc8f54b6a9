"""A CIFAR-style ResNet loop (torchvision-like BasicBlocks with batch norm, a strided block with a
1x1 downsample, global average pooling, fc) on 8x8 digits: random-shift augmentation, SGD with
momentum 0.9 and weight decay 5e-4, cosine schedule, the test set evaluated every epoch.

Variants: healthy (lr 0.05); healthy_high_lr (lr 0.2: a high but working step size whose batch loss
is noisy, which must not read as a fault); lr_low (lr 1e-4).
"""

import torch
import torch.nn as nn
import torch.nn.functional as F

import probes
from common import digits, parse

VARIANTS = {"healthy": 0.05, "healthy_high_lr": 0.2, "lr_low": 1e-4}
a = parse(VARIANTS)
lr = VARIANTS[a.variant]
xt, yt, xv, yv = digits()


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = nn.Sequential(BasicBlock(16, 16), BasicBlock(16, 16))
        self.layer2 = nn.Sequential(BasicBlock(16, 32, 2), BasicBlock(32, 32))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(32, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def augment(x):
    padded = F.pad(x, (1, 1, 1, 1))
    i, j = torch.randint(0, 3, (2,))
    return padded[:, :, i:i + 8, j:j + 8]


model = ResNet()
epochs, bs = 8, 64
optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
criterion = nn.CrossEntropyLoss()
rec = probes.attach(model, optimizer, run_dir=a.run_dir, every=5, hparams={"lr": lr, "batch_size": bs, "epochs": epochs})
for epoch in range(epochs):
    model.train()
    perm = torch.randperm(len(xt))
    for i in range(0, len(xt), bs):
        idx = perm[i:i + bs]
        inputs, targets = augment(xt[idx]), yt[idx]
        optimizer.zero_grad()
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        loss.backward()
        optimizer.step()
        rec.record_step(loss, logits=outputs, targets=targets)
    scheduler.step()
    model.eval()
    with torch.no_grad():
        out = model(xv)
        rec.record_eval(loss=criterion(out, yv), logits=out, targets=yv)
rec.close()
