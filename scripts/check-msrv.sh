#!/usr/bin/env bash
# The declared MSRV (workspace rust-version) against what the locked
# dependencies need: fails when a normal or build dependency of any
# workspace crate, for this host, declares a newer rust-version (or uses
# edition 2024, which needs 1.85). No second toolchain can be installed
# here, so this is the check: our own code is held to the same version by
# clippy's incompatible_msrv lint, which reads rust-version (CI runs clippy
# with -D warnings). Dev-dependencies (tests only) are reported, not enforced.
set -euo pipefail
cd "$(dirname "$0")/.."
tree() {
  cargo tree --workspace --locked -e "$1" --prefix none --format "{p}" | sed 's/ (.*//' | sort -u
}
cargo metadata --format-version 1 --locked >"${TMPDIR:-/tmp}/edgespec-metadata.json"
python3 - "${TMPDIR:-/tmp}/edgespec-metadata.json" <(tree normal,build) <(tree dev) <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
normal = {l.strip() for l in open(sys.argv[2]) if l.strip()}
dev = {l.strip() for l in open(sys.argv[3]) if l.strip()} - normal
def version(text):
    # 1.85 and 1.85.0 are the same version.
    parts = [int(x) for x in text.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))
declared = None
needs = {}
for p in meta["packages"]:
    key = f"{p['name']} v{p['version']}"
    if p["id"] in meta["workspace_members"]:
        declared = p.get("rust_version") or declared
        continue
    rv = p.get("rust_version") or ("1.85" if p.get("edition") == "2024" else None)
    if rv:
        needs[key] = rv
def newest(keys):
    found = [(version(needs[k]), needs[k], k) for k in keys if k in needs]
    return max(found) if found else ((0,), "any", "nothing")
_, build_rv, build_pkg = newest(normal)
_, test_rv, test_pkg = newest(dev)
print(f"declared MSRV {declared}; building needs {build_rv} ({build_pkg}); tests need {test_rv} ({test_pkg})")
if declared is None or version(build_rv) > version(declared):
    sys.exit(f"error: the workspace declares rust-version {declared}, but {build_pkg} needs {build_rv}")
PY
