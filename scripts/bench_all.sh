#!/usr/bin/env bash
# Every shipped benchmark config beside PyTorch on the same model, batch, optimizer (and
# clipping): `dlcli bench` and scripts/torch_train_bench.py alternated ROUNDS times each (3 by
# default), the load average read before each pair, then a markdown table of the medians and
# the median of the per-round ratios (dlcli / torch; above 1 is dlcli faster). Build first:
#   cargo build --release -p dlcli
#   PYTHON=/root/torchenv/bin/python3 scripts/bench_all.sh [ROUNDS] [cpu|gpu]
# (STEPS=N timed steps per run, 50 by default; ONLY="cnn vit-mnist" runs those configs.)
# ROUNDS x 6 configs x 2 programs run in turn, nothing else should: PyTorch's OpenMP threads
# slow down tenfold when another process takes a core (../shared/notes/pytorch-cpu-reference.md).
# Before each run the script waits until the CPUs are idle (at least 95% over 2 s, from
# /proc/stat: the 1-minute load average lags a minute behind the previous run) and records
# the idle share and the load average beside the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-3}"
device="${2:-cpu}"
python="${PYTHON:-python3}"
dlcli="${DLCLI:-target/release/dlcli}"
torch_device=$([ "$device" = gpu ] && echo cuda || echo cpu)
steps="${STEPS:-50}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"

# config, the torch script's model, its learning rate and clipping (as the config's [train]).
pairs=(
    "cnn cnn 1e-3 -"
    "lstm-mnist lstm 1e-3 1.0"
    "gru-mnist gru 1e-3 1.0"
    "vit-mnist vit 1e-3 -"
    "char-lstm char-lstm 2e-3 1.0"
    "gpt-char gpt-char 1e-3 1.0"
)
log=$(mktemp)

# The share of CPU time idle over 2 s, in percent.
idle_share() {
    local a b
    a=($(head -1 /proc/stat))
    sleep 2
    b=($(head -1 /proc/stat))
    local idle=$(( (b[4] + b[5]) - (a[4] + a[5]) )) total=0 i
    for i in $(seq 1 8); do total=$(( total + b[i] - a[i] )); done
    echo $(( 100 * idle / (total > 0 ? total : 1) ))
}

# Waits (up to 5 minutes) for the CPUs to be idle; prints the idle share it saw last.
wait_idle() {
    local idle
    for _ in $(seq 150); do
        idle=$(idle_share)
        [ "$idle" -ge 95 ] && break
    done
    echo "$idle"
}
for round in $(seq "$rounds"); do
    for pair in "${pairs[@]}"; do
        read -r config model lr clip <<<"$pair"
        # ONLY="cnn gpt-char" limits the run to those configs.
        [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $config "* ]] && continue
        clip_arg=()
        [ "$clip" != - ] && clip_arg=(--clip "$clip")
        idle=$(wait_idle)
        load=$(cut -d' ' -f1 /proc/loadavg)
        ours=$("$dlcli" bench --config "configs/$config.toml" --device "$device" --steps "$steps" --json | tail -1)
        idle_torch=$(wait_idle)
        theirs=$("$python" scripts/torch_train_bench.py --model "$model" --device "$torch_device" --steps "$steps" \
            --lr "$lr" "${clip_arg[@]}" | tail -1)
        echo "{\"round\": $round, \"config\": \"$config\", \"load\": $load, \"idle\": [$idle, $idle_torch], \"dlcli\": $ours, \"torch\": $theirs}" >>"$log"
        echo "round $round $config (load $load): dlcli $(echo "$ours" | grep -o '"train_samples_per_s":[0-9.]*'), torch $(echo "$theirs" | grep -o '"samples_per_s": [0-9.]*')" >&2
    done
done
"$python" - "$log" "$device" <<'EOF'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
configs = list(dict.fromkeys(r["config"] for r in rows))
print(f"| config ({sys.argv[2]}) | dlcli train samples/s | torch | ratio | dlcli eval samples/s (batch 1000) | torch | ratio | dlcli first step s | torch | idle % before (dlcli, torch) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for config in configs:
    runs = [r for r in rows if r["config"] == config]
    med = lambda f: statistics.median(f(r) for r in runs)
    train = (med(lambda r: r["dlcli"]["train_samples_per_s"]), med(lambda r: r["torch"]["samples_per_s"]))
    train_ratio = med(lambda r: r["dlcli"]["train_samples_per_s"] / r["torch"]["samples_per_s"])
    evals = (med(lambda r: r["dlcli"]["eval_samples_per_s"]), med(lambda r: r["torch"]["eval_samples_per_s"]))
    eval_ratio = med(lambda r: r["dlcli"]["eval_samples_per_s"] / r["torch"]["eval_samples_per_s"])
    first = (med(lambda r: r["dlcli"]["first_step_s"]), med(lambda r: r["torch"]["first_step_s"]))
    loads = "; ".join(f'{r["idle"][0]}, {r["idle"][1]}' for r in runs)
    print(f"| {config} | {train[0]:.0f} | {train[1]:.0f} | {train_ratio:.2f}x | {evals[0]:.0f} | {evals[1]:.0f} | "
          f"{eval_ratio:.2f}x | {first[0]:.3f} | {first[1]:.3f} | {loads} |")
EOF
