"""Shared by the scripts that write the tests' PyTorch fixtures (scripts/torch_*.py)."""
import json
import pathlib

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent


def values(t):
    """Nine significant digits: exact for the f32 the tests compare, half the size of f64's."""
    return [float(f"{v:.9g}") for v in t.detach().flatten().tolist()]


def parameters(module):
    """A module's parameters and their gradients by state_dict name."""
    named = list(module.named_parameters())
    return {"params": {n: values(p) for n, p in named}, "grads": {n: values(p.grad) for n, p in named}}


def write(relative, data):
    """Writes the fixture at ROOT/relative as one line of JSON, with the torch version."""
    path = ROOT / relative
    path.write_text(json.dumps({"torch": torch.__version__, **data}) + "\n")
    print(f"wrote {path} (torch {torch.__version__})")
