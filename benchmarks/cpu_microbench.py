"""Microbenchmarks of this machine's CPU: the figures a ``[core]`` table of a CPU target file needs.

Each figure is measured with a kernel TVM builds for this host (``llvm -mcpu=<host>``) and timed with
TVM's own timer, the way the explorer's builds run:

* **FMA rate** at 1, 8 and 16 fp32 lanes with 12 independent accumulators (throughput), and with one
  scalar accumulator (latency): ``clock_hz = fma_latency_cycles x dependent FMAs per second``, with the
  FMA latency the vendor's optimization guide gives (``--fma-latency``, 4 on Zen 4 / Zen 5 / Cascade
  Lake). Lanes per cycle at each width then give the FMA pipes and their width.
* **fp32 add rate** (16 lanes, 12 accumulators): the ``alu`` pipes.
* **fp16 and bf16 FMA rate** (16 lanes, 12 accumulators): cycles per element of arithmetic in a dtype
  the core has no arithmetic for (``emulated_cycles`` where LLVM converts around every operation).
* **Widened FMAs**: the inner loop of a convolution or matmul in fp16 or bf16 into fp32 accumulators,
  one weight broadcast and widened per vector FMA into 8 accumulators, one activation vector widened
  per 8 FMAs; cycles per FMA at 8 and 16 lanes beside fp32's (nothing to widen). Where the widening
  bounds it, ``lanes x 32 / cycles`` is the bits of widened result the core's ``convert`` pipes give a
  cycle; float8 E4M3, which LLVM decodes with integer bit operations, gives ``float8_widen_cycles``
  (cycles per FMA, each widening one broadcast weight).
* **Dot products**: ``VPDPBUSD`` (64 int8 MACs) and ``VDPBF16PS`` (32 bf16 MACs) over 12 independent
  accumulators, called as the explorer's tensor intrinsics call them: cycles per instruction, MACs and
  operand bits per cycle (the ``dot`` pipes).
* **Conversions**: a vector of fp32 (or int8) rounded into fp16 and stored, beside an fp32 copy (the
  stores' share), cycles per vector at 8 and 16 lanes.
* **special_cycles**: cycles per element of ``exp`` over a vectorized loop (LLVM calls libm per element).
* **Dependent chains**: an element-wise loop whose elements each go through 16 to 128 dependent FMAs:
  cycles per vector, and the vectors the core overlaps (chain latency over cycles). Not a target-file
  figure: it says whether an epilogue's chain (a SiLU: about 24 operations, 70 cycles of latency) is
  bound by its latency rather than its operations.
* **call_overhead_s**: one kernel call from TVM's Relax VM: a ``main`` of 200 calls of a 16-element kernel.
* **parallel_overhead_s**: what a ``parallel`` loop of 2 adds to such a call (the thread pool's fork/join).
* **read bandwidth** of a 512 MiB buffer (DRAM) and of a 256 KiB one (L2) on 1 and on 2 threads.

    python benchmarks/cpu_microbench.py [--threads 2] [--fma-latency 4]

It prints each figure and the ``[core]`` values it implies; the target file records them as measured
(``source = "benchmarks/cpu_microbench.py on <CPU>"``). Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cost_models.host import host_cpu  # noqa: E402

CHAINS = 12


def _build(func, mcpu: str):
    import tvm

    target = tvm.target.Target({"kind": "llvm", "mcpu": mcpu})
    return tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target)


def _seconds(lib, *args, number: int = 5, repeat: int = 7) -> float:
    """Fastest of ``repeat`` runs of ``number`` calls (the quietest moment of a noisy machine)."""
    import tvm

    mod = lib.mod if hasattr(lib, "mod") else lib
    return min(mod.time_evaluator("main", tvm.cpu(), number=number, repeat=repeat)(*args).results)


def _tensor(a):
    import tvm

    return tvm.runtime.tensor(a)


def fma_rate(lanes: int, chains: int, iters: int, mcpu: str, add_only: bool = False, dtype: str = "float32") -> float:
    """Multiply-adds (or adds) in ``dtype`` per second on one thread: ``chains`` accumulators of ``lanes``."""
    from tvm.script import tirx as T

    n = lanes * chains

    @T.prim_func
    def kernel(A: T.Buffer((n,), dtype), B: T.Buffer((lanes,), dtype), C: T.Buffer((lanes,), dtype)):
        T.func_attr({"tirx.noalias": True})
        acc = T.alloc_buffer((n,), dtype, scope="local")
        for k in T.unroll(chains):
            for v in T.vectorized(lanes):
                acc[k * lanes + v] = A[k * lanes + v]
        for i in range(iters):
            for k in T.unroll(chains):
                for v in T.vectorized(lanes):
                    if add_only:
                        acc[k * lanes + v] = acc[k * lanes + v] + B[v]
                    else:
                        acc[k * lanes + v] = acc[k * lanes + v] * B[v] + C[v]
        for k in T.unroll(chains):
            for v in T.vectorized(lanes):
                A[k * lanes + v] = acc[k * lanes + v]

    lib = _build(kernel, mcpu)
    args = [_typed(x, dtype) for x in (np.ones(n), np.full(lanes, 0.999), np.full(lanes, 1e-3))]
    return n * iters / _seconds(lib, *args)


def widened_fma_seconds(dtype: str, lanes: int, mcpu: str, chains: int = 8, iters: int = 20_000) -> float:
    """Seconds per vector FMA of ``acc[k] += float32(W[i, k]) * float32(X[i, :])`` over ``chains``
    accumulators of ``lanes``: each weight broadcast and widened per FMA, each activation vector widened
    once for the ``chains`` FMAs that share it, on one thread."""
    from tvm.script import tirx as T

    n = lanes * chains

    @T.prim_func
    def kernel(W: T.Buffer((iters * chains,), dtype), X: T.Buffer((iters * lanes,), dtype),
               C: T.Buffer((n,), "float32")):
        T.func_attr({"tirx.noalias": True})
        acc = T.alloc_buffer((n,), "float32", scope="local")
        for k in T.unroll(chains):
            for v in T.vectorized(lanes):
                acc[k * lanes + v] = T.float32(0)
        for i in range(iters):
            for k in T.unroll(chains):
                for v in T.vectorized(lanes):
                    acc[k * lanes + v] = acc[k * lanes + v] + \
                        T.Cast("float32", W[i * chains + k]) * T.Cast("float32", X[i * lanes + v])
        for k in T.unroll(chains):
            for v in T.vectorized(lanes):
                C[k * lanes + v] = acc[k * lanes + v]

    lib = _build(kernel, mcpu)
    inputs = [_typed(np.zeros(iters * chains), dtype), _typed(np.zeros(iters * lanes), dtype)]
    return _seconds(lib, *inputs, _tensor(np.zeros(n, "float32")), number=20) / (iters * chains)


def dot_seconds(instruction: str, mcpu: str, chains: int = CHAINS, iters: int = 20_000) -> float:
    """Seconds per dot-product instruction (``vnni``: VPDPBUSD, 64 int8 MACs; ``bf16``: VDPBF16PS, 32 bf16
    MACs) over ``chains`` independent accumulators of 16 lanes, called as the explorer's tensor
    intrinsics call them, on one thread."""
    from tvm.script import tirx as T

    from explorer.tvm.passes.bf16_dot import EXTERN, LLVM_IR

    acc_dtype = "int32" if instruction == "vnni" else "float32"
    operand, lanes = ("int8", 64) if instruction == "vnni" else ("uint16", 32)  # one 512-bit operand vector
    n = 16 * chains

    def dot(acc, a, b):
        if instruction == "vnni":
            return T.call_llvm_pure_intrin("int32x16", "llvm.x86.avx512.vpdpbusd.512", acc,
                                           T.reinterpret("uint8x64", a), b)
        return T.call_pure_extern("float32x16", EXTERN, acc, a, b)

    @T.prim_func
    def kernel(A: T.Buffer((64,), "int32"), B: T.Buffer((chains * lanes,), operand),
               C: T.Buffer((n,), acc_dtype)):
        T.func_attr({"tirx.noalias": True})
        acc = T.alloc_buffer((n,), acc_dtype, scope="local")
        for k in T.unroll(chains):
            acc[T.ramp(k * 16, 1, 16)] = C[T.ramp(k * 16, 1, 16)]
        for i in T.serial(iters, annotations={"pragma_import_llvm": LLVM_IR}):
            for k in T.unroll(chains):
                acc[T.ramp(k * 16, 1, 16)] = dot(acc[T.ramp(k * 16, 1, 16)], T.broadcast(A[i % 64], 16),
                                                 B[T.ramp(k * lanes, 1, lanes)])
        for k in T.unroll(chains):
            C[T.ramp(k * 16, 1, 16)] = acc[T.ramp(k * 16, 1, 16)]

    lib = _build(kernel, mcpu)
    args = [_tensor(np.zeros(64, "int32")), _tensor(np.zeros(chains * lanes, operand)),
            _tensor(np.zeros(n, acc_dtype))]
    return _seconds(lib, *args, number=20) / (iters * chains)


def conversion_seconds(src: str, dst: str, lanes: int, mcpu: str, n: int = 4096, passes: int = 200) -> float:
    """Seconds per vector of ``lanes`` converted from ``src`` to ``dst`` and stored, over an L1-resident
    buffer, on one thread."""
    from tvm.script import tirx as T

    @T.prim_func
    def kernel(A: T.Buffer((n,), src), B: T.Buffer((n,), dst)):
        T.func_attr({"tirx.noalias": True})
        for _ in range(passes):
            for i in range(n // lanes):
                for v in T.vectorized(lanes):
                    B[i * lanes + v] = T.Cast(dst, A[i * lanes + v])

    lib = _build(kernel, mcpu)
    return _seconds(lib, _tensor(np.ones(n, src)), _tensor(np.zeros(n, dst))) / (n * passes / lanes)


def _typed(values: np.ndarray, dtype: str):
    """A device tensor of ``values`` in ``dtype`` (numpy has no bfloat16: its bits are fp32's upper halves)."""
    if dtype != "bfloat16":
        return _tensor(values.astype(dtype))
    return _tensor_bf16((values.astype("float32").view("uint32") >> 16).astype("uint16"))


def _tensor_bf16(bits: np.ndarray):
    import tvm

    t = tvm.runtime.empty(bits.shape, "bfloat16")
    t.copyfrom(bits)
    return t


#: Special functions timed beside exp, for a core's ``special_relative``.
SPECIAL_FUNCTIONS = ("erf", "tanh", "sigmoid", "log", "sqrt")


def special_seconds_per_element(mcpu: str, function: str = "exp", n: int = 1 << 16) -> float:
    """Seconds per element of a vectorized special ``function`` (``T.<function>``) over ``n`` fp32
    elements, on one thread."""
    from tvm.script import tirx as T

    fn = getattr(T, function)

    @T.prim_func
    def kernel(A: T.Buffer((n,), "float32"), B: T.Buffer((n,), "float32")):
        T.func_attr({"tirx.noalias": True})
        for i in range(n // 16):
            for v in T.vectorized(16):
                B[i * 16 + v] = fn(A[i * 16 + v])

    lib = _build(kernel, mcpu)
    x = np.abs(np.random.default_rng(0).standard_normal(n)).astype("float32") + np.float32(0.1)  # log, sqrt
    return _seconds(lib, _tensor(x), _tensor(np.zeros(n, "float32"))) / n


def chain_seconds_per_vector(depth: int, mcpu: str, n: int = 1 << 14) -> float:
    """Seconds per 16-lane vector of an element-wise loop whose every element goes through ``depth``
    dependent FMAs (``x * 0.999 + 0.001``), the elements independent of each other, on one thread: below
    some depth the FMAs' throughput bounds it, above it their latency over the vectors the core keeps
    in flight (an epilogue's SiLU is such a chain)."""
    import tvm
    from tvm import s_tir, te

    a = te.placeholder((n,), "float32", name="a")

    def element(i):
        x = a[i]
        for _ in range(depth):
            x = x * tvm.tirx.const(0.999, "float32") + tvm.tirx.const(1e-3, "float32")
        return x

    b = te.compute((n,), element, name="b")
    sch = s_tir.Schedule(te.create_prim_func([a, b]))
    (loop,) = sch.get_loops(sch.get_sblock("b"))
    sch.vectorize(sch.split(loop, factors=[None, 16])[1])
    lib = _build(sch.mod["main"], mcpu)
    return _seconds(lib, _tensor(np.ones(n, "float32")), _tensor(np.zeros(n, "float32"))) / (n // 16)


def gather_seconds_per_element(mcpu: str, dtype: str, n: int = 1 << 14) -> float:
    """Seconds per element of a 16-lane vector assembled from every other ``dtype`` element (TVM emits a
    strided vector load as one load and insert per lane), on one thread, from L1/L2."""
    from tvm.script import tirx as T

    @T.prim_func
    def kernel(A: T.Buffer((2 * n,), dtype), B: T.Buffer((n,), dtype)):
        T.func_attr({"tirx.noalias": True})
        for i in range(n // 16):
            for v in T.vectorized(16):
                B[i * 16 + v] = A[i * 32 + v * 2]

    lib = _build(kernel, mcpu)
    return _seconds(lib, _tensor(np.ones(2 * n, dtype)), _tensor(np.zeros(n, dtype)), number=50) / n


def read_bandwidth(nbytes: int, threads: int, mcpu: str, passes: int = 1) -> float:
    """Bytes per second a vectorized sum of an fp32 buffer of ``nbytes`` reads, on ``threads`` threads."""
    from tvm.script import tirx as T

    n = nbytes // 4
    per = n // threads

    @T.prim_func
    def kernel(A: T.Buffer((n,), "float32"), S: T.Buffer((threads * 16 * 8,), "float32")):
        T.func_attr({"tirx.noalias": True})
        for t in T.parallel(threads):
            acc = T.alloc_buffer((128,), "float32", scope="local")
            for v in T.vectorized(128):
                acc[v] = T.float32(0)
            for p in range(passes):
                for i in range(per // 128):
                    for v in T.vectorized(128):
                        acc[v] = acc[v] + A[t * per + i * 128 + v]
            for v in T.vectorized(128):
                S[t * 128 + v] = acc[v]

    lib = _build(kernel, mcpu)
    args = [_tensor(np.ones(n, "float32")), _tensor(np.zeros(threads * 128, "float32"))]
    return nbytes * passes / _seconds(lib, *args, number=1 if nbytes > 1 << 24 else 20)


def call_overheads(mcpu: str, calls: int = 200) -> tuple[float, float]:
    """Seconds per kernel call from the Relax VM, serial and with a parallel loop of 2 in the kernel."""
    import tvm
    from tvm import relax
    from tvm.script import tirx as T

    out = []
    for parallel in (False, True):
        @T.prim_func
        def tiny(A: T.Buffer((2, 8), "float32"), B: T.Buffer((2, 8), "float32")):
            T.func_attr({"tirx.noalias": True})
            for t in (T.parallel(2) if parallel else T.serial(2)):
                for v in T.vectorized(8):
                    B[t, v] = A[t, v] + T.float32(1)

        bb = relax.BlockBuilder()
        x = relax.Var("x", relax.TensorType((2, 8), "float32"))
        with bb.function("main", [x]):
            gv = bb.add_func(tiny.with_attr("global_symbol", "tiny"), "tiny")
            y = x  # outside a dataflow block: TVM's reshape detection needs TIR with blocks
            for _ in range(calls):
                y = bb.emit(relax.call_tir(gv, [y], relax.TensorType((2, 8), "float32")))
            bb.emit_func_output(y)
        from explorer.tvm.compile import vm_lower

        ex = tvm.compile(vm_lower(bb.get()), target=tvm.target.Target({"kind": "llvm", "mcpu": mcpu}),
                         relax_pipeline=None)
        vm = relax.VirtualMachine(ex, tvm.cpu())
        arg = _tensor(np.zeros((2, 8), "float32"))
        seconds = min(vm.time_evaluator("main", tvm.cpu(), number=20, repeat=7)(arg).results)
        out.append(seconds / calls)
    return out[0], out[1] - out[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="threads of the parallel measurements (default 2)")
    ap.add_argument("--fma-latency", type=int, default=4, help="FMA latency in cycles from the vendor's guide (default 4)")
    args = ap.parse_args()
    os.environ.setdefault("TVM_NUM_THREADS", str(args.threads))
    from explorer.tvm.llvm_host import host_llvm_cpu

    mcpu = host_llvm_cpu()
    model = host_cpu().model_name or platform.processor()
    print(f"# {model} (LLVM {mcpu}), TVM_NUM_THREADS={os.environ['TVM_NUM_THREADS']}, {time.strftime('%Y-%m-%d')}")
    chain = fma_rate(1, 1, 2_000_000, mcpu)
    clock = args.fma_latency * chain
    print(f"dependent scalar FMAs       {chain / 1e9:8.3f} G/s  -> clock_hz = {args.fma_latency} x that = {clock / 1e9:.2f} GHz")
    for lanes in (1, 8, 16):
        rate = fma_rate(lanes, CHAINS, 200_000, mcpu)
        print(f"fp32 FMA lanes, {lanes:2d} per op   {rate / 1e9:8.2f} G/s  = {rate / clock:5.1f} lanes/cycle")
    add = fma_rate(16, CHAINS, 200_000, mcpu, add_only=True)
    print(f"fp32 add lanes, 16 per op   {add / 1e9:8.2f} G/s  = {add / clock:5.1f} lanes/cycle")
    for dtype, lanes in (("float16", 16), ("float16", 32), ("bfloat16", 16)):  # 32 fp16 lanes: a zmm of AVX512-FP16
        try:
            rate = fma_rate(lanes, CHAINS, 20_000, mcpu, dtype=dtype)
            print(f"{dtype} FMA lanes, {lanes} per op {rate / 1e9:8.2f} G/s  = {clock / rate:.3f} cycles per element"
                  f" = {rate / clock:5.1f} lanes/cycle")
        except Exception as err:
            print(f"{dtype} FMA: not measured: {str(err).splitlines()[0][:80]}")
    for lanes in (8, 16):
        plain = widened_fma_seconds("float32", lanes, mcpu) * clock
        for dtype in ("float16", "bfloat16", "float8_e4m3fn"):
            cycles = widened_fma_seconds(dtype, lanes, mcpu) * clock
            print(f"{dtype} widened FMA, {lanes:2d} lanes {cycles:6.2f} cycles per FMA (fp32 {plain:.2f})"
                  f" = {lanes * 32 / cycles:4.0f} widened bits/cycle")
    for instruction, macs in (("vnni", 64), ("bf16", 32)):
        try:
            cycles = dot_seconds(instruction, mcpu) * clock
            print(f"{instruction:4s} dot product, {CHAINS} chains {cycles:6.2f} cycles per instruction"
                  f" = {macs / cycles:5.1f} MACs/cycle = {macs * (8 if instruction == 'vnni' else 16) / cycles:4.0f} operand bits/cycle")
        except Exception as err:
            print(f"{instruction} dot product: not measured: {str(err).splitlines()[0][:80]}")
    for lanes in (8, 16):
        copy = conversion_seconds("float32", "float32", lanes, mcpu) * clock
        for src in ("float32", "int8"):
            cycles = conversion_seconds(src, "float16", lanes, mcpu) * clock
            print(f"{src}->float16, {lanes:2d} lanes  {cycles:6.2f} cycles per vector (fp32 copy {copy:.2f})")
    exp = special_seconds_per_element(mcpu)
    print(f"exp per element             {exp * 1e9:8.2f} ns   = special_cycles {exp * clock:.1f}")
    for function in SPECIAL_FUNCTIONS:
        other = special_seconds_per_element(mcpu, function)
        print(f"{function:8s} per element        {other * 1e9:8.2f} ns   = special_relative {other / exp:.2f}")
    for depth in (16, 32, 64, 128):
        cycles = chain_seconds_per_vector(depth, mcpu) * clock
        in_flight = depth * args.fma_latency / cycles
        print(f"{depth:3d} dependent FMAs a vector {cycles:6.1f} cycles per vector = {in_flight:4.2f} vectors in flight"
              f" (FMA-bound: {depth})")
    for dtype in ("int8", "float32"):
        gather = gather_seconds_per_element(mcpu, dtype)
        print(f"{dtype:7s} lane-by-lane insert {gather * 1e9:8.3f} ns   = {gather * clock:.2f} cycles per element")
    serial, fork = call_overheads(mcpu)
    print(f"kernel call from the VM     {serial * 1e6:8.2f} us   = call_overhead_s {serial:.2e}")
    print(f"parallel loop's fork/join   {fork * 1e6:8.2f} us   = parallel_overhead_s {fork:.2e}")
    for label, nbytes, passes in (("DRAM (512 MiB)", 512 << 20, 1), ("L2 (256 KiB per thread)", 256 << 10, 200)):
        for threads in (1, args.threads):
            bw = read_bandwidth(nbytes * threads if passes > 1 else nbytes, threads, mcpu, passes)
            print(f"read {label:24s} {threads} thread(s) {bw / 1e9:8.1f} GB/s")


if __name__ == "__main__":
    main()
