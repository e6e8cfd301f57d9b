#!/usr/bin/env bash
# The fuzz tests of `cargo test` run for longer: the config, checkpoint and data-reader
# generators, round after round of DLCLI_FUZZ_CASES cases each (a fresh random seed every
# round), until MINUTES have passed (default 30). Prints how many inputs were tried and stops
# at the first panic, whose minimal input proptest prints.
#   scripts/fuzz.sh 30
set -euo pipefail
cd "$(dirname "$0")/.."
minutes="${1:-30}"
cases="${DLCLI_FUZZ_CASES:-2000}"
export DLCLI_FUZZ_CASES="$cases" XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
cargo test --quiet -p dlcli --bin dlcli --no-run
cargo test --quiet -p graph --test checkpoint --no-run
cargo test --quiet -p data --test fuzz --no-run
end=$(( $(date +%s) + minutes * 60 ))
tried=0
rounds=0
log=$(mktemp)
declare -A per_reader
while [ "$(date +%s)" -lt "$end" ]; do
    for run in "-p dlcli --bin dlcli fuzz::" "-p graph --test checkpoint damaged_checkpoint" "-p data --test fuzz"; do
        # shellcheck disable=SC2086
        if ! cargo test --quiet $run -- --nocapture --test-threads=1 >"$log" 2>&1; then
            cat "$log"
            echo "fuzz: a panic after $tried inputs in $rounds rounds"
            exit 1
        fi
        # Each reader prints "fuzz NAME: N ..." (one test at a time, so lines never interleave);
        # the checkpoint property runs $cases cases.
        counted=0
        while read -r name n; do
            per_reader[$name]=$(( ${per_reader[$name]:-0} + n ))
            counted=$((counted + n))
        done < <({ grep -o 'fuzz [^:]*: [0-9]*' "$log" || true; } | sed 's/^fuzz //; s/: / /')
        case "$run" in *checkpoint*)
            per_reader[checkpoints]=$(( ${per_reader[checkpoints]:-0} + cases ))
            counted=$cases ;;
        esac
        tried=$((tried + counted))
    done
    rounds=$((rounds + 1))
    echo "round $rounds: $tried inputs so far, no panic"
done
for name in "${!per_reader[@]}"; do
    echo "  $name: ${per_reader[$name]} inputs"
done | sort
echo "fuzz: $tried inputs in $rounds rounds over $minutes minutes, no panic, abort or hang"
