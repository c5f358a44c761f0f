#!/usr/bin/env bash
# Measure an `explorer measure` bundle on an NVIDIA GPU (issue 18), writing everything under $OUT.
#
# Built here (no GPU needed), carried to the GPU machine, run there, read back here:
#
#   explorer measure resnet18 --target gpu --strategies fused,fused-fp16,baseline -o build/gpu-bundle
#   # on the GPU machine, in a copy of the repository root with build/gpu-bundle carried along:
#   OUT=/somewhere bash benchmarks/gpu_measure.sh build/gpu-bundle
#   # back here, with $OUT's files copied to OUT/:
#   explorer calibrate OUT/results.json --bundle build/gpu-bundle -o runs/gpu-h200-calibrated.toml \
#       --report reports/gpu-measure --ncu OUT/ncu
#
# Needs on the GPU machine: the NVIDIA driver (libcuda, libnvidia-ml, nvidia-smi; driver >= 580 for the
# bundle's CUDA 13 runtime library), Python 3.12 with numpy, and Nsight Compute (ncu) for step 3. The bundle
# brings TVM's runtime, apache-tvm-ffi for Python 3.12 and libcudart; nothing is installed.
#
# Steps, within BUDGET_S seconds in all (default 450: a 10-minute call with the machine's start-up around it):
#   1. the machine: nvidia-smi, driver, clocks, power limit, Python, ncu version -> $OUT/environment.txt
#   2. every variant: latency (TVM's timer, CUDA events), per-kernel times, NVML energy over >= 1 s windows
#      minus idle power -> $OUT/results.json (rewritten after each variant; a runner that crashes is
#      restarted with --resume and the variant that killed it recorded as failed), outputs -> $OUT/outputs
#   3. ncu on NCU_COUNT variants (microbenchmarks first, then one per model): DRAM bytes read and written and
#      GPU time per kernel launch of one inference -> $OUT/ncu/<variant>.csv and <variant>.calls.json.
#      --cache-control none keeps what earlier kernels left in L2 (the model counts that reuse);
#      NCU_CACHE=all measures every kernel from a cold cache instead.
set -uo pipefail

BUNDLE="${1:-${BUNDLE:-build/gpu-bundle}}"
OUT="${OUT:-$PWD/gpu-measure-out}"
BUDGET_S="${BUDGET_S:-450}"
RUN_SHARE="${RUN_SHARE:-65}"           # percent of the budget for step 2
NCU_COUNT="${NCU_COUNT:-6}"
NCU_CACHE="${NCU_CACHE:-none}"
NCU_METRICS="dram__bytes_read.sum,dram__bytes_write.sum,gpu__time_duration.sum"
PY="${PYTHON:-python3}"
command -v python3.12 > /dev/null && [ -z "${PYTHON:-}" ] && PY=python3.12

start=$(date +%s)
elapsed() { echo $(( $(date +%s) - start )); }
left() { echo $(( BUDGET_S - $(elapsed) )); }
log() { echo "[$(elapsed) s] $*" | tee -a "$OUT/gpu_measure.log" >&2; }

mkdir -p "$OUT/ncu" "$OUT/outputs"
if [ ! -f "$BUNDLE/manifest.json" ] || [ ! -f "$BUNDLE/measure_runner.py" ]; then
    echo "gpu_measure.sh: $BUNDLE is not an explorer measure bundle (carry it along: build/gpu-bundle)" | tee "$OUT/gpu_measure.log" >&2
    exit 2
fi

# 1. the machine
{
    echo "== date"; date -Is
    echo "== nvidia-smi"; nvidia-smi
    echo "== query"; nvidia-smi --query-gpu=name,driver_version,pstate,clocks.sm,clocks.mem,clocks.max.sm,clocks.max.mem,power.limit,power.draw,temperature.gpu --format=csv
    echo "== clocks, power, performance"; nvidia-smi -q -d CLOCK,POWER,PERFORMANCE,TEMPERATURE
    echo "== python"; "$PY" --version; "$PY" -c "import numpy; print('numpy', numpy.__version__)"
    echo "== ncu"; ncu --version
    echo "== cpu"; lscpu | head -20
} > "$OUT/environment.txt" 2>&1
driver_major=$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2>/dev/null | head -1 | cut -d. -f1)
if [ -n "$driver_major" ] && [ "$driver_major" -lt 580 ] 2>/dev/null; then
    log "warning: driver $driver_major < 580: the bundle's libcudart.so.13 (CUDA 13) may refuse to start"
fi
log "bundle $BUNDLE: $("$PY" "$BUNDLE/measure_runner.py" --list | wc -l) variants; budget ${BUDGET_S} s"

# 2. every variant
run_budget=$(( BUDGET_S * RUN_SHARE / 100 ))
resume=()
for attempt in 1 2 3; do
    remaining=$(( run_budget - $(elapsed) ))
    [ "$remaining" -lt 20 ] && { log "no time left for the runner"; break; }
    log "runner, attempt $attempt, $remaining s"
    timeout --kill-after=10 $(( remaining + 30 )) "$PY" "$BUNDLE/measure_runner.py" --device cuda \
        --out "$OUT/results.json" --outputs "$OUT/outputs" --time-budget-s "$remaining" "${resume[@]}" \
        2>&1 | tee -a "$OUT/runner.log"
    rc=${PIPESTATUS[0]}
    log "runner exit code $rc"
    [ "$rc" -eq 0 ] || [ "$rc" -eq 1 ] || [ "$rc" -eq 2 ] && break
    resume=(--resume)  # it crashed or was killed: measure the rest
done

# 3. Nsight Compute on a few variants, one process each
if command -v ncu > /dev/null; then
    for v in $("$PY" "$BUNDLE/measure_runner.py" --list --ncu-subset "$NCU_COUNT"); do
        remaining=$(left)
        [ "$remaining" -lt 25 ] && { log "ncu: stopped, no time left"; break; }
        limit=$(( remaining < 150 ? remaining - 5 : 150 ))
        log "ncu $v ($limit s)"
        timeout --kill-after=5 "$limit" ncu --profile-from-start off --metrics "$NCU_METRICS" --csv --print-units base \
            --cache-control "$NCU_CACHE" --clock-control none \
            "$PY" "$BUNDLE/measure_runner.py" --device cuda --ncu --variant "$v" --out "$OUT/ncu/$v.calls.json" \
            > "$OUT/ncu/$v.csv" 2> "$OUT/ncu/$v.log"
        log "ncu $v exit code $? ($(grep -c '"dram__bytes_read.sum"' "$OUT/ncu/$v.csv") launches with DRAM bytes)"
    done
else
    log "ncu not found: no per-kernel DRAM bytes"
fi
log "done; files under $OUT"
ls -la "$OUT" "$OUT/ncu" >> "$OUT/gpu_measure.log" 2>&1
