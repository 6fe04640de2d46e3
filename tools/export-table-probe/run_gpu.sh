#!/bin/sh
# On the GPU machine: the real driver's tables, then the probe programs with
# real cudart + real driver + gpuwire's export tables (passthru libcuda).
set -u
cd "$(dirname "$0")"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null
echo "== real_tables"; ./build/real_tables
for p in probe_shared probe_static; do
    echo "== $p (passthru)"
    LD_LIBRARY_PATH="$PWD/build/passthru:$PWD/build/cudart" GPUWIRE_DEBUG=2 "./build/$p"
done
L=/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib:/usr/lib/x86_64-linux-gnu
echo "== libs_probe (passthru)"
LD_LIBRARY_PATH="$PWD/build/passthru:$PWD/build/cudart:$L" GPUWIRE_DEBUG=2 ./build/libs_probe
