"""torch_small_ops: a PyTorch eager loop of small elementwise ops on a 1024-element tensor
(x = x * 1.0001 and x = x + 0.0001 alternately: one kernel each), one synchronize at the end.
Reports microseconds per op (the final synchronize included)."""

import torch

from benchlib import emit, now, parser, sync

p = parser(__doc__)
p.add_argument("--ops", type=int, default=10000)
args = p.parse_args()
dev = args.device
ops = args.exact if args.exact >= 0 else args.ops
MIN_OPS = 1000

x = torch.ones(1024, device=dev)
for i in range(200):  # warm-up: kernels loaded, allocator primed
    x = x * 1.0001 if i % 2 == 0 else x + 0.0001
sync(torch, dev)

done = 0
t0 = now()
while done < ops:
    x = x * 1.0001 if done % 2 == 0 else x + 0.0001
    done += 1
    if args.exact < 0 and done % 500 == 0 and done >= MIN_OPS and now() - t0 > args.max_seconds:
        break
sync(torch, dev)
elapsed = now() - t0

if args.exact >= 0:
    emit("torch_small_ops", exact=done, seconds=elapsed)
else:
    emit("torch_small_ops", ops=done, us_per_op=elapsed / done * 1e6, seconds=elapsed,
         checksum=float(x.double().sum().item()), app_syncs_per_op=1 / done)
