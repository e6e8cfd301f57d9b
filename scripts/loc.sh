#!/usr/bin/env bash
# Lines of Rust per crate (its sources, with their own #[cfg(test)] tests, and its tests/ and
# examples/; all lines, and code lines: not blank, not a comment), of WGSL, and the largest
# files. The README's size figures come from it.
#   scripts/loc.sh [TOP]      (TOP largest files, 12 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
top="${1:-12}"

# Code lines: not blank and not a comment line.
code() { cat "$@" 2>/dev/null | grep -cvE '^\s*($|//)' || true; }
lines() { cat "$@" 2>/dev/null | wc -l; }

printf '%-10s %7s %7s %7s %7s\n' crate src code tests code
for dir in crates/*/; do
    name=$(basename "$dir")
    mapfile -t src < <(find "$dir/src" -name '*.rs' | sort)
    mapfile -t tests < <(find "$dir/tests" "$dir/examples" -name '*.rs' 2>/dev/null | sort)
    printf '%-10s %7d %7d %7d %7d\n' "$name" "$(lines "${src[@]}")" "$(code "${src[@]}")" \
        "$(lines "${tests[@]}")" "$(code "${tests[@]}")"
done
mapfile -t shaders < <(find shaders -name '*.wgsl' | sort)
printf '%-10s %7d %7d\n' shaders "$(lines "${shaders[@]}")" "$(code "${shaders[@]}")"
echo
echo "largest files (lines):"
find crates shaders -name '*.rs' -o -name '*.wgsl' | xargs wc -l | grep -v ' total$' | sort -rn | head -n "$top"
