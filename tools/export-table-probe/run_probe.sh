#!/bin/sh
# Run the probe programs against the fake driver; the full driver/export-table
# trace of each run lands in build/<name>.log, the program's output on stdout.
set -u
cd "$(dirname "$0")"
status=0
for p in probe_shared probe_static; do
    log="build/$p.log"
    rm -f "$log"
    echo "== $p"
    LD_LIBRARY_PATH="$PWD/build/lib:/usr/local/cuda/lib64" GPUWIRE_DEBUG=2 \
        FAKE_CUDA_LOG="$log" "./build/$p" 2>>"$log" || status=1
done
exit $status
