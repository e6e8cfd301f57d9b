#!/usr/bin/env bash
# Rewrites the README's key tables (between the config-keys markers) from the declarations in
# crates/dlcli/src/config.rs, as `dlcli config defaults --markdown` writes them. The test
# the_readme_key_tables_are_the_declarations fails until this has been run after a key changes.
set -euo pipefail
cd "$(dirname "$0")/.."
tables=$(mktemp)
cargo run --quiet -p dlcli -- config defaults --markdown >"$tables"
awk -v tables="$tables" '
    /<!-- config-keys:start/ { print; while ((getline line < tables) > 0) print line; skip = 1; next }
    /<!-- config-keys:end/ { skip = 0 }
    !skip { print }
' README.md >README.md.new
mv README.md.new README.md
rm "$tables"
echo "README.md: key tables rewritten"
