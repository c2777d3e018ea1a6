#!/usr/bin/env bash
# Prepares .device/ (git-ignored) for tools/gpu-check on a GPU machine that has
# no Node.js. Run it here after `pnpm build`; carry `.device` to the machine.
#
#   .device/node.xz          this machine's node, stripped, xz -9 (~25 MB)
#   .device/runtime.tar.xz   what the tests need beyond the tracked tree: node_modules
#                            without the dev-only tools (turbo, typescript: nothing runs
#                            them there), the per-package node_modules links, and every
#                            package's compiled dist/ (tests and benchmarks included)
#   .device/manifest.txt     node version, the glibc it needs, git commit, sizes
#
# tools/gpu-check unpacks them with xz where the machine has it, else with Python's
# lzma/tarfile (the formats stay .xz: both read them).
#
# Native libraries are not packed: gpu-check builds them on the machine (its glibc
# may be older than this one's, and the CUDA library is built for its card).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=.device
mkdir -p "$out"

node_bin=$(readlink -f "$(command -v node)")
node_version=$(node --version)
if [[ -f $out/node.xz && -f $out/manifest.txt ]] && grep -qx "node $node_version" "$out/manifest.txt"; then
  echo "pack-node: $out/node.xz already holds node $node_version"
else
  tmp=$(mktemp)
  cp "$node_bin" "$tmp"
  strip "$tmp"
  echo "pack-node: node $node_version: $(stat -c %s "$node_bin") bytes, stripped $(stat -c %s "$tmp"), compressing (xz -9)..."
  xz -9 -T2 -c "$tmp" > "$out/node.xz.part"
  mv "$out/node.xz.part" "$out/node.xz"
  rm -f "$tmp"
fi

# every workspace package (pnpm-workspace.yaml globs, e.g. packages/*, examples/*, tools/testing)
pkgs=()
while IFS= read -r glob; do
  for d in $glob; do [[ -f $d/package.json ]] && pkgs+=("${d%/}"); done
done < <(sed -n 's/^ *- *["'"'"']\{0,1\}\([^"'"'"']*\)["'"'"']\{0,1\} *$/\1/p' pnpm-workspace.yaml)

missing=()
for p in "${pkgs[@]}"; do
  [[ -f $p/tsconfig.json && ! -d $p/dist ]] && missing+=("$p")
done
if ((${#missing[@]})); then
  echo "pack-node: no dist/ in ${missing[*]}: run \`pnpm build\` first" >&2
  exit 1
fi

# Dev-only tools are left out; everything else the compiled code and ava import goes.
paths=(node_modules)
for p in "${pkgs[@]}"; do
  for d in "$p/node_modules" "$p/dist"; do [[ -e $d ]] && paths+=("$d"); done
done
tar --create --file - \
  --exclude='node_modules/.pnpm/typescript@*' \
  --exclude='node_modules/.pnpm/turbo@*' \
  --exclude='node_modules/.pnpm/@turbo+*' \
  --exclude='node_modules/.pnpm/@types+*' \
  --exclude='node_modules/.cache' \
  --exclude='*.tsbuildinfo' \
  --exclude='*.map' \
  "${paths[@]}" | xz -6 -T2 > "$out/runtime.tar.xz.part"
mv "$out/runtime.tar.xz.part" "$out/runtime.tar.xz"

# the newest glibc symbol version the carried node refers to (the machine's glibc must be >= it)
node_glibc=$(grep -ao 'GLIBC_2\.[0-9]*' "$node_bin" | sort -uV | tail -1)

tree_bytes=$(git ls-files -co --exclude-standard -z | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
node_bytes=$(stat -c %s "$out/node.xz")
rt_bytes=$(stat -c %s "$out/runtime.tar.xz")
total=$((tree_bytes + node_bytes + rt_bytes))
{
  echo "node $node_version"
  echo "node needs ${node_glibc:-an unknown glibc} (or newer)"
  echo "commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
  echo "node.xz $node_bytes"
  echo "runtime.tar.xz $rt_bytes"
  echo "tree $tree_bytes"
  echo "total $total"
} > "$out/manifest.txt"
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "pack-node: node.xz $(mib "$node_bytes"), runtime.tar.xz $(mib "$rt_bytes"), tracked tree $(mib "$tree_bytes"): $(mib "$total") to carry (limit 64 MiB)"
if ((total > 64 * 1048576)); then
  echo "pack-node: over the 64 MiB a device run carries" >&2
  exit 1
fi
