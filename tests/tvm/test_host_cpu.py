"""The LLVM CPU the explorer builds for on this host: LLVM's name, unless it leaves out an extension the host has."""

from __future__ import annotations

import pytest
from tvm.target import codegen as tvm_codegen

from explorer.tvm import llvm_host

GRANITE_RAPIDS_UNDER_KVM = {"fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avxvnni", "avx512bf16",
                            "avx512fp16", "amxtile", "amxint8", "amxbf16"}  # no amx_fp16: the VMM clears it
ZEN4 = {"fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avx512bf16"}


@pytest.fixture
def host(monkeypatch):
    def pretend(llvm_name: str, flags: set[str]):
        monkeypatch.setattr(tvm_codegen, "llvm_get_system_cpu", lambda: llvm_name)
        monkeypatch.setattr(llvm_host, "_host_flags", lambda: flags)
    return pretend


def test_a_masked_model_number_gets_the_cpu_with_the_hosts_extensions(host):
    host("rocketlake", GRANITE_RAPIDS_UNDER_KVM)  # rocketlake has no AVX512-FP16, BF16 or AMX
    assert llvm_host.host_llvm_cpu() in ("emeraldrapids", "sapphirerapids")  # the same extensions in LLVM 22


def test_llvms_name_stays_when_it_has_every_extension_the_host_shows(host):
    host("znver4", ZEN4)
    assert llvm_host.host_llvm_cpu() == "znver4"


def test_a_host_without_cpu_flags_keeps_llvms_name(host):
    host("rocketlake", set())
    assert llvm_host.host_llvm_cpu() == "rocketlake"
