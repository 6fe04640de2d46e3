# GPUs of two servers in one client (issue 19) on a one-GPU machine, sourced by
# tests/gpu/gpu-check (it uses check's RESULTS, OUTDIR, PORT, say): server a is
# gpu-check's own server (the GPU), server b a CPU stand-in server beside it
# (GPUWIRE_STANDIN_MACHINE=1: another machine's UUIDs), the client in
# tests/gpu/nogpu. No native run has both, so a case passes when it exits 0
# with its PASS line: the joined device list with a kernel on each (results
# checked), the CUDA runtime's copies between them staged through the client
# (every byte checked), host functions on both at once, mapped ranges of both
# in one process, and NVML (gpuwire smi) listing both. MIXED_ONLY=1 runs these
# alone (CHECK_ONLY does not reach them).
P2=$((PORT + 7))
GPUWIRE_STANDIN_MACHINE=1 python3 -m gpuwire server --listen 127.0.0.1:$P2 --driver standin \
    >"$OUTDIR/server-standin.log" 2>&1 &
MIXED_SERVER=$!
for _ in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/$P2) 2>/dev/null && break; sleep 0.2; done
BOTH=127.0.0.1:$PORT,127.0.0.1:$P2
mixed() { # name, PASS-line pattern, command...
    local name=$1 want=$2; shift 2
    local out=$OUTDIR/$name.gpuwire.txt
    timeout 300 "$ROOT/tests/gpu/nogpu" python3 -m gpuwire run --server "$BOTH" \
        --stats "$OUTDIR/$name.stats.json" -- "$@" >"$out" 2>&1
    local rc=$? v=FAIL
    [ $rc = 0 ] && grep -qE "$want" "$out" && v=pass
    RESULTS+=("$(printf '%-28s %-11s %6s  %s' "$name" $v - "GPU server + stand-in server, through gpuwire")")
    say "$name: $v (exit $rc)"
    [ $v = pass ] || { echo "--- $name:"; tail -15 "$out"; } >>"$LOG"
}
mixed mixed_list '^PASS multi_device' build/programs/multi_device list
mixed mixed_peers '^PASS multi_device' build/programs/multi_device peers
mixed mixed_runtime '^PASS multi_device_rt' build/programs/multi_device_rt_shared
mixed mixed_host_calls '^PASS link_host_calls' build/programs/link_host_calls two 0 1
mixed mixed_mapped '^PASS mapped_memory' build/programs/mapped_memory_shared two 1
# NVML over both: the GPU's row and the stand-in's, a's first
out=$OUTDIR/mixed_smi.txt
timeout 120 "$ROOT/tests/gpu/nogpu" python3 -m gpuwire smi --json --server "$BOTH" >"$out" 2>"$OUTDIR/mixed_smi.err"
v=$(python3 -c "
import json, sys
g = json.load(open(sys.argv[1]))['nvml']['gpus']
print('pass' if len(g) == 2 and 'stand-in' not in g[0]['name'] and 'stand-in' in g[1]['name'] else 'FAIL')
" "$out" 2>/dev/null || echo FAIL)
RESULTS+=("$(printf '%-28s %-11s %6s  %s' mixed_smi "$v" - "gpuwire smi over the GPU server and the stand-in")")
say "mixed_smi: $v"
kill $MIXED_SERVER 2>/dev/null
