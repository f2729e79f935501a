#!/usr/bin/env bash
# Builds target/debian/sockpulse_<version>_<arch>.deb: the binary, the
# systemd unit, the default config, the man page and shell completions
# (generated from the CLI definitions), dashboards and alert rules.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked
assets=target/assets
mkdir -p "$assets"
bin=target/release/sockpulse
"$bin" man | gzip -9n > "$assets/sockpulse.1.gz"
"$bin" completions bash > "$assets/sockpulse.bash"
"$bin" completions zsh > "$assets/_sockpulse"
"$bin" completions fish > "$assets/sockpulse.fish"
if ! command -v cargo-deb >/dev/null 2>&1; then
  echo "build-deb: cargo install cargo-deb"
  cargo install cargo-deb --locked --quiet
fi
rm -f target/debian/sockpulse_*.deb
cargo deb --no-build --locked --quiet
ls target/debian/sockpulse_*.deb
