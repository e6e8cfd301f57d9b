#!/usr/bin/env bash
# Usage: scripts/compare_runs.sh BEFORE AFTER [CONFIG...]
#
# Runs every shipped config (or the ones named) through two dlcli binaries on the CPU and
# says whether they print and write the same numbers: a refactor's check that no behaviour
# changed. Each config trains one epoch (a character model's epoch is its 200 steps of
# `windows`), then `eval` (text and --json), `predict`, `generate` (language models) and
# `explain --method integrated_gradients` run on the run it wrote. Compared: everything each
# command prints, metrics.jsonl, the config the run keeps and best.safetensors (its header
# parsed, its tensors byte for byte);
# only timings (samples/s, seconds, characters/s) and the run directories' own paths are
# masked. Prints one line per config, and the differences of any that differ; exits 1 if any
# does.
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 2 ] || { sed -n '2,13p' "$0"; exit 2; }
before=$(realpath "$1")
after=$(realpath "$2")
shift 2
configs=("$@")
[ ${#configs[@]} -gt 0 ] || configs=(configs/*.toml)

work=$(mktemp -d /tmp/compare-runs.XXXXXX)
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT

# Timings and the two sides' own directories read the same once masked.
mask() {
    sed -E -e "s#$work/(before|after)#SIDE#g" \
        -e 's/[0-9][0-9.]*(e[-+]?[0-9]+)? (samples|characters|positions)\/s/N \2\/s/g' \
        -e 's/"(samples_per_s|seconds|first_step_s)":[-0-9.e+]+/"\1":N/g'
}

# Every command of one config with one binary, into $work/SIDE/NAME.
exercise() {
    local bin=$1 side=$2 config=$3
    local name
    name=$(basename "$config" .toml)
    local out="$work/$side/$name"
    mkdir -p "$out"
    local run="$out/run"
    {
        "$bin" train --config "$config" --epochs 1 --device cpu --quiet --runs-dir "$out" --run run 2>&1
        "$bin" eval --run "$run" --device cpu 2>&1
        "$bin" eval --run "$run" --device cpu --json 2>&1
        if grep -q '^kind = "text"' "$config"; then
            "$bin" predict --run "$run" --device cpu --text "ROMEO:" 2>&1
            "$bin" generate --run "$run" --device cpu --prompt "ROMEO:" --tokens 60 --temperature 0.8 2>&1
            "$bin" explain --run "$run" --device cpu --method integrated_gradients --text "ROMEO: What" \
                --steps 8 --out "$out/ig.png" 2>&1
        else
            "$bin" predict --run "$run" --device cpu --index 3 --json 2>&1
            "$bin" explain --run "$run" --device cpu --method integrated_gradients --index 3 --steps 8 \
                --out "$out/ig.png" 2>&1
        fi
    } | mask > "$out/printed.txt" || true
    mask < "$run/metrics.jsonl" > "$out/metrics.jsonl"
    mask < "$run/config.toml" > "$out/config.toml"
    mask < "$out/ig.json" > "$out/ig-sidecar.json" 2>/dev/null || true
    # The header's keys come in no fixed order: compare it parsed, and the tensors' bytes.
    python3 - "$run/best.safetensors" "$out" <<'PY'
import json, struct, sys
data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
open(sys.argv[2] + "/best-header.json", "w").write(json.dumps(json.loads(data[8:8 + n]), sort_keys=True, indent=1))
open(sys.argv[2] + "/best-tensors.bin", "wb").write(data[8 + n:])
PY
    sed -i -E "s#$work/(before|after)#SIDE#g" "$out/best-header.json"
    rm -rf "$run" "$out/ig.json"
}

differ=0
for config in "${configs[@]}"; do
    name=$(basename "$config" .toml)
    exercise "$before" before "$config"
    exercise "$after" after "$config"
    if diff -r "$work/before/$name" "$work/after/$name" > "$work/$name.diff"; then
        echo "$name: the same ($(wc -l < "$work/before/$name/printed.txt") lines printed, metrics, config, best.safetensors)"
    else
        echo "$name: DIFFERS"
        cut -c1-300 "$work/$name.diff" | head -40
        differ=1
    fi
done
exit $differ
