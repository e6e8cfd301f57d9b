#!/usr/bin/env python3
"""PyTorch's training throughput on dlcli's reference models, for comparison with
`cargo run --release -p graph --example train_bench [-- --model M]` on the same machine.

cnn: Conv 1->32 3x3, ReLU, MaxPool 2, Conv 32->64 3x3, ReLU, MaxPool 2, Flatten,
Linear 1600->128, ReLU, Linear 128->10. lstm, gru: each image row one step, nn.LSTM / nn.GRU
28->128 (batch_first), the last step to Linear 128->10. vit: configs/vit-mnist.toml. These on
MNIST-shaped random input at batch 64. char-lstm, gpt-char: configs/char-lstm.toml and
gpt-char.toml on random windows of 128 ids of a 78-character vocabulary, batch 32. Adam 1e-3.
Prints samples/s (windows/s, and characters/s, for the language models; median of 3 runs of
--steps steps after one warm-up step) as text and one JSON line.

    python3 scripts/torch_train_bench.py [--model M] [--threads 2] [--steps 20] [--device cpu|cuda]
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn


def reference_cnn():
    return nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10),
    )


class RowClassifier(nn.Module):
    def __init__(self, cell):
        super().__init__()
        self.rnn = cell(28, 128, batch_first=True)
        self.fc = nn.Linear(128, 10)

    def forward(self, x):
        out, _ = self.rnn(x.reshape(x.shape[0], 28, 28))
        return self.fc(out[:, -1])


def encoder(width, heads, feedforward, layers):
    layer = nn.TransformerEncoderLayer(width, heads, feedforward, 0.0, "gelu", batch_first=True, norm_first=True)
    return nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)


class ViT(nn.Module):
    def __init__(self):
        super().__init__()
        self.patch = nn.Conv2d(1, 64, 4, 4)
        self.cls = nn.Parameter(torch.zeros(1, 1, 64))
        self.pos = nn.Parameter(torch.zeros(1, 50, 64))
        self.encoder = encoder(64, 4, 128, 2)
        self.norm = nn.LayerNorm(64)
        self.head = nn.Linear(64, 10)

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2)
        h = torch.cat([self.cls.expand(x.shape[0], -1, -1), tokens], 1) + self.pos
        return self.head(self.norm(self.encoder(h))[:, 0])


class CharLSTM(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 64)
        self.lstm = nn.LSTM(64, 256, 2, batch_first=True)
        self.head = nn.Linear(256, VOCAB)

    def forward(self, x):
        return self.head(self.lstm(self.embed(x))[0])


class CharGPT(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, 128)
        self.pos = nn.Parameter(torch.zeros(1, CONTEXT, 128))
        self.blocks = encoder(128, 4, 512, 4)
        self.norm = nn.LayerNorm(128)
        self.head = nn.Linear(128, VOCAB)
        self.head.weight = self.embed.weight
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(CONTEXT))

    def forward(self, x):
        h = self.blocks(self.embed(x) + self.pos, mask=self.mask, is_causal=True)
        return self.head(self.norm(h))


CONTEXT, VOCAB = 128, 78
MODELS = {"cnn": reference_cnn, "lstm": lambda: RowClassifier(nn.LSTM), "gru": lambda: RowClassifier(nn.GRU),
          "vit": ViT, "char-lstm": CharLSTM, "gpt-char": CharGPT}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=sorted(MODELS), default="cnn")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = MODELS[args.model]().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    text = args.model in ("char-lstm", "gpt-char")
    batch = 32 if text else 64
    if text:
        xs = torch.randint(0, VOCAB, (args.steps, batch, CONTEXT), device=device)
        ys = torch.randint(0, VOCAB, (args.steps, batch * CONTEXT), device=device)
    else:
        xs = torch.rand(args.steps, batch, 1, 28, 28, device=device)
        ys = torch.randint(0, 10, (args.steps, batch), device=device)

    def step(i):
        optimizer.zero_grad(set_to_none=True)
        logits = model(xs[i])
        loss = loss_fn(logits.flatten(0, -2) if text else logits, ys[i])
        loss.backward()
        optimizer.step()
        return loss

    start = time.perf_counter()
    step(0).item()
    first = time.perf_counter() - start
    rates = []
    for _ in range(3):
        t = time.perf_counter()
        for i in range(args.steps):
            loss = step(i)
        loss.item()  # waits for the device
        rates.append(args.steps * batch / (time.perf_counter() - t))
    rate = statistics.median(rates)
    name = f"torch {torch.__version__} {args.device} threads={args.threads}"
    characters = f" ({rate * CONTEXT:.0f} characters/s)" if text else ""
    print(f"{name}: {rate:.0f} samples/s{characters} (runs: {[round(r) for r in rates]}), first step {first:.2f} s")
    print(json.dumps({"bench": f"train_reference_{args.model}", "executor": name, "batch": batch,
                      "samples_per_s": round(rate, 1), "first_step_s": round(first, 3)}))


if __name__ == "__main__":
    main()
