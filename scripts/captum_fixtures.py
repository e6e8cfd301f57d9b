#!/usr/bin/env python3
"""Golden fixtures that hold `dlcli explain` to Captum, pytorch-grad-cam, lime and shap.

    cargo build --release -p dlcli
    python3 scripts/captum_fixtures.py

Needs `pip install torch captum grad-cam safetensors numpy scikit-learn`. Trains the shipped
digits CNN (configs/digits.toml: batch norm, a residual block, dropout) and sunspot LSTM
(configs/lstm-sunspots.toml) with dlcli, keeps their best checkpoints in
crates/dlcli/tests/fixtures/explain/ (the stored config's data paths made relative to the
checkpoint, so the files work from any checkout), loads each into the equivalent torch module
and writes what every method gives there to captum.json:

- Captum's Saliency, InputXGradient, IntegratedGradients (Gauss-Legendre and trapezoid),
  NoiseTunnel over Saliency (smoothgrad, smoothgrad_sq, vargrad) with the noise Captum drew
  (recorded by a forward hook and stored), Occlusion, Lime and KernelShap given stored masks
  (a generator in place of their sampling, so the surrogate's coefficients are deterministic);
- pytorch-grad-cam's GradCAM and GradCAMPlusPlus, the raw low-resolution map its
  get_cam_image computes (before its min-max scaling and resize), rectified.

`cargo test` (crates/dlcli/src/explain/golden.rs) runs dlcli's methods on the same inputs.
"""
import json
import pathlib
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn as nn
from captum._utils.models.linear_model import SkLearnRidge
from captum.attr import (IntegratedGradients, InputXGradient, KernelShap, Lime, NoiseTunnel, Occlusion,
                         Saliency)
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates/dlcli/tests/fixtures/explain"
DLCLI = ROOT / "target/release/dlcli"
# LIME's kernel width on the cosine distance (the lime package's image default) and ridge alpha.
KERNEL_WIDTH, RIDGE_ALPHA = 0.25, 1.0
DRAWS = 300


class DigitsCnn(nn.Module):
    """configs/digits.toml, with dlcli's parameter names."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.stem = nn.ReLU()  # the layer Grad-CAM looks at: the residual block's input
        self.block_conv = nn.Conv2d(16, 16, 3, padding=1)
        self.fc = nn.Linear(256, 10)

    def forward(self, x):
        stem = self.stem(self.bn1(self.conv1(x)))
        residual = stem + torch.relu(self.block_conv(stem))
        return self.fc(torch.flatten(nn.functional.max_pool2d(residual, 2), 1))  # dropout: eval


class SunspotLstm(nn.Module):
    """configs/lstm-sunspots.toml: the LSTM's last step through a linear layer."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(1, 32, batch_first=True)
        self.head = nn.Linear(32, 1)

    def forward(self, x):
        return self.head(self.lstm(x)[0][:, -1])


def train(config, runs):
    subprocess.run([str(DLCLI), "train", "--config", str(config), "--runs-dir", str(runs), "--run", "r",
                    "--device", "cpu", "--quiet"], check=True)
    return runs / "r" / "best.safetensors"


def keep(checkpoint, name):
    """The checkpoint under FIXTURES/name, its config's absolute data paths made relative."""
    with safe_open(str(checkpoint), "pt") as f:
        metadata = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    relative = pathlib.Path("../../../../..")  # from crates/dlcli/tests/fixtures/explain to the root
    metadata["config"] = metadata["config"].replace(str(ROOT) + "/", str(relative) + "/")
    assert str(ROOT) not in metadata["config"], metadata["config"]
    save_file(tensors, str(FIXTURES / name), metadata=metadata)
    data = json.loads(metadata["data"]) if metadata.get("data") else None
    return {k: v for k, v in tensors.items() if not k.startswith("optimizer.")}, data


def listed(t):
    return [float(v) for v in np.asarray(t.detach() if torch.is_tensor(t) else t, dtype=np.float64).ravel()]


