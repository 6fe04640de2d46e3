# Several GPUs of one server (issue 19), sourced by tests/gpu/gpu-check after its
# other cases (it uses gpu-check's check, say, remote, RESULTS, OUTDIR, PORT): on a
# machine with two GPUs or more, tests/programs/multi_device natively and through
# gpuwire (enumeration; a mask in index and UUID form ending at a bad entry, in PCI
# order; devices 0 and 1: memory and pointer attributes, peer access and its errors,
# peer copies with the bytes checked), the same through the CUDA runtime
# (multi_device_rt), and a lease on GPU 1 against the driver's own
# CUDA_VISIBLE_DEVICES=1. On one GPU it records that it did not run.
NGPU=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')
if [ "${NGPU:-0}" -lt 2 ]; then
    RESULTS+=("$(printf '%-28s %-11s %6s  %s' multi_gpu skipped - "one GPU here ($NGPU): needs two")")
    say "multi_gpu: skipped ($NGPU GPU)"
else
    check multi_device_list build/programs/multi_device list
    check multi_device_list_pci env CUDA_DEVICE_ORDER=PCI_BUS_ID build/programs/multi_device list
    UUID1=$(nvidia-smi --query-gpu=uuid --format=csv,noheader -i 1 2>/dev/null)
    check multi_device_mask env CUDA_DEVICE_ORDER=PCI_BUS_ID "CUDA_VISIBLE_DEVICES=$UUID1,0,99,1" \
        build/programs/multi_device list
    check multi_device_peers build/programs/multi_device peers
    check multi_device_rt build/programs/multi_device_rt_shared
    # --gpu 1 must show what the driver shows with CUDA_VISIBLE_DEVICES=1 (the server's order)
    nat=$OUTDIR/multi_device_lease1.native.txt rem=$OUTDIR/multi_device_lease1.gpuwire.txt
    CUDA_VISIBLE_DEVICES=1 timeout 120 build/programs/multi_device list >"$nat" 2>&1
    STATS=/dev/null GPUWIRE_GPU=1 remote build/programs/multi_device list >"$rem" 2>&1
    v=FAIL; diff <(grep -v '^gpuwire:' "$nat") <(grep -v '^gpuwire:' "$rem") >"$OUTDIR/multi_device_lease1.diff" && v=pass
    RESULTS+=("$(printf '%-28s %-11s %6s  %s' multi_device_lease1 $v - "--gpu 1 vs CUDA_VISIBLE_DEVICES=1")")
    say "multi_device_lease1: $v"
fi
