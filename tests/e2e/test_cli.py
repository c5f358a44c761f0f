"""The explorer command end to end, as a user runs it."""

from __future__ import annotations

import os

import pandas as pd
import pytest

import explorer
from tests.conftest import TOY_TARGET

REQUIRED = ["model", "strategy", "target", "fusion", "layout", "precision", "tuning", "status", "kernels", "flops",
            "dram_bytes", "energy_j", "energy_compute_j", "energy_memory_j", "energy_static_j", "latency_s",
            "max_abs_error", "macs"]




@pytest.fixture(scope="module")
def swept(cli, conv_add_relu_onnx, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    proc = cli("sweep", str(conv_add_relu_onnx), "--targets", f"cpu,{TOY_TARGET}", "--out", str(out), "--quiet")
    return proc, out


def _host_has_vnni() -> bool:
    import tvm

    from explorer.tvm import codegen
    from explorer.tvm.llvm_host import host_llvm_cpu
    from explorer.tvm.passes.vnni import has_vnni

    return has_vnni(tvm.target.Target(codegen.llvm_target(host_llvm_cpu())))


needs_vnni = pytest.mark.skipif(not _host_has_vnni(), reason="this CPU has no AVX-512 VNNI (both of this "
                                                               "project's machine kinds have it)")


def test_models_lists_the_zoo(cli):
    proc = cli("models")
    assert proc.returncode == 0
    for name in ("mlp", "resnet18", "resnet50", "mobilenetv2", "bert-mini", "yolo-block"):
        assert name in proc.stdout


def test_sweep_writes_variants_kernels_and_report(swept):
    proc, out = swept
    assert proc.returncode == 0, proc.stderr
    variants = pd.read_csv(out / "variants.csv")
    assert set(REQUIRED) <= set(variants.columns)
    assert len(variants) == 9 * 2  # all strategies x two targets
    kernels = pd.read_csv(out / "kernels.csv")
    assert {"kernel", "energy_j", "dram_bytes", "macs", "ops"} <= set(kernels.columns)
    assert "# Energy exploration report" in (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert page.count("<div class='plot' id=") >= 5 and "Plotly.newPlot" in page


def test_sweep_reports_traffic_per_level_bound_and_ranking_robustness(swept):
    _, out = swept
    kernels = pd.read_csv(out / "kernels.csv")
    cpu = kernels[kernels.target == "cpu"]
    assert {"l3_bytes", "l2_bytes", "l1_bytes", "traffic_curve", "compulsory_energy_j", "bound"} <= set(cpu.columns)
    assert (cpu.dram_bytes <= cpu.l3_bytes).all()  # each level passes at least what the one outside it does
    assert set(cpu.bound) <= {"compute", "dram", "l3", "l2", "l1", "overhead"}
    variants = pd.read_csv(out / "variants.csv")
    assert (variants.compulsory_ratio > 1).all()
    assert (variants.energy_p05_j <= variants.energy_j).all() and (variants.energy_j <= variants.energy_p95_j).all()
    rankings = pd.read_csv(out / "rankings.csv")
    assert len(rankings) == 2 * 36  # every pair of the 9 strategies, per target
    # every figure of the toy target is exact: no sample moves an energy or reverses a ranking
    toy = variants[variants.target == "toy"]
    assert (toy.energy_p05_j == toy.energy_j).all() and (toy.energy_p95_j == toy.energy_j).all()
    assert (rankings[rankings.target == "toy"].share_lower_wins == 1.0).all()
    assert "**conv_add_relu on toy**: 36 of 36 pairwise rankings hold" in (out / "report.md").read_text()


def test_cpu_variants_are_built_run_and_match_onnxruntime(swept):
    variants = pd.read_csv(swept[1] / "variants.csv")
    cpu = variants[(variants.target == "cpu")]
    assert cpu.ran.all()
    # TVM and onnxruntime ran with the same threads: cpu.toml's 2 cores, at most this machine's
    assert (cpu.tvm_threads == min(2, len(os.sched_getaffinity(0)))).all()
    assert (cpu.onnxruntime_threads == cpu.tvm_threads).all()
    fp32 = cpu[cpu.precision == "fp32"]
    assert fp32.within_tolerance.all() and (fp32.max_abs_error < 1e-4).all() and (fp32.status == "ok").all()


def test_fused_variants_move_fewer_bytes_and_use_less_energy(swept):
    v = pd.read_csv(swept[1] / "variants.csv").set_index(["target", "strategy"])
    for target in ("cpu", "toy"):
        # the intermediates fit on chip, so fusion saves on-chip traffic and leaves DRAM traffic as is
        assert v.loc[(target, "fused"), "dram_bytes"] == v.loc[(target, "baseline"), "dram_bytes"]
        assert v.loc[(target, "fused"), "onchip_bytes"] < v.loc[(target, "baseline"), "onchip_bytes"]
        assert v.loc[(target, "fused"), "energy_j"] < v.loc[(target, "baseline"), "energy_j"]
        assert v.loc[(target, "fused-nhwc"), "onchip_bytes"] < v.loc[(target, "nhwc"), "onchip_bytes"]


def test_rerun_reuses_finished_variants(cli, swept, conv_add_relu_onnx):
    proc, out = swept
    before = pd.read_csv(out / "variants.csv")
    again = cli("sweep", str(conv_add_relu_onnx), "--targets", f"cpu,{TOY_TARGET}", "--out", str(out), "--quiet")
    assert again.returncode == 0
    after = pd.read_csv(out / "variants.csv")
    pd.testing.assert_frame_equal(before, after)  # compile_s included: nothing was recompiled


def test_fusion_report_per_kernel_and_totals(cli, conv_add_relu_onnx):
    proc = cli("fusion", str(conv_add_relu_onnx), "--target", TOY_TARGET, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "fused_conv2d_add_relu" in proc.stdout
    assert "kernels 3 -> 1" in proc.stdout
    # x (576 B) comes from DRAM either way; W and B stay in the 1 MB SRAM from one inference to the next, and
    # c and a never leave it
    assert "DRAM 576 B -> 576 B (saved 0 B" in proc.stdout
    # SRAM serves every access (the toy target has no registers). The conv kernel: its padding stage
    # stores zeros over the padded copy (4 x 8 x 8, 1024 B), then loads x (4 x 6 x 6, 576 B) and stores
    # it inside the border (576 B); per MAC, W and the padded x are loaded and a tile accumulator loaded
    # and stored (16 B); the tile is zeroed and read back once per output (2 x 1152 B) and the
    # write-back stores c (1152 B): 171.52 kB.
    # Unfused, add moves 12 B and relu 8 B per element (5.76 kB); fused, the write-back also reads B
    # and stores y instead of c (+1152 B)
    assert "sram 177.28 kB -> 172.67 kB" in proc.stdout


@pytest.mark.parametrize("args, message", [
    (["sweep", "no-such-model"], "zoo models: mlp"),
    (["sweep", "mlp", "--targets", "abacus"], "known targets: b200, cpu"),
    (["sweep", "mlp", "--strategies", "turbo"], "known strategies: baseline"),
    (["sweep", "mlp", "--input-shape", "bad"], "expected NAME:D1,D2"),
    (["fusion", "mlp", "--strategy", "baseline"], "does not fuse"),
])
def test_bad_input_gets_one_line_and_exit_2(cli, args, message):
    proc = cli(*args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_unsupported_operator_is_refused_up_front_in_one_line(cli, unsupported_onnx):
    proc = cli("sweep", str(unsupported_onnx), "--quiet")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["explorer: error: TVM's ONNX importer does not support: Det (2 nodes)"]


def test_a_failure_shared_by_many_variants_is_one_line_and_exit_1(cli, matmul_onnx, tmp_path):
    # an empty cache, so each variant compiles, and a limit no worker can meet: four variants fail for one cause
    proc = cli("sweep", matmul_onnx, "--targets", f"{TOY_TARGET},cpu", "--strategies", "baseline,fused",
               "--variant-timeout", "0.001", "--quiet", env={"EXPLORER_CACHE": str(tmp_path)})
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "matmul (4 variants): failed: ran past its time limit of 0.001 s (--variant-timeout)"]


def test_a_model_that_cannot_be_imported_is_rows_beside_one_that_sweeps(unsupported_onnx, matmul_onnx):
    result = explorer.run_sweep([str(unsupported_onnx), str(matmul_onnx)], targets=[TOY_TARGET],
                                strategies=["baseline", "fused"], progress=False, isolate=False)
    from explorer.cli.sweep import failed_variants

    assert list(failed_variants(result.variants)) == [True, True, False, False]


def test_python_api_returns_the_same_dataframe(cli, matmul_onnx, tmp_path):
    proc = cli("sweep", str(matmul_onnx), "--targets", "cpu", "--strategies", "baseline", "--out", str(tmp_path),
               "--quiet")
    assert proc.returncode == 0, proc.stderr
    df = explorer.sweep(str(matmul_onnx), targets=["cpu"], strategies=["baseline"], progress=False, isolate=False)
    assert df.iloc[0].flops == 4096 and df.iloc[0].within_tolerance
    # the API reads the CLI's cached lowering and measurements: the same row, through a CSV round trip
    df.to_csv(tmp_path / "api.csv", index=False)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "api.csv"), pd.read_csv(tmp_path / "variants.csv"))


def test_a_failing_variant_does_not_stop_the_sweep(matmul_onnx, unsupported_onnx):
    result = explorer.run_sweep([str(unsupported_onnx), str(matmul_onnx)], targets=[TOY_TARGET],
                                strategies=["baseline", "fused"], progress=False, isolate=False)
    v = result.variants.set_index("model")
    assert v.loc["unsupported", "status"].str.contains("does not support: Det").all()
    assert (v.loc["matmul", "status"] == "ok: analysed from lowered TIR (not built)").all()
    assert v.loc["matmul", "energy_j"].gt(0).all()


def test_without_a_terminal_the_sweep_prints_a_line_per_variant_and_its_time_split(cli, matmul_onnx):
    proc = cli("sweep", str(matmul_onnx), "--targets", TOY_TARGET, "--strategies", "baseline,fused", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith("[")]
    assert sorted(line.split(": ")[0].split("] ")[1] for line in progress) == ["matmul / baseline / toy",
                                                                             "matmul / fused / toy"]
    assert [line.split("]")[0] for line in progress] == ["[1/2", "[2/2"]
    assert all(": compiled in " in line or line.endswith(": stored") for line in progress)
    split = next(line for line in proc.stdout.splitlines() if line.startswith("wall "))
    assert all(f"{phase} " in split for phase in ("prepare", "compile", "analyse", "time", "score"))


def test_doctor_checks_each_target_by_sweeping_a_tiny_model(cli):
    import json

    from explorer.host.toolchain import rocm_missing

    proc = cli("doctor", "--json")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["packages"]["apache-tvm"] == "0.27.0.post1" and r["packages"]["apache-tvm-ffi"] == "0.1.14.post1"
    runs = "build and run (checked against onnxruntime)"
    rocm = "build (nothing here runs it)" if not rocm_missing() else "analyse; build fails"
    assert r["targets"] == {"b200": "build (nothing here runs it)", "h200": "build (nothing here runs it)", "cpu": runs, "cpu-cascadelake": runs, "cpu-graniterapids": runs, "cpu-zen4": runs,
                            "cpu-zen5": runs, "gpu": "build (nothing here runs it)", "mi300x": rocm,
                            "npu": "analyse only", "phone-npu": "analyse only", "tpu": "analyse only"}
    assert r["tvm"]["codegen"]["llvm"] and r["tvm"]["codegen"]["cuda"] and r["tvm"]["llvm_version"] >= 15
    assert r["threads"]["explorer_times_cpu_with"] == min(2, r["cores"])
    assert r["cpu_target"].startswith("cpu = cpu-")
    vnni = r["tvm"]["cpu_features"]["avx512vnni"]
    assert r["tvm"]["int8_kernels"].startswith("u8 x s8 on VPDPBUSD" if vnni else "s8 x s8")
@needs_vnni
def test_a_sweep_of_a_vnni_model_logs_its_tensorized_share(cli, conv16_onnx, tmp_path, monkeypatch):
    monkeypatch.setenv("EXPLORER_CACHE", str(tmp_path / "cache"))
    proc = cli("sweep", str(conv16_onnx), "--strategies", "fused-int8", "--targets", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "int8 MACs 100% tensorized (1 of 1 int8 kernels)" in proc.stderr


