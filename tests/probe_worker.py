"""A training process for the lifecycle tests: trains a small MLP with probes, slowly, so a test can
read the run while it is written or kill the process. Usage: probe_worker.py RUN_DIR STEPS SLEEP"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import probes  # noqa: E402

run_dir, steps, pause = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
torch.manual_seed(0)
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 3))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
rec = probes.attach(model, opt, run_dir=run_dir, every=5, flush_secs=0.2, flush_steps=10)
x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
for step in range(steps):
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    rec.record_step(loss, logits=logits, targets=y)
    print(step + 1, flush=True)
    time.sleep(pause)
rec.close()
