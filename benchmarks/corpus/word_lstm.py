"""pytorch/examples' word_language_model, shrunk: a 2-layer LSTM language model over a 400-word
vocabulary, the corpus batchified into columns and walked in order with truncated BPTT (so the
train loss is not stationary), plain SGD at lr 20 with gradient clipping 0.25, the learning rate
divided by 4 when the validation loss stops improving, evaluated after every epoch.

Variants: healthy; no_clip (the same at lr 20 without clipping: gradient spikes throw it back);
overfit (a 2,000-word corpus, a wider LSTM without dropout trained with Adam for 60 epochs and no
annealing, as many user variants of the example do: the validation loss climbs).
"""

import math

import torch
import torch.nn as nn

import probes
from common import parse, word_text

VARIANTS = {"healthy": (40000, 0.2, 0.25, 5), "no_clip": (40000, 0.2, 0.0, 5), "overfit": (2000, 0.0, 0.25, 60)}
a = parse(VARIANTS)
n_train, dropout, clip, epochs = VARIANTS[a.variant]
bptt, batch_size, eval_batch = 20, 20, 10

words, ntokens, _ = word_text(n_train + 6000)
train = torch.tensor(words[:n_train])
val = torch.tensor(words[n_train:])


def batchify(data, bsz):
    nbatch = data.size(0) // bsz
    return data[: nbatch * bsz].view(bsz, -1).t().contiguous()


train_data, val_data = batchify(train, batch_size), batchify(val, eval_batch)


class RNNModel(nn.Module):
    def __init__(self, ninp=64, nhid=64, nlayers=2):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.encoder = nn.Embedding(ntokens, ninp)
        self.rnn = nn.LSTM(ninp, nhid, nlayers, dropout=dropout)
        self.decoder = nn.Linear(nhid, ntokens)
        self.nlayers, self.nhid = nlayers, nhid
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)
        nn.init.zeros_(self.decoder.bias)
        nn.init.uniform_(self.decoder.weight, -0.1, 0.1)

    def forward(self, input, hidden):
        emb = self.drop(self.encoder(input))
        output, hidden = self.rnn(emb, hidden)
        return self.decoder(self.drop(output)).view(-1, ntokens), hidden

    def init_hidden(self, bsz):
        w = next(self.parameters())
        return (w.new_zeros(self.nlayers, bsz, self.nhid), w.new_zeros(self.nlayers, bsz, self.nhid))


def repackage_hidden(h):
    return tuple(v.detach() for v in h)


def get_batch(source, i):
    seq_len = min(bptt, len(source) - 1 - i)
    return source[i:i + seq_len], source[i + 1:i + 1 + seq_len].reshape(-1)


model = RNNModel(nhid=128) if a.variant == "overfit" else RNNModel()
criterion = nn.NLLLoss()
lr = 20.0
# The example updates p.data by hand; an SGD optimizer does the same and lets probes see the steps.
if a.variant == "overfit":
    lr = 3e-3
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
else:
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
rec = probes.attach(model, optimizer, run_dir=a.run_dir, every=10,
                    hparams={"lr": lr, "clip": clip, "dropout": dropout, "bptt": bptt, "batch_size": batch_size})


def evaluate(source):
    model.eval()
    total, hidden = 0.0, model.init_hidden(eval_batch)
    with torch.no_grad():
        for i in range(0, source.size(0) - 1, bptt):
            data, targets = get_batch(source, i)
            output, hidden = model(data, hidden)
            total += len(data) * criterion(torch.log_softmax(output, -1), targets).item()
    return total / (len(source) - 1)


best_val = None
for epoch in range(epochs):
    model.train()
    hidden = model.init_hidden(batch_size)
    for i in range(0, train_data.size(0) - 1, bptt):
        data, targets = get_batch(train_data, i)
        hidden = repackage_hidden(hidden)
        optimizer.zero_grad()
        output, hidden = model(data, hidden)
        loss = criterion(torch.log_softmax(output, -1), targets)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        rec.record_step(loss, logits=output, targets=targets)
    val_loss = evaluate(val_data)
    rec.record_eval(loss=val_loss, perplexity=math.exp(min(val_loss, 50)))
    if best_val is None or val_loss < best_val:
        best_val = val_loss
    elif a.variant != "overfit":
        lr /= 4.0
        for g in optimizer.param_groups:
            g["lr"] = lr
rec.close()
