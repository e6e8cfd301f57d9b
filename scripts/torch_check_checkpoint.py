#!/usr/bin/env python3
"""Loads a dlcli checkpoint into the equivalent torch.nn model and compares logits.

    cargo run --release -p graph --example export_checkpoint -- /tmp/dlcli-export
    python3 scripts/torch_check_checkpoint.py /tmp/dlcli-export

Needs `pip install torch safetensors`. Exits non-zero when a tensor name, shape or logit
differs (logits within 1e-4 of dlcli's, evaluation mode).
"""
import sys

import torch
import torch.nn as nn
from safetensors.torch import load_file


class DigitsCnn(nn.Module):
    """The model of crates/graph/examples/export_checkpoint.rs, with the same names."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        x = torch.relu(self.conv2(x)).mean(dim=(2, 3))
        return self.fc(x)


def main():
    directory = sys.argv[1]
    tensors = load_file(f"{directory}/model.safetensors")
    state = {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}
    model = DigitsCnn()
    model.load_state_dict(state, strict=True)  # raises on any missing, extra or misshapen key
    model.eval()
    probe = load_file(f"{directory}/probe.safetensors")
    with torch.no_grad():
        logits = model(probe["x"])
    diff = (logits - probe["logits"]).abs().max().item()
    print(f"loaded {len(state)} tensors strictly; max |torch - dlcli| logit difference: {diff:.3g}")
    optimizer_keys = sorted(k for k in tensors if k.startswith("optimizer."))
    print(f"optimizer state tensors: {len(optimizer_keys)} (e.g. {optimizer_keys[0]})")
    if diff > 1e-4:
        sys.exit(f"logits differ by {diff}")


if __name__ == "__main__":
    main()