def bits(mask):
    """A mask as a string of 0s and 1s, one per group."""
    return "".join("1" if b else "0" for b in mask)


def lime_masks(groups, rng):
    masks = [np.ones(groups, dtype=bool)]
    masks += [rng.random(groups) < 0.5 for _ in range(DRAWS - 1)]
    return masks


def shapley_masks(groups, rng):
    """Sizes from the Shapley kernel's distribution, then that many groups at random."""
    sizes = np.arange(1, groups)
    p = (groups - 1) / (sizes * (groups - sizes))
    masks = []
    for _ in range(DRAWS):
        k = rng.choice(sizes, p=p / p.sum())
        mask = np.zeros(groups, dtype=bool)
        mask[rng.choice(groups, size=k, replace=False)] = True
        masks.append(mask)
    return masks


def stored(masks):
    def generator(original_inp, **kwargs):
        for m in masks:
            yield torch.tensor(m, dtype=torch.float32).unsqueeze(0)
    return generator


def lime_similarity(original, perturbed, interpretable, **kwargs):
    """The lime package's kernel on the cosine distance of the mask from all groups on."""
    on = interpretable.sum().item()
    groups = interpretable.numel()
    distance = 1.0 if on == 0 else 1.0 - np.sqrt(on / groups)
    return float(np.exp(-distance ** 2 / (2 * KERNEL_WIDTH ** 2)))


class StoredKernelShap(KernelShap):
    """Captum's KernelShap (all groups on, all off, then the coalitions) drawing stored masks."""

    def __init__(self, forward, masks):
        super().__init__(forward)
        self.masks = masks

    def kernel_shap_perturb_generator(self, original_inp, **kwargs):
        groups = kwargs["num_interp_features"]
        yield torch.ones(1, groups)
        yield torch.zeros(1, groups)
        for m in self.masks:
            yield torch.tensor(m, dtype=torch.float32).unsqueeze(0)


def noise_of(model, x, nt_type, draws, sigma, target):
    """NoiseTunnel's attribution and the noisy inputs it ran, minus x: the noise it drew."""
    seen = []
    hook = model.register_forward_pre_hook(lambda _, inputs: seen.append(inputs[0].detach().clone()))
    attribution = NoiseTunnel(Saliency(model)).attribute(x, nt_type=nt_type, nt_samples=draws, stdevs=sigma,
                                                         target=target)
    hook.remove()
    noisy = torch.cat(seen)
    return attribution, (noisy - x).reshape(draws, -1)


