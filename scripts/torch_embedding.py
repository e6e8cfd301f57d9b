#!/usr/bin/env python3
"""Golden values for the embedding layer from PyTorch: nn.Embedding(11, 5, padding_idx=3) on
[4, 7] ids with repeats, the padding id and every other id, its output, and the gradient of
loss = sum(y * r) for a fixed r with respect to the table (the padding row's is zero).

Writes crates/graph/tests/fixtures/embedding.json for crates/graph/tests/embedding.rs.

    pip install torch && python3 scripts/torch_embedding.py
"""
import torch

from golden import values, write


def main():
    torch.manual_seed(0)
    table = torch.nn.Embedding(11, 5, padding_idx=3)
    ids = torch.randint(0, 11, (4, 7))
    ids[0, :3] = torch.tensor([3, 3, 5])  # the padding id, and a repeat
    y = table(ids)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    out = {
        "vocab": 11, "dim": 5, "padding": 3, "shape": list(ids.shape),
        "ids": ids.flatten().tolist(),
        "weight": values(table.weight),
        "r": values(r),
        "y": values(y),
        "dweight": values(table.weight.grad),
    }
    write("crates/graph/tests/fixtures/embedding.json", out)


if __name__ == "__main__":
    main()
