"""What a one-off call costs: `import latentops` after `import torch`, and the first call of each op
(forward and backward, small inputs) next to the same call warm, each in a fresh process. A
notebook or a CLI run pays the first call; a training loop pays the warm one."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from harness import Case, Row

# Run in a fresh interpreter: prints {"what": [first_s, warm_s], ...} as JSON.
_PROBE = r"""
import json, time
t0 = time.perf_counter(); import torch; t1 = time.perf_counter(); import latentops; t2 = time.perf_counter()
times = {"import torch": [t1 - t0, None], "import latentops (after torch)": [t2 - t1, None]}
gen = torch.Generator().manual_seed(0)
z = torch.randn(4096, 64, generator=gen, requires_grad=True)
c = torch.randn(256, 64, generator=gen, requires_grad=True)
labels = torch.randint(0, 10, (512,), generator=gen)
x = torch.randn(200_000, 64, generator=gen)
calls = {
    "nearest_centroid fwd+bwd, 4096x64 into 256": lambda: latentops.nearest_centroid(z, c)[1].sum().backward(),
    "soft_quantize fwd+bwd, 4096x64, K=256": lambda: latentops.soft_quantize(z, c, 0.1).sum().backward(),
    "graph_smoothness fwd+bwd, n=512, d=64, k=10": lambda: latentops.graph_smoothness(
        z[:512], labels, k=10, num_classes=10).backward(),
    "kmeans 200,000x64 into 256, 20 iterations": lambda: latentops.kmeans(x, 256, iters=20, tol=0.0, seed=0),
}
for name, call in calls.items():
    spent = []
    for _ in range(2):
        start = time.perf_counter(); call(); spent.append(time.perf_counter() - start)
    times[name] = spent
print(json.dumps(times))
"""


def startup_case(device: str) -> Case:
    """Rows in seconds (first, warm, first − warm) as notes; the CPU only (a GPU's first call also
    compiles the Triton kernels, which their cache keeps for later processes)."""
    case = Case("start-up: import, first call and warm call (fresh process, CPU)", 0.0, [])
    print(case.title, flush=True)
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, env=env, check=True)
    for name, (first, warm) in json.loads(out.stdout.strip().splitlines()[-1]).items():
        note = "" if warm is None else f"warm {warm * 1e3:.1f} ms, first − warm {(first - warm) * 1e3:.0f} ms"
        case.add(Row(name, first * 1e3, None, None, note))
        print(f"  {name:52s} {first * 1e3:10.1f} ms  {note}", flush=True)
    return case
