#!/usr/bin/env python3
"""Times every `dlcli explain` method beside Captum (and pytorch-grad-cam) on the same model,
input and settings, on the CPU: one MNIST test image through configs/cnn.toml and one
Shakespeare line through configs/gpt-char.toml (trained briefly here: the time does not
depend on the weights), 2 threads on both sides.

    cargo build --release -p dlcli
    python3 scripts/explain_bench.py [REPEATS]

Needs `pip install torch captum grad-cam scikit-image safetensors numpy`. Alternates dlcli and
Captum REPEATS times (default 3) per method and prints the medians and their ratio as a
Markdown table. dlcli's time is the method's own (the sidecar's "seconds": model loading
excluded), Captum's the attribute call's. Run it on an idle machine: check `uptime` first.
"""
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib

import numpy as np
import torch
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import (IntegratedGradients, InputXGradient, KernelShap, Lime, NoiseTunnel, Occlusion,
                         Saliency)
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors.torch import load_file
from skimage.segmentation import slic

ROOT = pathlib.Path(__file__).resolve().parent.parent
DLCLI = ROOT / "target/release/dlcli"
LINE = "ROMEO: But, soft! what light through yonder window breaks?"
BATCH = 32  # what dlcli runs the many-pass methods at; Captum's perturbation batch the same

spec = importlib.util.spec_from_file_location("builder", ROOT / "scripts/torch_check_sequence_checkpoint.py")
builder = importlib.util.module_from_spec(spec)
spec.loader.exec_module(builder)


def train(config, runs, name, extra_toml=None):
    run = runs / name
    if (run / "best.safetensors").exists():
        return run
    if extra_toml:
        text = config.read_text()
        for key, value in extra_toml.items():
            text = text.replace(key, value)
        config = runs / f"{name}.toml"
        config.write_text(text.replace('"../datasets', f'"{ROOT}/datasets'))
    subprocess.run([str(DLCLI), "train", "--config", str(config), "--runs-dir", str(runs), "--run", name,
                    "--epochs", "1", "--device", "cpu", "--quiet"], check=True)
    return run


def torch_model(run):
    config = tomllib.loads((run / "config.toml").read_text())
    raw = (run / "best.safetensors").read_bytes()
    meta = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])["__metadata__"]
    state = {k: v for k, v in load_file(str(run / "best.safetensors")).items() if not k.startswith("optimizer.")}
    text = config["data"]["kind"] == "text"
    vocabulary = json.loads(meta["data"])["vocabulary"] if text else None
    model = builder.Model(config["model"]["layers"], 1, len(vocabulary) if text else 10, state)
    model.load(state)
    return model.eval(), config, vocabulary


def dlcli_seconds(run, method, sample, extra):
    with tempfile.TemporaryDirectory() as out:
        png = pathlib.Path(out) / "m.png"
        subprocess.run([str(DLCLI), "explain", "--method", method, "--run", str(run), *sample, "--device", "cpu",
                        "--out", str(png), *extra], check=True, capture_output=True)
        return json.loads(png.with_suffix(".json").read_text())["seconds"]


def timed(call):
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def gradient_family(f):
    """Captum's gradient methods of forward function f, with dlcli's default settings."""
    return {
        "saliency": lambda x, t: Saliency(f).attribute(x, target=t),
        "input_x_gradient": lambda x, t: InputXGradient(f).attribute(x, target=t),
        "integrated_gradients": lambda x, t: IntegratedGradients(f).attribute(x, target=t, n_steps=50,
                                                                              internal_batch_size=BATCH),
        "smoothgrad": lambda x, t: NoiseTunnel(Saliency(f)).attribute(
            x, nt_type="smoothgrad", nt_samples=50, nt_samples_batch_size=BATCH,
            stdevs=0.15 * (x.max() - x.min()).item(), target=t),
    }


def superpixels(x):
    """SLIC over the image as dlcli groups it by default (50 segments, compactness 0.2)."""
    return torch.from_numpy(slic(x[0, 0].numpy().astype(np.float64), n_segments=50, compactness=0.2,
                                 channel_axis=None, start_label=0)).reshape(1, 1, 28, 28)


