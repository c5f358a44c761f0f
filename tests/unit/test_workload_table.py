"""What the workload table says of a variant."""

from __future__ import annotations


def test_the_sweep_log_says_how_much_int8_work_is_tensorized():
    import pandas as pd

    from explorer.workload.table import tensorized_note

    wl = pd.DataFrame({"op_mac_int8": [300.0, 100.0, 0.0], "tensorized_macs": [300.0, 0.0, 0.0]})
    assert tensorized_note(wl) == "int8 MACs 75% tensorized (1 of 2 int8 kernels)"
    assert tensorized_note(pd.DataFrame({"op_mac_float32": [5.0], "tensorized_macs": [0.0]})) == ""




def test_the_sweep_log_says_how_much_bf16_work_is_tensorized_beside_int8():
    import pandas as pd

    from explorer.workload.table import tensorized_note

    wl = pd.DataFrame({"op_mac_bfloat16": [64.0, 0.0, 32.0], "op_mac_int8": [0.0, 50.0, 0.0],
                       "tensorized_macs": [64.0, 50.0, 0.0]})
    assert tensorized_note(wl) == ("int8 MACs 100% tensorized (1 of 1 int8 kernels); "
                                   "bf16 MACs 67% tensorized (1 of 2 bf16 kernels)")
