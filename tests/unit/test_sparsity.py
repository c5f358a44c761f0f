"""Pruning and what each target's hardware makes of sparse weights."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from onnx import TensorProto, helper, numpy_helper

from cost_models.sparsity import effective_workload
from cost_models.spec import SparsitySupport
from cost_models.targets import load_target
from explorer.core.strategies import Strategy, get_strategy, parse_strategies
from explorer.tvm.passes.pruning import prune, prune_2_4, prune_unstructured
from tests.conftest import data_target, make_model


def _conv_k27_and_gemm():
    rng = np.random.default_rng(0)
    w_conv = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)  # K = 3 x 3 x 3 = 27: 6 groups of 4 and one of 3
    w_gemm = rng.standard_normal((10, 4 * 6 * 6)).astype(np.float32)  # transB: [N, K]
    nodes = [helper.make_node("Conv", ["x", "Wc"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("Gemm", ["f", "Wg"], ["y"], transB=1)]
    return make_model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 6, 6])],
                      [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])],
                      [numpy_helper.from_array(w_conv, "Wc"), numpy_helper.from_array(w_gemm, "Wg")])


# a kernel of 1000 fp16 MACs (800 on tensor units) against 2000 B of fp16 weights pruned 2:4
def _kernel(density=0.5, **kw):
    row = dict(kernel="k", call_index=0, macs=1000.0, tensorized_macs=800.0, flops=2000.0, weight_bytes=2000.0,
               weight_density=density, traffic_curve="0:5000 4096:3000", unit_traffic_curve="0:5000",
               op_mac_float16=1000.0, op_add_float32=10.0)
    row.update(kw)
    return pd.DataFrame([row])


@pytest.fixture
def gpu():
    return data_target("gpu")


def test_two_of_every_four_along_the_reduction_are_kept_and_a_short_last_group_keeps_two():
    row = np.array([[1, -5, 3, 2, 7, 0.5, -8, 1, 4, -9, 2]], np.float32)
    assert prune_2_4(row).tolist() == [[0, -5, 3, 0, 7, 0, -8, 0, 4, -9, 0]]


def test_unstructured_zeroes_exactly_that_share_of_the_smallest_magnitudes():
    w = np.array([[3, -1, 4], [-1, 5, -9], [2, 6, -5], [3, 5, 8]], np.float32)
    pruned = prune_unstructured(w, 50)
    assert np.count_nonzero(pruned) == 6 and set(np.abs(pruned[pruned != 0])) == {5, 6, 8, 9}


def test_2_4_groups_a_conv_along_channels_and_kernel_and_a_gemm_along_its_k():
    pruned = {i.name: numpy_helper.to_array(i) for i in prune(_conv_k27_and_gemm(), "2:4").graph.initializer}
    conv = pruned["Wc"].reshape(4, 27)
    assert (np.count_nonzero(conv, axis=1) == 6 * 2 + 2).all()  # the group of 3 keeps 2
    assert all(np.count_nonzero(conv[:, g:g + 4], axis=1).max() <= 2 for g in range(0, 27, 4))
    gemm = pruned["Wg"]  # [N, K] with transB: groups along each row
    assert (np.count_nonzero(gemm.reshape(10, 36, 4), axis=2) == 2).all()


def test_a_matmul_weight_is_grouped_along_k_for_each_column():
    w = np.arange(1, 17, dtype=np.float32).reshape(8, 2)  # [K=8, N=2]
    model = make_model([helper.make_node("MatMul", ["x", "W"], ["y"])],
                       [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                       [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [numpy_helper.from_array(w, "W")])
    pruned = numpy_helper.to_array(prune(model, "2:4").graph.initializer[0])
    assert pruned[:, 0].tolist() == [0, 0, 5, 7, 0, 0, 13, 15]  # per column, the larger two of rows 0-3 and 4-7


def test_sparse_strategies_are_named_not_in_all_and_keyed_apart():
    assert get_strategy("fused-2:4").sparsity == "2:4" and get_strategy("fused-unstructured:50").sparsity == "unstructured:50"
    assert not any(s.sparse for s in parse_strategies("all"))
    assert get_strategy("fused").key == "fusion=tvm,layout=native,precision=fp32,tuning=none"  # dense keys unchanged
    assert get_strategy("fused-2:4").key.endswith(",sparsity=2:4")
    with pytest.raises(ValueError, match="sparsity='3:8'"):
        Strategy("x", sparsity="3:8")


def test_2_4_tensor_cores_skip_half_the_tensorized_macs_and_read_compressed_weights(gpu):
    out, effect = effective_workload(_kernel(), gpu, "2:4")
    assert out.op_mac_float16[0] == 1000 - 800 * 0.5  # only the tensor cores run 2:4
    # the kept half plus 2 bits per kept value: 0.5 + 0.5 x 2 / 16 = 0.5625 of the bytes, on the tensorized share
    saved = 2000 * 0.8 * (1 - 0.5625)
    assert out.weight_bytes[0] == pytest.approx(2000 - saved)
    assert out.traffic_curve[0] == f"0:{round(5000 - saved)} 4096:{round(3000 - saved)}"
    assert (effect.exploited_macs, effect.dense_macs) == (400.0, 1000.0)


def test_a_cpu_runs_pruned_weights_dense():
    cpu = load_target("cpu")
    out, effect = effective_workload(_kernel(), cpu, "2:4")
    assert out.drop(columns="sparse_skipped_macs").equals(_kernel()) and effect.exploited_macs == 0
    assert "runs the pruned weights dense" in effect.note(cpu)


def test_zero_skipping_takes_any_pattern_at_the_measured_density(gpu):
    npu = dataclasses.replace(gpu, name="zs", sparsity=SparsitySupport("test", unstructured_dtypes=("int8",),
                                                                         unstructured_index_bits=4))
    k = _kernel(density=0.3, op_mac_float16=0.0, op_mac_int8=1000.0, weight_bytes=1000.0)
    out, _ = effective_workload(k, npu, "unstructured:70")
    assert out.op_mac_int8[0] == pytest.approx(300.0)
    assert out.weight_bytes[0] == pytest.approx(1000 * 0.3 * (1 + 4 / 8))  # kept bytes plus 4 index bits each
    assert effective_workload(_kernel(density=0.5, op_mac_float16=0.0, op_mac_int8=1000.0), npu, "2:4")[0].op_mac_int8[0] == 500


def test_2_4_hardware_leaves_weights_denser_than_half_and_unpruned_kernels_alone(gpu):
    assert effective_workload(_kernel(density=0.7), gpu, "2:4")[1].exploited_macs == 0
    assert effective_workload(_kernel(density=1.0), gpu, "2:4")[1].dense_macs == 0


