#!/usr/bin/env python3
"""Golden values for the Transformer decoder layer from PyTorch (f64):
nn.TransformerDecoderLayer(8, 2, 16, dropout=0, batch_first=True), pre-norm with GELU and
post-norm with ReLU, on x [2, 5, 8] (causal self-attention) attending to a memory [2, 6, 8]
(the second sequence's last two memory steps hidden in the post-norm case), its output and
the gradients of loss = sum(y * r) with respect to x, the memory and every parameter. Every
parameter is drawn at random, so that each is tested.

Writes crates/graph/tests/fixtures/decoder.json for crates/graph/tests/attention.rs.

    pip install torch && python3 scripts/torch_decoder.py
"""
import torch

from golden import parameters, values, write

BATCH, STEPS, MEMORY, D, HEADS, FF = 2, 5, 6, 8, 2, 16


def case(norm_first, activation, padded, seed):
    torch.manual_seed(seed)
    layer = torch.nn.TransformerDecoderLayer(D, HEADS, FF, dropout=0.0, activation=activation,
                                             batch_first=True, norm_first=norm_first).double()
    with torch.no_grad():
        for p in layer.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    x = torch.randn(BATCH, STEPS, D, dtype=torch.float64, requires_grad=True)
    memory = torch.randn(BATCH, MEMORY, D, dtype=torch.float64, requires_grad=True)
    causal = torch.nn.Transformer.generate_square_subsequent_mask(STEPS, dtype=torch.float64)
    hidden = torch.zeros(BATCH, MEMORY, dtype=torch.bool)
    if padded:
        hidden[1, -2:] = True
    y = layer(x, memory, tgt_mask=causal, tgt_is_causal=True, memory_key_padding_mask=hidden if padded else None)
    r = torch.randn_like(y)
    (y * r).sum().backward()
    return {
        "norm_first": norm_first, "activation": activation,
        "memory_mask": (~hidden).int().flatten().tolist() if padded else None,
        "x": values(x), "memory": values(memory), "r": values(r), "y": values(y),
        "dx": values(x.grad), "dmemory": values(memory.grad),
        **parameters(layer),
    }


def main():
    out = {"batch": BATCH, "steps": STEPS, "memory": MEMORY, "d": D, "heads": HEADS,
           "feedforward": FF, "cases": [case(True, "gelu", False, 5), case(False, "relu", True, 6)]}
    write("crates/graph/tests/fixtures/decoder.json", out)


if __name__ == "__main__":
    main()
