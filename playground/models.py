"""Model families of the playground (MLP, small CNN, LSTM/GRU classifier) and their initialisations.

Layers get short readable names (fc1, bn1, relu1, ..., out) because those names become the
probes' tags (act/relu1/frac_dead) that the dashboard and the advice show to the user.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from .config import Config
from .data import Workload


def make_activation(name: str, width: int) -> nn.Module:
    """A fresh activation module; PReLU learns one slope per unit."""
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU(0.01)
    if name == "prelu":
        return nn.PReLU(width)
    if name == "elu":
        return nn.ELU()
    if name == "gelu":
        return nn.GELU()
    if name == "tanh":
        return nn.Tanh()
    if name == "sigmoid":
        return nn.Sigmoid()
    raise ValueError(f"unknown activation {name!r}")


def _mlp(cfg: Config, n_in: int, n_classes: int) -> nn.Module:
    layers: list[tuple[str, nn.Module]] = []
    width_in = n_in
    for i in range(1, cfg.depth + 1):
        layers.append((f"fc{i}", nn.Linear(width_in, cfg.width)))
        if cfg.batch_norm:
            layers.append((f"bn{i}", nn.BatchNorm1d(cfg.width)))
        layers.append((f"{cfg.activation}{i}", make_activation(cfg.activation, cfg.width)))
        if cfg.dropout > 0:
            layers.append((f"drop{i}", nn.Dropout(cfg.dropout)))
        width_in = cfg.width
    layers.append(("out", nn.Linear(width_in, n_classes)))
    return nn.Sequential(OrderedDict(layers))


def _cnn(cfg: Config, in_shape: tuple, n_classes: int) -> nn.Module:
    channels, side = in_shape[0], in_shape[1]
    layers: list[tuple[str, nn.Module]] = []
    for i in range(1, cfg.depth + 1):
        out_ch = cfg.width * 2 ** (i - 1)
        layers.append((f"conv{i}", nn.Conv2d(channels, out_ch, 3, padding=1)))
        if cfg.batch_norm:
            layers.append((f"bn{i}", nn.BatchNorm2d(out_ch)))
        layers.append((f"{cfg.activation}{i}", make_activation(cfg.activation, out_ch)))
        layers.append((f"pool{i}", nn.MaxPool2d(2)))
        if cfg.dropout > 0:
            layers.append((f"drop{i}", nn.Dropout(cfg.dropout)))
        channels, side = out_ch, side // 2
    layers.append(("flatten", nn.Flatten()))
    layers.append(("out", nn.Linear(channels * side * side, n_classes)))
    return nn.Sequential(OrderedDict(layers))


class RecurrentClassifier(nn.Module):
    """Reads a sequence with a stacked LSTM or GRU and classifies from the last hidden state."""

    def __init__(self, cfg: Config, n_features: int, n_classes: int):
        super().__init__()
        cls = nn.LSTM if cfg.model == "lstm" else nn.GRU
        # Dropout only between stacked layers and before the head, never on the recurrent
        # connections (Zaremba et al. 2014, "Recurrent Neural Network Regularization").
        self.rnn = cls(n_features, cfg.width, num_layers=cfg.depth, batch_first=True,
                       dropout=cfg.dropout if cfg.depth > 1 else 0.0)
        self.drop = nn.Dropout(cfg.dropout) if cfg.dropout > 0 else nn.Identity()
        self.out = nn.Linear(cfg.width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq, _ = self.rnn(x)
        return self.out(self.drop(seq[:, -1]))


# -- initialisation ----------------------------------------------------------------------------
def _gain(activation: str) -> float:
    if activation in ("relu", "elu", "gelu", "prelu"):
        return nn.init.calculate_gain("relu")
    if activation == "leaky_relu":
        return nn.init.calculate_gain("leaky_relu", 0.01)
    return nn.init.calculate_gain(activation)  # tanh 5/3, sigmoid 1


def _init_matrix(w: torch.Tensor, scheme: str, gain: float) -> None:
    if scheme == "zeros":
        nn.init.zeros_(w)
    elif scheme == "small_normal":
        nn.init.normal_(w, 0.0, 0.01)  # CS231n's "small random numbers": vanishes in deep nets
    elif scheme == "large_normal":
        nn.init.normal_(w, 0.0, 1.0)  # unit variance regardless of fan-in: explodes or saturates
    elif scheme == "xavier_uniform":
        nn.init.xavier_uniform_(w)  # Glorot & Bengio 2010, gain 1 as in the paper
    elif scheme == "xavier_normal":
        nn.init.xavier_normal_(w)
    elif scheme == "kaiming":
        # He et al. 2015: std = gain / sqrt(fan_in), gain sqrt(2) for ReLU-like units.
        fan_in = w[0].numel()
        with torch.no_grad():
            w.normal_(0.0, gain / math.sqrt(fan_in))
    elif scheme == "orthogonal":
        nn.init.orthogonal_(w, gain=gain)  # Saxe et al. 2014
    else:
        raise ValueError(f"unknown init {scheme!r}")


def initialise(model: nn.Module, cfg: Config) -> None:
    """Apply cfg.init to every linear, conv and recurrent weight, then the LSTM forget-gate bias."""
    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)) and cfg.init != "default":
            # The output layer feeds a softmax, not an activation: it gets gain 1.
            gain = 1.0 if name.rpartition(".")[2] == "out" else _gain(cfg.activation)
            _init_matrix(module.weight, cfg.init, gain)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, (nn.LSTM, nn.GRU)):
            gates = 4 if isinstance(module, nn.LSTM) else 3
            for pname, p in module.named_parameters():
                if cfg.init != "default":
                    if pname.startswith("weight"):
                        # Each gate's block separately, so fans and orthogonality are per gate.
                        for block in p.data.chunk(gates, 0):
                            _init_matrix(block, cfg.init, 1.0)
                    else:
                        nn.init.zeros_(p)
                if isinstance(module, nn.LSTM) and pname.startswith("bias"):
                    # PyTorch's gate order is input, forget, cell, output; the two bias vectors
                    # are summed, so the forget value goes into bias_ih and bias_hh gets 0.
                    h = module.hidden_size
                    with torch.no_grad():
                        p[h:2 * h].fill_(cfg.forget_bias if pname.startswith("bias_ih") else 0.0)


def build(cfg: Config, data: Workload) -> nn.Module:
    """The model of `cfg` for `data`, initialised. Uses the global torch RNG (seed it first)."""
    if cfg.model == "mlp":
        model = _mlp(cfg, math.prod(data.input_shape), data.n_classes)
    elif cfg.model == "cnn":
        model = _cnn(cfg, data.input_shape, data.n_classes)
    elif cfg.model in ("lstm", "gru"):
        model = RecurrentClassifier(cfg, data.input_shape[-1], data.n_classes)
    else:
        raise ValueError(f"unknown model {cfg.model!r}")
    initialise(model, cfg)
    return model
