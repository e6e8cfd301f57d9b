#!/usr/bin/env python3
"""Loads the best checkpoint of a dlcli run of configs/lstm-mnist.toml or gru-mnist.toml into
the equivalent torch.nn model (load_state_dict strict, optimizer keys dropped) and evaluates it
on the MNIST test set, to set beside `dlcli eval --run RUN`; with the JSON of
`dlcli predict --run RUN --index 0 --top-k 10 --json`, it also compares the probabilities.

    python3 scripts/torch_check_sequence_checkpoint.py RUN [predict.json]

Needs `pip install torch safetensors numpy`. Exits non-zero when a tensor name or shape differs,
or a probability by more than 1e-4.
"""
import gzip
import json
import pathlib
import sys

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file

MNIST = pathlib.Path(__file__).resolve().parent.parent / "datasets/mnist"


class RowClassifier(nn.Module):
    """image_rows -> LSTM/GRU(28, hidden) -> last step -> Linear(hidden, 10), named as dlcli's."""

    def __init__(self, name, cell, hidden):
        super().__init__()
        self.cell_name = name
        self.add_module(name, cell(28, hidden, batch_first=True))
        self.fc = nn.Linear(hidden, 10)

    def forward(self, x):
        out, _ = getattr(self, self.cell_name)(x.reshape(x.shape[0], 28, 28))
        return self.fc(out[:, -1])


def idx(name):
    data = gzip.open(MNIST / name).read()
    if name.endswith("idx3-ubyte.gz"):
        return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    return np.frombuffer(data, np.uint8, offset=8).astype(np.int64)


def main():
    run = pathlib.Path(sys.argv[1])
    tensors = load_file(str(run / "best.safetensors"))
    state = {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
    name = "lstm" if any(k.startswith("lstm.") for k in state) else "gru"
    cell = nn.LSTM if name == "lstm" else nn.GRU
    model = RowClassifier(name, cell, state[f"{name}.weight_hh_l0"].shape[1]).double()
    model.load_state_dict({k: v.double() for k, v in state.items()}, strict=True)  # raises on any mismatch
    model.eval()
    x = torch.from_numpy((idx("t10k-images-idx3-ubyte.gz") - 0.1307) / 0.3081).double()
    y = torch.from_numpy(idx("t10k-labels-idx1-ubyte.gz"))
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 1000]) for i in range(0, len(x), 1000)])
    accuracy = (logits.argmax(1) == y).double().mean().item()
    print(f"{cell.__name__}: loaded {len(state)} tensors strictly; torch test accuracy {accuracy:.4%}")
    if len(sys.argv) > 2:
        predicted = json.loads(pathlib.Path(sys.argv[2]).read_text())
        probabilities = torch.softmax(logits[0], 0)
        diff = max(abs(probabilities[c["class"]].item() - c["probability"]) for c in predicted["top"])
        print(f"sample 0: max |torch - dlcli| probability difference {diff:.3g}")
        if diff > 1e-4:
            sys.exit(f"probabilities differ by {diff}")


if __name__ == "__main__":
    main()
