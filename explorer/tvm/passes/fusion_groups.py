"""What fusion put together: per fused kernel, the operator kernels it covers and the intermediate
tensors it no longer writes (what the fusion report reads)."""

from __future__ import annotations

import tvm
from tvm import relax

from explorer.tvm.relax_ir import bindings, name_of, sinfo_tensors
from explorer.workload.table import Tensor


def _group_members(mod: tvm.IRModule) -> dict[str, tuple[list[str], list[Tensor]]]:
    """After FuseOps: for each fused group (by function name, which FuseTIR gives the fused kernel),
    the operator kernels it contains and the intermediate tensors inside it."""
    out = {}
    for binding in bindings(mod["main"]):
        call = binding.value
        if not isinstance(call, relax.Call) or not isinstance(call.op, tvm.ir.GlobalVar):
            continue
        group = mod[call.op]
        if not isinstance(group, relax.Function):
            continue
        members, inner = [], []
        result = group.body.body
        for b in bindings(group):
            if isinstance(b.value, relax.Call) and b.value.op.same_as(tvm.ir.Op.get("relax.call_tir")):
                members.append(name_of(b.value.args[0]))
                if not b.var.same_as(result):
                    inner += sinfo_tensors(b.var.ty, name_of(b.var), "kernel")
        out[name_of(call.op)] = (members, inner)
    return out


def record_fusion_groups(groups: dict) -> tvm.transform.Pass:
    """A pass that records, into ``groups``, each fused group's operator kernels and the intermediates inside
    it (by the name FuseTIR gives the fused kernel); an earlier grouping's members are taken over."""
    @tvm.transform.module_pass(opt_level=0, name="explorer.RecordFusionGroups")
    def record(mod, _ctx):
        for name, (members, inner) in _group_members(mod).items():
            # a member fused by an earlier grouping (a dequantized matmul) stands for its own members
            expanded, nested = [], []
            for m in members:
                earlier = groups.pop(m, ([m], []))
                expanded += earlier[0]
                nested += earlier[1]
            groups[name] = (expanded, nested + inner)
        return mod

    return record
