#!/usr/bin/env python3
"""PyTorch's training throughput on dlcli's reference models, for comparison with
`cargo run --release -p graph --example train_bench [-- --model M]` on the same machine.

cnn: Conv 1->32 3x3, ReLU, MaxPool 2, Conv 32->64 3x3, ReLU, MaxPool 2, Flatten,
Linear 1600->128, ReLU, Linear 128->10. lstm, gru: each image row one step, nn.LSTM / nn.GRU
28->128 (batch_first), the last step to Linear 128->10. Adam 1e-3; batch 64; MNIST-shaped
random input. Prints samples/s (median of 3 runs of --steps steps after one warm-up step) as
text and one JSON line.

    python3 scripts/torch_train_bench.py [--model cnn|lstm|gru] [--threads 2] [--steps 20] [--device cpu|cuda]
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


MODELS = {"cnn": reference_cnn, "lstm": lambda: RowClassifier(nn.LSTM), "gru": lambda: RowClassifier(nn.GRU)}


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
    batch = 64
    xs = torch.rand(args.steps, batch, 1, 28, 28, device=device)
    ys = torch.randint(0, 10, (args.steps, batch), device=device)

    def step(i):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xs[i]), ys[i])
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
    print(f"{name}: {rate:.0f} samples/s (runs: {[round(r) for r in rates]}), first step {first:.2f} s")
    print(json.dumps({"bench": f"train_reference_{args.model}", "executor": name, "batch": batch,
                      "samples_per_s": round(rate, 1), "first_step_s": round(first, 3)}))


if __name__ == "__main__":
    main()
