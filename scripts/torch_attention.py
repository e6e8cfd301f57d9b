#!/usr/bin/env python3
"""Golden values for the self-attention layer from PyTorch (f64): nn.MultiheadAttention(8, 2,
batch_first=True) on x [2, 5, 8], once causal and once with a key-padding mask (the second
sequence's last two keys hidden), its output and the gradients of loss = sum(y * r) with
respect to x and every parameter. The biases are drawn too, so that they are tested.

Writes crates/graph/tests/fixtures/attention.json for crates/graph/tests/attention.rs.

    pip install torch && python3 scripts/torch_attention.py
"""
import torch

from golden import parameters, values, write

BATCH, STEPS, EMBED, HEADS = 2, 5, 8, 2


def case(causal):
    torch.manual_seed(1 if causal else 2)
    mha = torch.nn.MultiheadAttention(EMBED, HEADS, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    x = torch.randn(BATCH, STEPS, EMBED, dtype=torch.float64, requires_grad=True)
    if causal:
        mask = torch.triu(torch.ones(STEPS, STEPS, dtype=torch.bool), 1)
        y, _ = mha(x, x, x, attn_mask=mask, need_weights=False)
        keys = None
    else:
        hidden = torch.zeros(BATCH, STEPS, dtype=torch.bool)
        hidden[1, -2:] = True
        y, _ = mha(x, x, x, key_padding_mask=hidden, need_weights=False)
        keys = (~hidden).int().flatten().tolist()  # dlcli's mask: 1 = visible
    r = torch.randn_like(y)
    (y * r).sum().backward()
    return {
        "causal": causal,
        "key_mask": keys,
        "x": values(x),
        "r": values(r),
        "y": values(y),
        "dx": values(x.grad),
        **parameters(mha),
    }


def main():
    out = {"batch": BATCH, "steps": STEPS, "embed": EMBED, "heads": HEADS,
           "cases": [case(True), case(False)]}
    write("crates/graph/tests/fixtures/attention.json", out)


if __name__ == "__main__":
    main()
