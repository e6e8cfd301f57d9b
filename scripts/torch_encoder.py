#!/usr/bin/env python3
"""Golden values for the Transformer encoder layer from PyTorch (f64):
nn.TransformerEncoderLayer(8, 2, 16, dropout=0, batch_first=True) pre-norm with GELU and
post-norm with ReLU, on x [2, 5, 8] (the first causal), its output and the gradients of
loss = sum(y * r) with respect to x and every parameter. Every parameter is drawn at random
(biases and norms included), so that each is tested.

Writes crates/graph/tests/fixtures/encoder.json for crates/graph/tests/attention.rs.

    pip install torch && python3 scripts/torch_encoder.py
"""
import torch

from golden import parameters, values, write

BATCH, STEPS, D, HEADS, FF = 2, 5, 8, 2, 16


def case(norm_first, activation, causal, seed):
    torch.manual_seed(seed)
    layer = torch.nn.TransformerEncoderLayer(D, HEADS, FF, dropout=0.0, activation=activation,
                                             batch_first=True, norm_first=norm_first).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    x = torch.randn(BATCH, STEPS, D, dtype=torch.float64, requires_grad=True)
    mask = torch.nn.Transformer.generate_square_subsequent_mask(STEPS, dtype=torch.float64) if causal else None
    y = layer(x, src_mask=mask, is_causal=causal)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    return {
        "norm_first": norm_first, "activation": activation, "causal": causal,
        "x": values(x), "r": values(r), "y": values(y), "dx": values(x.grad),
        **parameters(layer),
    }


def main():
    out = {"batch": BATCH, "steps": STEPS, "d": D, "heads": HEADS, "feedforward": FF,
           "cases": [case(True, "gelu", True, 3), case(False, "relu", False, 4)]}
    write("crates/graph/tests/fixtures/encoder.json", out)


if __name__ == "__main__":
    main()
