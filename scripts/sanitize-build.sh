#!/usr/bin/env bash
# Builds the helper, the unit tests and the libFuzzer targets with clang,
# AddressSanitizer and UndefinedBehaviorSanitizer into build-sanitize/ (or
# the directory given). Every sanitizer finding aborts (no recovery), and
# all code carries libFuzzer's coverage instrumentation, so the same build
# runs the unit tests (meson test --suite unit --suite helper) and the fuzz
# targets (--suite fuzz, or scripts/fuzz). The VFS module is not built here:
# it runs inside smbd, which is not sanitized.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
dir=${1:-build-sanitize}

flags="-fsanitize=fuzzer-no-link -fno-sanitize-recover=all -fno-omit-frame-pointer"
if [ ! -d "$dir/meson-private" ]; then
	CC=clang CXX=clang++ meson setup "$dir" -Dmodule=disabled -Dfuzzing=enabled \
		-Db_sanitize=address,undefined -Db_lundef=false \
		-Dc_args="$flags" -Dcpp_args="$flags" >/dev/null
fi
meson compile -C "$dir"
