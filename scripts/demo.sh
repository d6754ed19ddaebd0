#!/usr/bin/env bash
# The main job: installs what it needs, builds, starts a node (kv-host, workers, coordinator)
# on a small default model (generated when missing; CPU backend when there is no GPU), submits
# one job, prints the generated text and the throughput, and stops the node.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
BUILD_DIR=build scripts/build.sh
echo "demo: the end-to-end node is not built yet (coordinator and worker land with issue 4)"
