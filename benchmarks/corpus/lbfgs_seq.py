"""pytorch/examples' time_sequence_prediction, shrunk: two LSTMCells and a Linear unrolled in a Python
loop over every time step of noisy sine waves (so each cell is called once per time step of a
forward pass), trained with LBFGS and a closure, MSE loss (a regression: no logits), the test
loss after every step.

Variants: healthy (LBFGS lr 0.8, as the example); lr_high (lr 50: the line-search-free steps
overshoot and the loss blows up).
"""

import numpy as np
import torch
import torch.nn as nn

import probes
from common import parse

VARIANTS = {"healthy": 0.8, "lr_high": 50.0}
a = parse(VARIANTS)
lr = VARIANTS[a.variant]
T, N, L = 20, 24, 40
rng = np.random.default_rng(2)
x = np.arange(L)[None, :] + rng.integers(-4 * T, 4 * T, N)[:, None]
data = torch.tensor(np.sin(x / T), dtype=torch.float64)  # the example trains in double
inp, target = data[3:, :-1], data[3:, 1:]
test_input, test_target = data[:3, :-1], data[:3, 1:]


class Sequence(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm1 = nn.LSTMCell(1, 32)
        self.lstm2 = nn.LSTMCell(32, 32)
        self.linear = nn.Linear(32, 1)

    def forward(self, input, future=0):
        outputs = []
        h_t = c_t = torch.zeros(input.size(0), 32, dtype=torch.double)
        h_t2 = c_t2 = torch.zeros(input.size(0), 32, dtype=torch.double)
        for input_t in input.split(1, dim=1):
            h_t, c_t = self.lstm1(input_t, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        for _ in range(future):
            h_t, c_t = self.lstm1(output, (h_t, c_t))
            h_t2, c_t2 = self.lstm2(h_t, (h_t2, c_t2))
            output = self.linear(h_t2)
            outputs += [output]
        return torch.cat(outputs, dim=1)


seq = Sequence().double()
criterion = nn.MSELoss()
optimizer = torch.optim.LBFGS(seq.parameters(), lr=lr)
rec = probes.attach(seq, optimizer, run_dir=a.run_dir, every=1, hparams={"lr": lr, "optimizer": "LBFGS"})
for i in range(12):
    def closure():
        optimizer.zero_grad()
        loss = criterion(seq(inp), target)
        loss.backward()
        return loss
    loss = optimizer.step(closure)
    rec.record_step(loss)
    with torch.no_grad():
        rec.record_eval(loss=criterion(seq(test_input), test_target))
rec.close()
