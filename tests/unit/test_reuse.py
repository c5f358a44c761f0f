"""The reuse model on loop nests given as data: footprints, monotonic traffic, per-unit caches."""

from __future__ import annotations

import random

import pytest

from explorer.workload import reuse


def total(profile, capacity):
    return sum(profile.at(capacity).values())


def _random_nest(rng: random.Random):
    loops, sites = [], []
    for lid in range(rng.randint(1, 6)):
        loops.append(reuse.Loop(lid, rng.choice([-1] + [lp.id for lp in loops]), rng.choice([1, 2, 3, 8, 16, 64])))
    for b in range(rng.randint(1, 4)):
        leaf = rng.choice(loops)
        path, node = [], leaf
        while True:
            path.insert(0, node.id)
            if node.parent == -1:
                break
            node = loops[node.parent]
        terms = tuple((lid, rng.choice([0, 1, 4, 16, 64, 1000])) for lid in path if rng.random() < 0.7)
        sites.append(reuse.Site(f"b{b}", rng.choice([1, 2, 4]), 1e6, tuple(path), terms, rng.randint(0, 40),
                                affine=rng.random() < 0.9))
    return loops, sites


def test_footprint_of_a_contiguous_run():
    assert reuse.footprint_bytes([(4, 16)], 4, 64) == 64        # 16 floats from a line boundary
    assert reuse.footprint_bytes([(4, 17)], 4, 64) == 128
    assert reuse.footprint_bytes([(4, 16)], 4, 4) == pytest.approx(64 * (64 + 60) / 64)  # unknown alignment


def test_footprint_of_a_strided_column_is_a_line_per_element():
    assert reuse.footprint_bytes([(256, 16)], 4, 64) == 16 * 64


def test_footprint_of_a_sliding_window_counts_the_overlap_once():
    # x[h + r] for h < 56, r < 3: 58 distinct floats, not 168
    assert reuse.footprint_bytes([(4, 56), (4, 3)], 4, 64) == 4 * 64  # 232 B from a boundary: 4 lines


@pytest.mark.parametrize("seed", range(200))
def test_more_capacity_never_means_more_traffic(seed):
    rng = random.Random(seed)
    profile = reuse.reuse_profile(*_random_nest(rng))
    totals = [sum(t[i] for t in profile.traffic.values()) for i in range(len(profile.capacities))]
    assert all(a >= b for a, b in zip(totals, totals[1:]))
    caps = sorted(rng.uniform(0, 1e7) for _ in range(20))
    per_cap = [total(profile, c) for c in caps]
    assert all(a >= b for a, b in zip(per_cap, per_cap[1:]))


def test_thread_blocks_share_a_common_cache_but_not_a_per_unit_one():
    # 4 thread blocks each read the same 1 KiB table W and their own 1 KiB slice of X
    loops = [reuse.Loop(0, -1, 4, spread=True), reuse.Loop(1, 0, 256)]
    sites = [reuse.Site("W", 4, 1024, (0, 1), ((1, 1),)), reuse.Site("X", 4, 4096, (0, 1), ((0, 256), (1, 1)))]
    profile = reuse.reuse_profile(loops, sites)
    assert profile.at(4096) == {"W": 1024, "X": 4096}                 # a shared L2: W once
    assert profile.at(4096, per_unit=True) == {"W": 4 * 1024, "X": 4096}  # an L1 per SM: W once per block




def test_distinct_rows_under_uniform_choices_by_hand():
    # 4 tokens each choosing 2 of 8 experts: each expert missed with probability (6/8)^4
    assert reuse.distinct_rows(8, 2, 4) == pytest.approx(8 * (1 - 0.75 ** 4))  # 5.46875
    assert reuse.distinct_rows(8, 2, 1) == pytest.approx(2)
    assert reuse.distinct_rows(128, 8, 64) == pytest.approx(128 * (1 - (120 / 128) ** 64))


def test_a_gathered_site_moves_the_distinct_rows_its_choices_touch():
    # out[t, j, n] += W[index[t, j], n]: 4 tokens x 2 choices of 8 rows of 16 float32 (one line each)
    loops = [reuse.Loop(0, -1, 4), reuse.Loop(1, 0, 2), reuse.Loop(2, 1, 16)]
    gathered = reuse.Gathered(rows=8, choices=2, total_choices=8, loops=(0, 1))
    site = reuse.Site("W", 4, 8 * 64, (0, 1, 2), ((2, 1),), 0, True, gathered)
    profile = reuse.reuse_profile(loops, [site])
    assert profile.at(64.0)["W"] == pytest.approx(8 * 64)  # a cache of one row: every choice reads its row
    assert profile.at(128.0)["W"] == pytest.approx(5.46875 * 64)  # of two: the distinct rows, once each
    assert profile.first_touch["W"] == pytest.approx(5.46875 * 64)


def test_a_measured_load_counts_the_rows_its_groups_touch_by_hand():
    # 2 tokens, 1 choice each over 4 rows, half the load on each of two rows: per row 1 - (1 - 1/2)^2
    load = reuse.RowLoad(((0.5, 0.5, 0.0, 0.0),))
    assert load.distinct_rows(2) == pytest.approx(2 * 0.75)
    # two layers average: one always on row 0, one spread evenly (4 (1 - (3/4)^2) = 1.75)
    two = reuse.RowLoad(((1.0, 0.0, 0.0, 0.0), (0.25, 0.25, 0.25, 0.25)))
    assert two.distinct_rows(2) == pytest.approx((1.0 + 1.75) / 2)


def test_a_gathered_site_moves_the_distinct_rows_a_measured_load_touches():
    loops = [reuse.Loop(0, -1, 4), reuse.Loop(1, 0, 2), reuse.Loop(2, 1, 16)]
    gathered = reuse.Gathered(rows=8, choices=2, total_choices=8, loops=(0, 1))
    site = reuse.Site("W", 4, 8 * 64, (0, 1, 2), ((2, 1),), 0, True, gathered)
    hot = reuse.RowLoad(((1.0, 1.0) + (0.0,) * 6,))  # every token picks rows 0 and 1
    assert reuse.reuse_profile(loops, [site], load=hot).first_touch["W"] == pytest.approx(2 * 64)
    uniform = reuse.RowLoad(((0.25,) * 8,))
    assert reuse.reuse_profile(loops, [site], load=uniform) == reuse.reuse_profile(loops, [site])
    other_table = reuse.RowLoad(((1.0, 1.0, 0.0, 0.0),))  # four rows: not this table's load
    assert reuse.reuse_profile(loops, [site], load=other_table) == reuse.reuse_profile(loops, [site])
