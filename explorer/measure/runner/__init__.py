"""Measure this bundle's variants on this machine: ``python measure_runner.py --device cuda --out results.json``.

``explorer measure`` wrote this package (``runner/``, started by ``measure_runner.py``) beside ``manifest.json``, the compiled libraries (``libs/``) and a
runtime-only TVM (``python/tvm``: its Python files and ``libtvm_runtime*.so``, no compiler). It needs
Python, numpy and TVM's runtime only: TVM is imported with ``TVM_USE_RUNTIME_LIB=1`` from the bundle,
and apache-tvm-ffi from the bundled wheel for this Python (else the installed package). Nothing of the
explorer, onnx or onnxruntime is needed, nor PyTorch: NVML is read with nvidia-ml-py's ``pynvml``, which
the bundle carries beside TVM (``python/pynvml.py``), and the CUDA driver is reached with ctypes.

For every variant (``--variant ID`` picks some; shell patterns work):

1. its arrays: inputs from ``inputs/`` or regenerated from the seed as the explorer samples them;
   weights that were lifted out of the library regenerated with numpy (a zoo weight replayed exactly
   from the zoo's seed, anything else as seeded numbers with the weight's mean and spread);
2. one run (its time, and a summary of the outputs), ``--warmup`` runs;
3. latency: TVM's time evaluator (``--repeat`` repeats of as many inferences as last
   ``--min-repeat-ms``; on CUDA timed with CUDA events by TVM's CUDA timer);
4. per kernel call: ``vm.set_instrument`` around every call of ``--kernel-runs`` inferences (on CUDA
   the device is synchronised before and after each call), the median per call;
5. on CUDA, energy: NVML's total-energy counter (``nvmlDeviceGetTotalEnergyConsumption``) read around
   ``--energy-windows`` windows of at least ``--energy-window-s`` of back-to-back inferences (TVM's
   time evaluator drives them), and idle power measured the same way with the GPU idle (before the
   first variant, every ``--idle-every`` variants and after the last). Per inference: the total energy
   and the dynamic energy (total minus idle power times the window).

``results.json`` is rewritten after every variant, so what finished is kept if the run is stopped
(``--time-budget-s`` stops starting new variants).

``--ncu`` runs the chosen variants once each between ``cuProfilerStart`` and ``cuProfilerStop``, for
``ncu --profile-from-start off --metrics dram__bytes_read.sum,dram__bytes_write.sum --csv --print-units base
python measure_runner.py --ncu --variant ID``; it writes the order of the variant's kernel calls to
``--out``. ``--parse-ncu CSV --calls JSON`` turns ncu's CSV into bytes per kernel call.

Exit codes: 0 every chosen variant measured; 1 some failed (their entries say why); 2 bad input.

Modules: ``bundle`` (the bundle on disk: manifest, variant choice, results file), ``environment``
(the runtime-only TVM), ``arrays`` (inputs and weights regenerated), ``nvml`` (energy counter and
device facts), ``timing`` (one variant measured), ``ncu`` (Nsight Compute mode and its CSV), ``cli``
(the command). Each imports only the standard library, numpy, TVM's runtime and its siblings.
"""
