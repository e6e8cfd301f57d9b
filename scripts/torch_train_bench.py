#!/usr/bin/env python3
"""PyTorch's training throughput on dlcli's reference models, for comparison with
`cargo run --release -p graph --example train_bench [-- --model M]` on the same machine.

cnn: Conv 1->32 3x3, ReLU, MaxPool 2, Conv 32->64 3x3, ReLU, MaxPool 2, Flatten,
Linear 1600->128, ReLU, Linear 128->10. lstm, gru: each image row one step, nn.LSTM / nn.GRU
28->128 (batch_first), the last step to Linear 128->10. vit: configs/vit-mnist.toml. These on
MNIST-shaped random input at batch 64. char-lstm, gpt-char: configs/char-lstm.toml and
gpt-char.toml on random windows of 128 ids of a 78-character vocabulary, batch 32. Adam 1e-3.
Prints samples/s (windows/s, and characters/s, for the language models; median of 3 runs of
--steps steps after one warm-up step), the time from building the model to the end of its
first step, evaluation samples/s at --eval-batch (no_grad, eval mode; median of 3 passes over
--eval-batches batches) and the peak RSS with and without what `import torch` took, as text
and one JSON line: what `dlcli bench` measures (scripts/bench_all.sh runs both).

    python3 scripts/torch_train_bench.py [--model M] [--threads 2] [--steps 20] [--device cpu|cuda]
        [--lr 1e-3] [--clip NORM] [--eval-batch 1000] [--eval-batches 5]
"""
import argparse
import json
import resource
import statistics
import time


def rss_bytes():
    """The process's resident memory now (VmRSS)."""
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


BEFORE_IMPORT = rss_bytes()
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

IMPORT_RSS = rss_bytes() - BEFORE_IMPORT


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
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--clip", type=float, default=None, help="clip the gradients' global norm to this")
    parser.add_argument("--eval-batch", type=int, default=1000)
    parser.add_argument("--eval-batches", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
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
        if args.clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        optimizer.step()
        return loss

    start = time.perf_counter()
    model = MODELS[args.model]().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
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

    model.eval()
    shape = (args.eval_batch, CONTEXT) if text else (args.eval_batch, 1, 28, 28)
    inputs = [torch.randint(0, VOCAB, shape, device=device) if text else torch.rand(shape, device=device)
              for _ in range(args.eval_batches + 1)]
    labels = torch.randint(0, VOCAB if text else 10, (args.eval_batch * (CONTEXT if text else 1),), device=device)
    eval_rates = []
    with torch.no_grad():
        def evaluate(x):
            logits = model(x)
            return loss_fn(logits.flatten(0, -2) if text else logits, labels)
        evaluate(inputs[0]).item()
        for _ in range(3):
            t = time.perf_counter()
            for x in inputs[1:]:
                evaluate(x).item()
            eval_rates.append(args.eval_batches * args.eval_batch / (time.perf_counter() - t))
    eval_rate = statistics.median(eval_rates)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    name = f"torch {torch.__version__} {args.device} threads={args.threads}"
    characters = f" ({rate * CONTEXT:.0f} characters/s)" if text else ""
    print(f"{name}: {rate:.0f} samples/s{characters} (runs: {[round(r) for r in rates]}), first step {first:.2f} s, "
          f"evaluation {eval_rate:.0f} samples/s at batch {args.eval_batch}, peak RSS {peak / 1e6:.0f} MB "
          f"({(peak - IMPORT_RSS) / 1e6:.0f} MB without the {IMPORT_RSS / 1e6:.0f} MB of `import torch`)")
    print(json.dumps({"bench": f"train_reference_{args.model}", "executor": name, "batch": batch,
                      "samples_per_s": round(rate, 1), "runs": [round(r, 1) for r in rates],
                      "first_step_s": round(first, 3), "eval_batch": args.eval_batch,
                      "eval_samples_per_s": round(eval_rate, 1), "peak_rss_bytes": peak,
                      "import_rss_bytes": IMPORT_RSS}))


if __name__ == "__main__":
    main()
