"""torch_startup: `import torch` plus the first CUDA tensor (and one synchronize), timed.

Through gpuwire, its round-trip count (from GPUWIRE_STATS) is the number to watch."""

import time

t0 = time.perf_counter()
import torch  # noqa: E402  (the import is what is measured)

t1 = time.perf_counter()

from benchlib import emit, parser, sync  # noqa: E402

args = parser(__doc__).parse_args()
x = torch.zeros(1, device=args.device)
sync(torch, args.device)
t2 = time.perf_counter()
emit("torch_startup", import_s=round(t1 - t0, 4), first_tensor_s=round(t2 - t1, 4),
     total_s=round(t2 - t0, 4), torch=torch.__version__)