def image_methods(model):
    """Captum's calls for the CNN on one image x [1, 1, 28, 28] with target t."""
    cam_layer = [layer for layer in model.order if layer.spec["type"] == "relu"][1]  # after conv2: dlcli's default

    def lime(x, t):
        mask = superpixels(x)
        Lime(model, interpretable_model=SkLearnRidge(alpha=1.0)).attribute(
            x, baselines=0.0, target=t, feature_mask=mask, n_samples=1000, perturbations_per_eval=BATCH)

    def kernel_shap(x, t):
        mask = superpixels(x)
        groups = int(mask.max()) + 1
        KernelShap(model).attribute(x, baselines=0.0, target=t, feature_mask=mask, n_samples=2 * groups + 2048,
                                    perturbations_per_eval=BATCH)

    def cam(kind):
        def run(x, t):
            kind(model=model, target_layers=[cam_layer])(input_tensor=x, targets=[ClassifierOutputTarget(t)])
        return run

    return {
        **gradient_family(model),
        "gradcam": cam(GradCAM),
        "gradcam++": cam(GradCAMPlusPlus),
        "occlusion": lambda x, t: Occlusion(model).attribute(x, sliding_window_shapes=(1, 4, 4), strides=(1, 2, 2),
                                                             baselines=0.0, target=t, perturbations_per_eval=BATCH),
        "lime": lime,
        "kernel_shap": kernel_shap,
    }


def text_methods(model, row):
    """Captum's calls for the language model on its embeddings e [1, T, D] (what dlcli
    explains), explaining the prediction after position `row`."""
    embed, rest = model.order[0], model.order[1:]

    def forward(e):
        for layer in rest:
            e = layer(e)
        return e[:, row]

    def groups(e):
        return torch.arange(e.shape[1]).reshape(1, -1, 1).expand(1, -1, e.shape[2])

    return embed, {
        **gradient_family(forward),
        "occlusion": lambda e, t: Occlusion(forward).attribute(e, sliding_window_shapes=(1, e.shape[2]),
                                                               strides=(1, e.shape[2]), baselines=0.0, target=t,
                                                               perturbations_per_eval=BATCH),
        "lime": lambda e, t: Lime(forward, interpretable_model=SkLearnRidge(alpha=1.0)).attribute(
            e, baselines=0.0, target=t, feature_mask=groups(e), n_samples=1000, perturbations_per_eval=BATCH),
        "kernel_shap": lambda e, t: KernelShap(forward).attribute(
            e, baselines=0.0, target=t, feature_mask=groups(e), n_samples=2 * e.shape[1] + 2048,
            perturbations_per_eval=BATCH),
    }


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    torch.set_num_threads(2)
    runs = pathlib.Path(os.environ.get("DLCLI_BENCH_RUNS", "/tmp/dlcli-explain-bench"))
    runs.mkdir(parents=True, exist_ok=True)
    cnn = train(ROOT / "configs/cnn.toml", runs, "cnn")
    gpt = train(ROOT / "configs/gpt-char.toml", runs, "gpt", {"windows = 6400": "windows = 320"})
    rows = []
    before = os.getloadavg()

    model, config, _ = torch_model(cnn)
    import gzip
    pixels = np.frombuffer(gzip.open(ROOT / "datasets/mnist/t10k-images-idx3-ubyte.gz").read(), np.uint8, offset=16)
    x = torch.tensor((pixels[:784] / 255.0 - config["data"]["mean"]) / config["data"]["std"],
                     dtype=torch.float32).reshape(1, 1, 28, 28)
    target = int(model(x).argmax())
    for method, captum in image_methods(model).items():
        ours, theirs = [], []
        for _ in range(repeats):
            ours.append(dlcli_seconds(cnn, method, ["--index", "0"], ["--target", str(target)]))
            theirs.append(timed(lambda: captum(x, target)))
        rows.append(("MNIST image, cnn.toml", method, ours, theirs))

    model, config, vocabulary = torch_model(gpt)
    context = config["data"]["context"]
    ids = [vocabulary.index(c) for c in LINE][-context:]
    row = len(ids) - 1
    embed, methods = text_methods(model, row)
    padded = torch.tensor([ids + [0] * (context - len(ids))])
    e = embed(padded).detach()
    target = int(torch.argmax(model(padded)[0, row]))
    for method, captum in methods.items():
        ours, theirs = [], []
        for _ in range(repeats):
            ours.append(dlcli_seconds(gpt, method, ["--text", LINE], ["--target", str(target)]))
            theirs.append(timed(lambda: captum(e, target)))
        rows.append(("Shakespeare line, gpt-char.toml", method, ours, theirs))

    print(f"load average before: {before}")
    print("| input | method | dlcli s (median) | Captum s (median) | Captum time / dlcli time |")
    print("|---|---|---:|---:|---:|")
    for what, method, ours, theirs in rows:
        a, b = statistics.median(ours), statistics.median(theirs)
        print(f"| {what} | {method} | {a:.4f} | {b:.4f} | {b / a:.2f}x |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