def raw_cam(cam_class, model, layer, x, target):
    """pytorch-grad-cam's map before scaling: get_cam_image on its own hooks' activations and
    gradients, rectified as its scale_cam_image does first."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    cam = cam_class(model=model, target_layers=[layer])
    targets = [ClassifierOutputTarget(target)]
    outputs = cam.activations_and_grads(x)
    model.zero_grad()
    sum(t(o) for t, o in zip(targets, outputs)).backward(retain_graph=True)
    activations = cam.activations_and_grads.activations[0].cpu().numpy()
    grads = cam.activations_and_grads.gradients[0].cpu().numpy()
    image = cam.get_cam_image(x, layer, targets, activations, grads, False)
    cam.activations_and_grads.release()
    return np.maximum(image, 0)[0]


def methods(model, x, target, groups, feature_mask, window, stride, rng, cam_layer=None):
    out = {"input": listed(x), "shape": list(x.shape[1:]), "target": target}
    out["saliency"] = listed(Saliency(model).attribute(x, target=target, abs=True))
    out["input_x_gradient"] = listed(InputXGradient(model).attribute(x, target=target))
    for method in ["gausslegendre", "riemann_trapezoid"]:
        ig = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=50,
                                                  method=method)
        out[f"integrated_gradients_{method}"] = listed(ig)
    sigma = 0.15 * (x.max() - x.min()).item()
    out["smoothgrad_sigma"] = sigma
    for nt_type in ["smoothgrad", "smoothgrad_sq", "vargrad"]:
        attribution, noise = noise_of(model, x, nt_type, 20, sigma, target)
        out[nt_type] = {"attribution": listed(attribution), "noise": [listed(n) for n in noise]}
    occlusion = Occlusion(model).attribute(x, sliding_window_shapes=window, strides=stride, baselines=0.0,
                                           target=target)
    out["occlusion"] = {"window": list(window[-2:]), "stride": list(stride[-2:]), "attribution": listed(occlusion)}
    out["feature_group"] = [int(g) for g in feature_mask.ravel()]
    masks = lime_masks(groups, rng)
    lime = Lime(model, interpretable_model=SkLearnRidge(alpha=RIDGE_ALPHA), similarity_func=lime_similarity,
                perturb_func=stored(masks))
    weights = lime.attribute(x, baselines=0.0, target=target, feature_mask=feature_mask, n_samples=len(masks),
                             return_input_shape=False)
    out["lime"] = {"masks": [bits(m) for m in masks], "weights": listed(weights)}
    masks = shapley_masks(groups, rng)
    shap = StoredKernelShap(model, masks).attribute(x, baselines=0.0, target=target, feature_mask=feature_mask,
                                                    n_samples=len(masks) + 2, return_input_shape=False)
    out["kernel_shap"] = {"masks": [bits(m) for m in masks], "values": listed(shap)}
    if cam_layer is not None:
        out["gradcam"] = listed(raw_cam(GradCAM, model, cam_layer, x, target))
        out["gradcam++"] = listed(raw_cam(GradCAMPlusPlus, model, cam_layer, x, target))
    return out


def main():
    torch.set_num_threads(1)
    FIXTURES.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261202)
    fixtures = {}
    with tempfile.TemporaryDirectory() as runs:
        runs = pathlib.Path(runs)
        params, _ = keep(train(ROOT / "configs/digits.toml", runs / "digits"), "digits.safetensors")
        model = DigitsCnn().eval()
        model.load_state_dict(params, strict=True)
        import gzip
        # The first digit whose Grad-CAM is not all 0 (ReLU of a map negative everywhere, as the
        # first digit's is: agreeing on zeros would prove nothing).
        for line in gzip.open(ROOT / "datasets/digits/digits.csv.gz", "rt"):
            x = torch.tensor([float(v) / 16 for v in line.split(",")[:64]]).reshape(1, 1, 8, 8)
            target = int(model(x).argmax())
            if raw_cam(GradCAM, model, model.stem, x, target).max() > 0:
                break
        mask = torch.tensor([[(r // 2) * 4 + c // 2 for c in range(8)] for r in range(8)]).reshape(1, 1, 8, 8)
        fixtures["digits"] = methods(model, x, target, 16, mask, (1, 3, 3), (1, 2, 2), rng, model.stem)

        params, data = keep(train(ROOT / "configs/lstm-sunspots.toml", runs / "sunspots"), "sunspots.safetensors")
        model = SunspotLstm().eval()
        model.load_state_dict(params, strict=True)
        lines = (ROOT / "datasets/timeseries/monthly-sunspots.csv").read_text().splitlines()[1:]
        values = np.array([float(line.split(",")[1]) for line in lines])
        window = (values[2256 - 36:2256] - data["mean"]) / data["std"]
        x = torch.tensor(window, dtype=torch.float32).reshape(1, 36, 1)
        mask = torch.tensor([t // 3 for t in range(36)]).reshape(1, 36, 1)
        fixtures["sunspots"] = methods(model, x, 0, 12, mask, (3, 1), (3, 1), rng)
    (FIXTURES / "captum.json").write_text(json.dumps(fixtures))
    print(f"wrote {FIXTURES}/captum.json, digits.safetensors, sunspots.safetensors")


if __name__ == "__main__":
    main()
