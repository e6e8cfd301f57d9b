#!/usr/bin/env python3
"""Golden values for the LSTM and GRU layers from PyTorch (f64): nn.LSTM and nn.GRU with 2
layers, bidirectional, batch_first, on a fixed input, their outputs, and the gradients of
loss = sum(y * r) for a fixed r with respect to the input and every parameter; and a
1-layer LSTM whose input is narrow beside its hidden state (2 features, 9 units), which the
CPU executor runs with the input product inside each step.

Writes crates/graph/tests/fixtures/recurrent.json, which crates/graph/tests/recurrent.rs holds
both executors to (within 1e-4 relative); CI needs no Python.

    pip install torch && python3 scripts/torch_recurrent.py
"""
import torch

from golden import parameters, values, write

BATCH, STEPS = 3, 6


def case(module, inputs=5, hidden=7, layers=2):
    torch.manual_seed(0)
    module = module(inputs, hidden, layers, batch_first=True, bidirectional=True).double()
    x = torch.randn(BATCH, STEPS, inputs, dtype=torch.float64, requires_grad=True)
    y, _ = module(x)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    return {
        "shape": {"batch": BATCH, "steps": STEPS, "inputs": inputs, "hidden": hidden, "layers": layers},
        "x": values(x),
        "r": values(r),
        "y": values(y),
        "dx": values(x.grad),
        **parameters(module),
    }


def main():
    out = {
        "lstm": case(torch.nn.LSTM),
        "gru": case(torch.nn.GRU),
        "lstm_narrow_input": case(torch.nn.LSTM, inputs=2, hidden=9, layers=1),
    }
    write("crates/graph/tests/fixtures/recurrent.json", out)


if __name__ == "__main__":
    main()
