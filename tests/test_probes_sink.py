"""The flush buffer: what the recorder appends during training comes out of the writer thread as
the run store's arrays, host and device values of one tag merged in step order."""

import numpy as np
import torch

from probes.sink import FlushBuffer
from runstore import tags


def test_flush_buffer_turns_rows_histograms_and_tables_into_one_batch():
    buf = FlushBuffer()
    # Host rows and device values for the same tags, out of step order.
    buf.scalars(("a", "b"), 3, (3.0, 30.0))
    buf.device_scalars(("a", "b"), 2, torch.tensor([2.0, 20.0]))
    buf.scalars(("a", "b"), 1, [1.0, 10.0])
    # A row given as columns, stat by stat (tags.stat_tags): both norms, then both abs means.
    grad_tags = tags.stat_tags(tags.grad, ["p", "q"], ("norm", "abs_mean"))
    buf.scalars(grad_tags, 5, ([1.0, 2.0], [3.0, 4.0]))
    buf.device_scalars(grad_tags, 6, torch.tensor([5.0, 6.0, 7.0, 8.0]))
    # Histograms: two binned together on a device, one over a fixed range, one from the host.
    buf.device_hists(("h1", "h2"), 2, torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]),
                     torch.tensor([-1.0, 0.5]), torch.tensor([1.0, 2.5]))
    buf.device_hists(("conf",), 2, torch.tensor([7.0, 0.0, 1.0]), 0.0, 1.0)
    buf.hists(("h1",), 1, np.array([-2.0]), np.array([2.0]), np.array([[0, 9, 0]]))
    seen = []
    buf.device_table("t", 4, torch.arange(6.0).reshape(2, 3), lambda a: seen.append(a.shape) or {"sum": float(a.sum())})
    buf.table("t", 2, np.ones((2, 3)), lambda a: {"sum": float(a.sum())})
    buf.event(3, "warning", "something")
    buf.meta["n_classes"] = 3
    buf.start_copy()
    batch = buf.to_batch()

    steps, values = batch.scalars["a"]
    assert steps.tolist() == [1, 2, 3] and values.tolist() == [1.0, 2.0, 3.0]
    assert batch.scalars["b"][1].tolist() == [10.0, 20.0, 30.0]
    assert batch.scalars[tags.grad("q", "norm")][1].tolist() == [2.0, 6.0]
    assert batch.scalars[tags.grad("p", "abs_mean")][1].tolist() == [3.0, 7.0]
    steps, lo, hi, counts = batch.hists["h1"]
    assert steps.tolist() == [1, 2] and lo.tolist() == [-2.0, -1.0] and hi.tolist() == [2.0, 1.0]
    assert counts.tolist() == [[0, 9, 0], [1, 2, 3]]
    assert batch.hists["h2"][1].tolist() == [0.5] and batch.hists["h2"][3].tolist() == [[4, 5, 6]]
    _, lo, hi, counts = batch.hists["conf"]
    assert (lo.tolist(), hi.tolist(), counts.tolist()) == ([0.0], [1.0], [[7, 0, 1]])
    assert seen == [(2, 3)]  # a device table is decoded in its own shape
    assert sorted((s, d["sum"]) for _, s, d in batch.tables) == [(2, 6.0), (4, 15.0)]
    assert [(e[0], e[2], e[3]) for e in batch.events] == [(3, "warning", "something")]
    assert batch.meta == {"n_classes": 3}


def test_an_empty_flush_buffer_gives_an_empty_batch():
    buf = FlushBuffer()
    buf.start_copy()
    assert buf.to_batch().empty()
