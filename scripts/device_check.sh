#!/usr/bin/env bash
# Every GPU check and benchmark in one call on a lent GPU machine (which has no Rust toolchain).
#
# Here, once:   echo /.gl/ >> .git/info/exclude   and download the Vulkan loader .debs into .gl/
#               (see the device tool's README), then build what travels:
#                 cargo build --release -p kernels --example bench
#                 cargo build --release -p dlcli
#                 cargo test --release -p kernels --no-run   (prints the test binary's path)
#                 mkdir -p .bin && cp target/release/examples/bench target/release/dlcli <that test binary> .bin/
#               (echo /.bin/ >> .git/info/exclude)
# There:        bash scripts/device_check.sh      with carry = [".gl", ".bin"]
# It writes its logs under $OUT and prints a summary table last.
set -uo pipefail
out="${OUT:-/tmp/device_check}"
mkdir -p "$out"

for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
if [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
fi
export XDG_RUNTIME_DIR=/tmp

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv | tee "$out/gpu.txt"

tests=$(ls .bin/kernels-* 2>/dev/null | head -n 1)
echo "== kernel tests on the GPU ($tests)"
"$tests" 2>&1 | tee "$out/tests.txt" | tail -n 3

echo "== our kernels"
.bin/bench --large 2>&1 | tee "$out/bench.txt" | grep -v '^{'

echo "== torch.matmul, TF32 off"
python3 scripts/torch_matmul.py 2>&1 | tee "$out/torch.txt"

echo "== training and evaluation of every benchmark config on the GPU executor (dlcli bench) beside torch on cuda: scripts/bench_all.sh's pairs, one round"
DLCLI=.bin/dlcli PYTHON=python3 STEPS=50 bash scripts/bench_all.sh 1 gpu 2>&1 | tee "$out/configs.txt"
echo "== where the CNN's GPU step goes (dlcli bench --profile)"
.bin/dlcli bench --config configs/cnn.toml --device gpu --steps 20 --profile 2>&1 | tee "$out/profile.txt" | head -n 40

echo "== summary"
grep -h '"kernel":"matmul"\|"kernel": "torch.matmul"' "$out/bench.txt" "$out/torch.txt"
