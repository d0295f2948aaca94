#!/usr/bin/env bash
# Runs each fuzz target for SECONDS (default 30), or only the TARGETs named, one after the
# other, and prints each one's executions and executions per second:
#
#     fuzz/run.sh [SECONDS] [TARGET...]
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`). A run fails on a
# crash or a panic, on an input that takes over 10 s (a hang), on any single allocation over
# 64 MiB and on a resident size over 1 GiB: the targets read at most a few kilobytes under a
# 256 MiB frame limit, so anything near that limit is memory spent on what was announced, not
# on what arrived. Failing inputs land in fuzz/artifacts/TARGET/; the corpus grows in
# fuzz/corpus/TARGET/ and each run starts from it (and from a seed the crate encodes).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build
mkdir -p fuzz/logs
failed=()
for target in "${targets[@]}"; do
    log=fuzz/logs/$target.log
    if MULTIPROC_FUZZ_SEEDS=fuzz/corpus/$target cargo +nightly fuzz run "$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=1024 -malloc_limit_mb=64 \
        -print_final_stats=1 >"$log" 2>&1; then
        outcome=ok
    else
        outcome=FAILED
        failed+=("$target")
        tail -n 40 "$log"
    fi
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    printf '%-18s %-6s %12s executions %9s/s\n' "$target" "$outcome" "${runs:-?}" "${rate:-?}"
done

if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz targets that failed: ${failed[*]} (inputs in fuzz/artifacts/, logs in fuzz/logs/)"
    exit 1
fi
