#!/usr/bin/env python3
"""Loads the best checkpoint of a dlcli run of a shipped sequence config (lstm-mnist, gru-mnist,
vit-mnist, char-lstm, gpt-char, lstm-sunspots) into the equivalent torch.nn model, built from
the run's config.toml (load_state_dict strict, optimizer keys dropped), and evaluates it as
`dlcli eval` does: test accuracy on MNIST, the held-out loss in nats per character on the
text, the test RMSE of a forecaster. With the JSON of `dlcli predict --run RUN ... --json` it
also compares the probabilities (or the forecast of test window 0):

    python3 scripts/torch_check_sequence_checkpoint.py RUN [predict.json]

(`dlcli predict --run RUN --index 0 --top-k 10 --json` for the image models and the
forecaster, `dlcli predict --run RUN --text "ROMEO" --top-k 200 --json` for the text ones.)
Needs `pip install torch safetensors numpy`. Exits non-zero when a tensor name or shape differs,
or a probability by more than 1e-4.
"""
import gzip
import json
import math
import pathlib
import sys
import tomllib

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import load_file


class Layer(nn.Module):
    """One layer of a dlcli config, its parameters under the config's layer name."""

    def __init__(self, spec, width, vocab, state):
        super().__init__()
        self.spec, kind, self.name = spec, spec["type"], spec["name"]
        if kind == "conv2d":
            self.module = nn.Conv2d(width, spec["out_channels"], spec["kernel"], spec["stride"], spec["padding"],
                                    spec["dilation"], bias=spec["bias"])
            self.width = spec["out_channels"]
        elif kind in ("lstm", "gru"):
            cell = nn.LSTM if kind == "lstm" else nn.GRU
            self.module = cell(width, spec["hidden"], spec["layers"], batch_first=True,
                               bidirectional=spec["bidirectional"], dropout=spec["dropout"])
            self.width = spec["hidden"] * (2 if spec["bidirectional"] else 1)
        elif kind == "embedding":
            self.module = nn.Embedding(vocab, spec["dim"], padding_idx=spec.get("padding"))
            self.width = spec["dim"]
        elif kind == "linear":
            # After a flatten the width is the feature map's size, which the weight says.
            inputs = state[f"{self.name}.weight"].shape[1] if f"{self.name}.weight" in state else width
            self.module = nn.Linear(inputs, spec.get("out_features", vocab), bias=spec["bias"])
            self.width = self.module.out_features
        elif kind == "layer_norm":
            self.module = nn.LayerNorm(width, eps=spec["eps"])
        elif kind == "transformer_encoder":
            act = {"gelu": "gelu", "relu": "relu"}[spec["activation"]]
            layer = nn.TransformerEncoderLayer(width, spec["heads"], spec["feedforward"], spec["dropout"], act,
                                               spec["eps"], batch_first=True, norm_first=spec["norm_first"])
            self.module = nn.TransformerEncoder(layer, spec["layers"], enable_nested_tensor=False)
        elif kind == "class_token":
            self.token = nn.Parameter(torch.zeros_like(state[f"{self.name}.token"]))
        elif kind == "position" and spec.get("encoding", "learned") == "learned":
            self.weight = nn.Parameter(torch.zeros_like(state[f"{self.name}.weight"]))
        elif kind == "position":
            self.register_buffer("pe", torch.zeros_like(state[f"{self.name}.pe"]))
        if not hasattr(self, "width"):
            self.width = width

    def forward(self, x):
        kind, s = self.spec["type"], self.spec
        if kind in ("conv2d", "embedding", "linear", "layer_norm"):
            return self.module(x)
        if kind in ("lstm", "gru"):
            out, _ = self.module(x)
            return out[:, -1] if s["return"] == "last" else out
        if kind == "transformer_encoder":
            if s["causal"]:
                mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1], dtype=x.dtype)
                return self.module(x, mask=mask, is_causal=True)
            return self.module(x)
        if kind == "image_rows":
            n, c, h, w = x.shape
            return x.permute(0, 2, 1, 3).reshape(n, h, c * w)
        if kind == "tokens":
            return x.flatten(2).transpose(1, 2)
        if kind == "class_token":
            return torch.cat([self.token.expand(x.shape[0], -1, -1), x], 1)
        if kind == "position":
            table = self.weight if s.get("encoding", "learned") == "learned" else self.pe
            return x + table[:, :x.shape[1]]
        if kind == "step":
            return x[:, s["index"]]
        if kind == "flatten":
            return x.flatten(1)
        if kind in ("relu", "gelu"):
            return getattr(torch.nn.functional, kind)(x)
        if kind == "max_pool2d":
            return nn.functional.max_pool2d(x, s["kernel"], s.get("stride") or s["kernel"])
        raise SystemExit(f"layer type {kind} is not handled here")


