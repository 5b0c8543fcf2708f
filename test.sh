#!/usr/bin/env bash
# Runs every test the project has (see README).
set -euo pipefail
cd "$(dirname "$0")"
cargo test --workspace --all-targets
