#!/usr/bin/env python3
"""Golden values of every unary function in `crates/kernels/src/unary.rs`, from PyTorch in f64:
the function and its autograd derivative on a grid over the function's domain.

Writes crates/kernels/tests/fixtures/unary.json, which `tests/kernels/elementwise.rs` holds the
CPU reference to; the test fails for a table row with no entry here (or an entry with no row),
so a new activation is one row in unary.rs and one line below.

    pip install torch && python3 scripts/torch_activations.py
"""
import json
import pathlib

import torch
import torch.nn.functional as F

# name: (parameter, domain, function of x and the parameter)
FUNCTIONS = {
    "identity": (None, (-6, 6), lambda x, p: x),
    "relu": (None, (-6, 6), lambda x, p: F.relu(x)),
    "leaky_relu": (0.1, (-6, 6), lambda x, p: F.leaky_relu(x, p)),
    "gelu_tanh": (None, (-6, 6), lambda x, p: F.gelu(x, approximate="tanh")),
    "gelu": (None, (-6, 6), lambda x, p: F.gelu(x)),
    "sigmoid": (None, (-6, 6), lambda x, p: torch.sigmoid(x)),
    "tanh": (None, (-6, 6), lambda x, p: torch.tanh(x)),
    "silu": (None, (-6, 6), lambda x, p: F.silu(x)),
    "softplus": (None, (-6, 6), lambda x, p: F.softplus(x)),
    "elu": (0.7, (-6, 6), lambda x, p: F.elu(x, p)),
    "exp": (None, (-6, 6), lambda x, p: torch.exp(x)),
    "log": (None, (0.05, 8), lambda x, p: torch.log(x)),
    "sqrt": (None, (0.05, 8), lambda x, p: torch.sqrt(x)),
    "scale": (-2.5, (-6, 6), lambda x, p: p * x),
}


def main():
    out = {}
    for name, (parameter, (lo, hi), f) in FUNCTIONS.items():
        # 41 points inside the domain, none on a kink (ReLU's 0).
        x = torch.linspace(lo + 0.0123, hi - 0.0321, 41, dtype=torch.float64)
        x.requires_grad_(True)
        y = f(x, parameter)
        (dydx,) = torch.autograd.grad(y.sum(), x)
        out[name] = {
            "parameter": parameter,
            "x": x.detach().tolist(),
            "y": y.detach().tolist(),
            "dydx": dydx.tolist(),
        }
    path = pathlib.Path(__file__).resolve().parent.parent / "crates/kernels/tests/fixtures/unary.json"
    path.write_text(json.dumps({"torch": torch.__version__, "functions": out}, indent=1) + "\n")
    print(f"wrote {path} ({len(out)} functions, torch {torch.__version__})")


if __name__ == "__main__":
    main()
