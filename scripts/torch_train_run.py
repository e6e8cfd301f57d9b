#!/usr/bin/env python3
"""A whole PyTorch training run of the reference CNN, the job `dlcli train --config
configs/cnn.toml --epochs 1` does: MNIST from the shipped IDX files (normalised by MNIST's
mean and standard deviation), one shuffled epoch at batch 64 with Adam 1e-3, then the test set
evaluated at batch 1000. Prints the wall time of the training loop, samples/s, test accuracy
and the peak RSS, with and without what `import torch` itself took, as text and one JSON line,
for comparing the peak RSS of whole runs (`/usr/bin/time -f %M dlcli train ...` beside it).

    python3 scripts/torch_train_run.py [--threads 2] [--epochs 1]
"""
import argparse
import gzip
import json
import os
import resource
import time


def rss_bytes():
    with open("/proc/self/status") as status:
        line = next(l for l in status if l.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


BEFORE_IMPORT = rss_bytes()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402

IMPORT_RSS = rss_bytes() - BEFORE_IMPORT
DATA = os.path.join(os.path.dirname(__file__), "..", "datasets", "mnist")


def idx(name, offset):
    with gzip.open(os.path.join(DATA, name)) as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=offset)


def images(name):
    pixels = torch.from_numpy(idx(name, 16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0)
    return (pixels - 0.1307) / 0.3081


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x, y = images("train-images-idx3-ubyte.gz"), torch.from_numpy(idx("train-labels-idx1-ubyte.gz", 8).astype(np.int64))
    tx, ty = images("t10k-images-idx3-ubyte.gz"), torch.from_numpy(idx("t10k-labels-idx1-ubyte.gz", 8).astype(np.int64))
    model = nn.Sequential(
        nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10),
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for _ in range(args.epochs):
        order = torch.randperm(len(x))
        for i in range(0, len(x) - 63, 64):
            batch = order[i:i + 64]
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
    seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        correct = sum((model(tx[i:i + 1000]).argmax(1) == ty[i:i + 1000]).sum().item() for i in range(0, len(tx), 1000))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    samples = args.epochs * (len(x) // 64) * 64
    print(f"torch {torch.__version__} threads={args.threads}: {args.epochs} epoch(s) in {seconds:.1f} s "
          f"({samples / seconds:.0f} samples/s), test accuracy {correct / len(tx):.4f}, peak RSS {peak / 1e6:.0f} MB "
          f"({(peak - IMPORT_RSS) / 1e6:.0f} MB without the {IMPORT_RSS / 1e6:.0f} MB of `import torch`)")
    print(json.dumps({"bench": "torch_train_run_cnn", "seconds": round(seconds, 2), "samples_per_s": round(samples / seconds, 1),
                      "test_accuracy": correct / len(tx), "peak_rss_bytes": peak, "import_rss_bytes": IMPORT_RSS}))


if __name__ == "__main__":
    main()
