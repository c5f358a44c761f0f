"""Two builds of one model kernel by kernel: which kernels a schedule change made faster or slower.

Loads both exported libraries (``.so`` files from the build cache, e.g. copied aside before a change) in
this process and, in ``--rounds`` alternating rounds, times every kernel call of each over 10 inferences
(the VM's call-by-call timing, :func:`explorer.tvm.runtime.kernel_calls_s`) and the whole inference over
20. Prints the median sum of the kernels and the median inference of each build with their ratio (B / A),
then the kernels whose median changed most either way. Alternating rounds pair the two builds' figures
seconds apart: on a shared machine the latency of memory-heavy builds drifts up to 2x over minutes.

Builds are the ``.so`` files under the cache's ``builds/`` folder (``explorer run M --strategy S`` makes
one; copy it aside before changing a schedule, build again after):

    TVM_NUM_THREADS=2 python benchmarks/kernels_ab.py yolo-block /tmp/before.so AFTER.so [--rounds 6] [--top 8]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from explorer.model.prepare import prepare  # noqa: E402
from explorer.sweep.reference import reference  # noqa: E402
from explorer.tvm.runtime import kernel_calls_s, load_vm  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="a zoo model or .onnx file (its check input is what runs)")
    ap.add_argument("a", help="the first build's library (.so)")
    ap.add_argument("b", help="the second build's library (.so)")
    ap.add_argument("--rounds", type=int, default=6, help="alternating rounds (default 6)")
    ap.add_argument("--top", type=int, default=8, help="kernels to list each way (default 8)")
    args = ap.parse_args()
    ref = reference(prepare(args.model))
    builds = []
    for library in (args.a, args.b):
        tvm, machine = load_vm(Path(library))
        inputs = [tvm.runtime.tensor(x) for x in ref.inputs]
        for _ in range(10):  # warm: first touches, the thread pool
            machine["main"](*inputs)
        builds.append((machine, inputs))
    kernels = [defaultdict(list) for _ in builds]
    sums, whole = [[] for _ in builds], [[] for _ in builds]
    for _ in range(args.rounds):
        for i, (machine, inputs) in enumerate(builds):
            calls = kernel_calls_s(machine, inputs, 10)
            sums[i].append(sum(s for _, s in calls))
            for position, (name, seconds) in enumerate(calls):
                kernels[i][(position, name)].append(seconds)
            start = time.perf_counter()
            for _ in range(20):
                machine["main"](*inputs)
            whole[i].append((time.perf_counter() - start) / 20)
    a_sum, b_sum = (np.median(s) * 1e6 for s in sums)
    a_run, b_run = (np.median(w) * 1e6 for w in whole)
    print(f"kernels' sum: A {a_sum:.0f} us, B {b_sum:.0f} us, B / A {b_sum / a_sum:.3f}")
    print(f"inference:    A {a_run:.0f} us, B {b_run:.0f} us, B / A {b_run / a_run:.3f}")
    changes = sorted(((np.median(kernels[1][key]) - np.median(times), key, np.median(times), np.median(kernels[1][key]))
                      for key, times in kernels[0].items() if key in kernels[1]))
    print(f"{'A us':>9} {'B us':>9}  B / A  kernel (call position)")
    for _, (position, name), a, b in changes[:args.top] + changes[-args.top:]:
        print(f"{a * 1e6:9.1f} {b * 1e6:9.1f}  {b / a:5.2f}  {name} ({position})")


if __name__ == "__main__":
    main()