class Model(nn.Module):
    """A dlcli config's layers in order (the shipped sequence configs are chains)."""

    def __init__(self, layers, channels, vocab, state):
        super().__init__()
        self.order, width = nn.ModuleList(), channels
        for spec in layers:
            layer = Layer(spec, width, vocab, state)
            width = layer.width
            if spec["type"] == "linear" and "tie" in spec:
                layer.module.weight = next(l for l in self.order if l.name == spec["tie"]).module.weight
            self.order.append(layer)

    def forward(self, x):
        for layer in self.order:
            x = layer(x)
        return x

    def load(self, state):
        """Loads dlcli's state dict strictly under the config's names."""
        ours = {}
        for layer in self.order:
            for name, p in layer.state_dict(keep_vars=True).items():
                ours[f"{layer.name}.{name.removeprefix('module.')}"] = p
        missing, unexpected = sorted(set(ours) - set(state)), sorted(set(state) - set(ours))
        if missing or unexpected:
            raise SystemExit(f"names differ: missing {missing}, unexpected {unexpected}")
        with torch.no_grad():
            for name, target in ours.items():
                if tuple(target.shape) != tuple(state[name].shape):
                    raise SystemExit(f"{name}: torch {tuple(target.shape)}, dlcli {tuple(state[name].shape)}")
                target.copy_(state[name].to(target.dtype))
        return len(ours)


def mnist(path, name):
    data = gzip.open(path / name).read()
    if name.endswith("idx3-ubyte.gz"):
        return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 1, 28, 28).astype(np.float64) / 255.0
    return np.frombuffer(data, np.uint8, offset=8).astype(np.int64)


def main():
    run = pathlib.Path(sys.argv[1])
    config = tomllib.loads((run / "config.toml").read_text())
    tensors = load_file(str(run / "best.safetensors"), device="cpu")
    raw = (run / "best.safetensors").read_bytes()
    meta = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])["__metadata__"]
    state = {k: v.double() for k, v in tensors.items() if not k.startswith("optimizer.")}
    data = config["data"]
    text, series = data["kind"] == "text", data["kind"] == "series"
    vocabulary = json.loads(meta["data"])["vocabulary"] if text else None
    model = Model(config["model"]["layers"], 1, len(vocabulary) if text else 1 if series else 10, state).double()
    loaded = model.load(state)
    model.eval()
    with torch.no_grad():
        if text:
            chars = pathlib.Path(data["path"]).read_text()
            ids = torch.tensor([vocabulary.index(c) for c in chars])
            held_out = ids[len(ids) - round(len(ids) * data["held_out"]):]
            t = data["context"]
            windows = (len(held_out) - 1) // t
            x = torch.stack([held_out[w * t:w * t + t] for w in range(windows)])
            y = torch.stack([held_out[w * t + 1:w * t + t + 1] for w in range(windows)])
            losses = [nn.functional.cross_entropy(model(x[i:i + 64]).flatten(0, 1), y[i:i + 64].flatten(), reduction="sum")
                      for i in range(0, windows, 64)]
            loss = sum(losses).item() / (windows * t)
            print(f"loaded {loaded} tensors strictly; torch held-out loss {loss:.4f} nats/char "
                  f"(perplexity {math.exp(loss):.3f}) over {windows} windows")
        elif series:
            kept = json.loads(meta["data"])
            lines = pathlib.Path(data["path"]).read_text().splitlines()
            header = [h.strip().strip('"') for h in lines[0].split(",")]
            column = header.index(data["column"]) if "column" in data else len(header) - 1
            values = torch.tensor([float(l.split(",")[column]) for l in lines[1:] if l.strip()], dtype=torch.float64)
            split, w = len(values) - round(len(values) * data["test_fraction"]), data["window"]
            scaled = (values - kept["mean"]) / kept["std"]
            x = torch.stack([scaled[t - w:t] for t in range(split, len(values))]).unsqueeze(-1)
            forecast = model(x)[:, 0] * kept["std"] + kept["mean"]
            rmse = ((forecast - values[split:]) ** 2).mean().sqrt().item()
            print(f"loaded {loaded} tensors strictly; torch test rmse {rmse:.4f} over {len(x)} windows")
            if len(sys.argv) > 2:
                predicted = json.loads(pathlib.Path(sys.argv[2]).read_text())
                diff = abs(forecast[0].item() - predicted["forecast"])
                print(f"test window 0: |torch - dlcli| forecast difference {diff:.3g}")
                if diff > 1e-3:
                    sys.exit(f"forecasts differ by {diff}")
            return
        else:
            path = pathlib.Path(data["test_images"]).parent
            x = torch.from_numpy((mnist(path, "t10k-images-idx3-ubyte.gz") - data["mean"]) / data["std"])
            y = torch.from_numpy(mnist(path, "t10k-labels-idx1-ubyte.gz"))
            logits = torch.cat([model(x[i:i + 500]) for i in range(0, len(x), 500)])
            print(f"loaded {loaded} tensors strictly; torch test accuracy {(logits.argmax(1) == y).double().mean().item():.4%}")
        if len(sys.argv) > 2:
            predicted = json.loads(pathlib.Path(sys.argv[2]).read_text())
            if text:
                prompt = predicted.get("text", "ROMEO")
                logits = model(torch.tensor([[vocabulary.index(c) for c in prompt]]))[0, -1]
                probabilities = torch.softmax(logits, 0)
                diff = max(abs(probabilities[vocabulary.index(c["character"])].item() - c["probability"])
                           for c in predicted["top"])
            else:
                probabilities = torch.softmax(logits[0], 0)
                diff = max(abs(probabilities[c["class"]].item() - c["probability"]) for c in predicted["top"])
            print(f"max |torch - dlcli| probability difference {diff:.3g} over {len(predicted['top'])} classes")
            if diff > 1e-4:
                sys.exit(f"probabilities differ by {diff}")


if __name__ == "__main__":
    main()
