#!/usr/bin/env python3
"""Golden values for the LSTM and GRU layers from PyTorch (f64): nn.LSTM and nn.GRU with 2
layers, bidirectional, batch_first, on a fixed input, their outputs, and the gradients of
loss = sum(y * r) for a fixed r with respect to the input and every parameter.

Writes crates/graph/tests/fixtures/recurrent.json, which crates/graph/tests/recurrent.rs holds
both executors to (within 1e-4 relative); CI needs no Python.

    pip install torch && python3 scripts/torch_recurrent.py
"""
import torch

from golden import parameters, values, write

BATCH, STEPS, INPUTS, HIDDEN, LAYERS = 3, 6, 5, 7, 2


def case(module):
    torch.manual_seed(0)
    module = module(INPUTS, HIDDEN, LAYERS, batch_first=True, bidirectional=True).double()
    x = torch.randn(BATCH, STEPS, INPUTS, dtype=torch.float64, requires_grad=True)
    y, _ = module(x)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    return {
        "shape": {"batch": BATCH, "steps": STEPS, "inputs": INPUTS, "hidden": HIDDEN, "layers": LAYERS},
        "x": values(x),
        "r": values(r),
        "y": values(y),
        "dx": values(x.grad),
        **parameters(module),
    }


def main():
    out = {"lstm": case(torch.nn.LSTM), "gru": case(torch.nn.GRU)}
    write("crates/graph/tests/fixtures/recurrent.json", out)


if __name__ == "__main__":
    main()
