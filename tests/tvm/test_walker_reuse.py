"""Reuse-aware traffic of kernels read from TIR: exact bytes for hand-analysed loop nests."""

from __future__ import annotations

import pytest
from tvm.script import tirx as T

from explorer.tvm.tir import walker as tir_analysis


@T.prim_func
def tiled_matmul(A: T.Buffer((4096,), "float32"), B: T.Buffer((4096,), "float32"),
                 C: T.Buffer((4096,), "float32")):
    # C[64, 64] += A[64, 64] @ B[64, 64] in 16x16x16 tiles; rows are 256 B, a tile row is one 64 B line
    for i0, j0, k0, i1, j1, k1 in T.grid(4, 4, 4, 16, 16, 16):
        C[(i0 * 16 + i1) * 64 + j0 * 16 + j1] = C[(i0 * 16 + i1) * 64 + j0 * 16 + j1] + \
            A[(i0 * 16 + i1) * 64 + k0 * 16 + k1] * B[(k0 * 16 + k1) * 64 + j0 * 16 + j1]


@pytest.fixture(scope="module")
def profile():
    return tir_analysis.analyse_primfunc(tiled_matmul, "tiled_matmul").reuse


def total(profile, capacity):
    return sum(profile.at(capacity).values())


# Footprints by hand (64 B lines): one (i1, j1, k1) tile is 16 lines each of A, B and C = 3072 B;
# the k0 loop touches 16x64 of A, 64x16 of B, one C tile = 144 lines = 9216 B; the j0 loop
# 64 + 256 + 64 lines = 24576 B; the whole kernel 3 x 16 KiB = 49152 B.


@T.prim_func
def row_blocked_matmul(A: T.Buffer((8 * 64,), "float32"), B: T.Buffer((64 * 64,), "float32"),
                       C: T.Buffer((8 * 64,), "float32")):
    # the weights' index is not affine in the fused loop (b % 4) and does not use the row loop i
    for b in range(8):
        for k, i in T.grid(64, 4):
            for v in T.vectorized(16):
                C[b // 4 * 256 + i * 64 + b % 4 * 16 + v] = C[b // 4 * 256 + i * 64 + b % 4 * 16 + v] + \
                    A[b // 4 * 256 + i * 64 + k] * B[k * 64 + b % 4 * 16 + v]


def test_everything_fits_moves_each_matrix_once(profile):
    assert total(profile, 49152) == 49152
    assert profile.at(49152) == {"A": 16384, "B": 16384, "C": 16384}


def test_one_outer_iteration_that_fits_keeps_what_the_next_one_reuses(profile):
    # one i0 iteration (24 KiB) fits, so B, touched again by every i0, is still cached: each matrix once
    assert profile.at(24576) == {"A": 16384, "B": 16384, "C": 16384}


def test_a_row_of_tiles_that_fits_rereads_only_b(profile):
    # 9 KiB holds one k0 loop but not an i0 iteration: B is read again for every i0, A and C once
    assert profile.at(9216) == {"A": 16384, "B": 4 * 16384, "C": 16384}


def test_tiled_matmul_whose_tile_fits(profile):
    # 4 KiB holds one 3 KiB tile: each k0 loop (9 KiB) streams its A and B panels once, 16 times
    assert profile.at(4096) == {"A": 16 * 4096, "B": 16 * 4096, "C": 16 * 1024}
    assert total(profile, 4096) == 147456


def test_tiled_matmul_whose_tile_does_not_fit(profile):
    # 2 KiB holds a row of the tile's work (1152 B) but not the tile: every tile is fetched anew
    assert total(profile, 2048) == 64 * 3072
    assert profile.at(2048) == {"A": 65536, "B": 65536, "C": 65536}


def test_below_a_lines_worth_of_reuse_every_access_moves_a_line(profile):
    assert total(profile, 0) == 64 ** 3 * 3 * 64  # A, B and C (load and store share a line) per MAC


def test_a_tensor_left_in_cache_by_the_previous_kernel_is_not_fetched_again(conv_add_relu_onnx):
    from cost_models.workload import curve_at
    from tests.tvm.lowering import lower

    wl = lower(conv_add_relu_onnx, "baseline")[2].set_index("kernel")
    add = wl.loc["add"]  # reads the conv's 1152 B output c and the 1152 B constant B, writes 1152 B
    # in 4 kB c is still cached and the output goes to recycled, cached memory: only the constant B moves
    assert curve_at(add.traffic_curve, 4096) == 1152
    # in 1000 B neither c nor the output fits: all three tensors move
    assert curve_at(add.traffic_curve, 1000) == 3 * 1152


def test_a_weight_stays_cached_from_one_inference_to_the_next_where_the_whole_inference_fits(conv_add_relu_onnx):
    from cost_models.workload import curve_at
    from tests.tvm.lowering import lower

    wl = lower(conv_add_relu_onnx, "baseline")[2].set_index("kernel")
    add = wl.loc["add"]
    # what one inference touches from one read of B to the next: the input (576 B), W, c, B, c + B and the
    # output (1152 B each): 6336 B
    assert curve_at(add.traffic_curve, 6335) == 1152
    assert curve_at(add.traffic_curve, 6336) == 0


def test_a_non_affine_index_counts_only_the_loops_it_uses():
    # per b iteration B's index spans 64 x 16 floats (taken as contiguous: 4096 B, 4156 B of lines at
    # its unknown alignment), whatever the row loop i does; in 1 KiB of cache each b iteration fetches that
    prof = tir_analysis.analyse_primfunc(row_blocked_matmul, "m").reuse
    assert prof.at(1024)["B"] == 8 * 4156
