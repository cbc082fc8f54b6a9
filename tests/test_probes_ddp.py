"""DistributedDataParallel with the gloo backend, 2 processes on CPU."""

import os
import socket
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

import probes
import runstore
from runstore import tags


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, world, port, run_dir, all_ranks, out):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        rec = probes.attach(model, opt, run_dir=run_dir, every=1, all_ranks=all_ranks)
        torch.manual_seed(rank)
        for _ in range(3):
            loss = F.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 2, (8,)))
            opt.zero_grad(); loss.backward(); opt.step()
            rec.record_step(loss)
        rec.close()
        out[rank] = type(rec).__name__
    finally:
        dist.destroy_process_group()


def _run(tmp_path, all_ranks):
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(2, _free_port(), str(tmp_path / "ddp"), all_ranks, out), nprocs=2, join=True)
    return dict(out)


def test_ddp_rank_zero_records_and_other_ranks_pay_nothing(tmp_path):
    kinds = _run(tmp_path, all_ranks=False)
    assert kinds == {0: "Recorder", 1: "NullRecorder"}
    run = runstore.load_run(tmp_path / "ddp")
    assert run.meta["rank"] == 0 and run.meta["world_size"] == 2
    # DDP's "module." prefix is stripped, so tags match the unwrapped model's.
    assert len(run.series(tags.grad("0.weight", "norm"))) == 3
    assert len(run.series(tags.act("1", "frac_dead"))) == 3
    assert not (tmp_path / "ddp" / "rank1").exists()


def test_ddp_all_ranks_option_records_each_rank(tmp_path):
    _run(tmp_path, all_ranks=True)
    r0, r1 = (runstore.load_run(tmp_path / "ddp" / f"rank{r}") for r in (0, 1))
    assert r0.meta["rank"] == 0 and r1.meta["rank"] == 1
    # gradients are all-reduced, so both ranks see the same gradient; losses differ (different data)
    assert r0.series(tags.grad("2.weight", "norm")).tolist() == r1.series(tags.grad("2.weight", "norm")).tolist()
    assert r0.series("train/loss").tolist() != r1.series("train/loss").tolist()
