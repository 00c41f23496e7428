"""CPU classes from facts: recorded /proc/cpuinfo flag sets and oneDNN ISA names of real CPUs, classified offline.

The flag sets are the ``flags`` lines of real machines (the AMD EPYC Zen 4 one recorded on the course's CI machine,
the others built from each CPU's published feature list); the ISA names are every string oneDNN 2.5-3.13 prints after
``isa:`` (src/cpu/x64/cpu_isa_traits.cpp), each with the oneDNN level it names.
"""

from __future__ import annotations

import pytest

from qhelpers import hardware
from qhelpers.hardware import CpuClass

_BASE = ("fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx "
         "pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid pni pclmulqdq ssse3 fma cx16 pcid "
         "sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand hypervisor lahf_lm abm "
         "fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid")
_SKYLAKE_SP = _BASE + (" mpx avx512f avx512dq rdseed adx smap clflushopt clwb avx512cd avx512bw avx512vl xsaveopt "
                       "xsavec xgetbv1 xsaves arat pku ospke md_clear flush_l1d arch_capabilities")
_SAPPHIRE_RAPIDS_NO_AMX = _BASE + (
    " avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec "
    "xgetbv1 xsaves avx_vnni avx512_bf16 wbnoinvd arat avx512vbmi umip pku ospke waitpkg avx512_vbmi2 gfni vaes "
    "vpclmulqdq avx512_vnni avx512_bitalg tme avx512_vpopcntdq la57 rdpid bus_lock_detect cldemote movdiri movdir64b "
    "enqcmd fsrm md_clear serialize tsxldtrk pconfig arch_lbr ibt avx512_fp16 flush_l1d arch_capabilities")

# (CPU, /proc/cpuinfo flags, the ISA name oneDNN 3.12 prints there, the class)
RECORDED_CPUS = [
    ("Intel Xeon E5-2680 v3 (Haswell)", _BASE + " xsaveopt cqm_llc dtherm ida arat pln pts md_clear flush_l1d",
     "Intel AVX2", CpuClass.AVX2),
    ("AMD EPYC 7763 (Zen 3)", _BASE + " rdseed adx smap clflushopt clwb sha_ni xsaveopt xsavec xgetbv1 xsaves clzero "
     "umip pku ospke vaes vpclmulqdq rdpid fsrm", "Intel AVX2", CpuClass.AVX2),
    ("Intel Core i7-12700K (Alder Lake)", _BASE + " rdseed adx smap clflushopt clwb intel_pt sha_ni xsaveopt xsavec "
     "xgetbv1 xsaves avx_vnni umip pku ospke waitpkg gfni vaes vpclmulqdq rdpid movdiri movdir64b fsrm md_clear "
     "serialize arch_lbr ibt flush_l1d arch_capabilities", "Intel AVX2 with Intel DL Boost", CpuClass.AVX2_VNNI),
    ("Intel Xeon Gold 6148 (Skylake-SP)", _SKYLAKE_SP,
     "Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions", CpuClass.AVX512),
    ("Intel Xeon Platinum 8280 (Cascade Lake)", _SKYLAKE_SP + " avx512_vnni", "Intel AVX-512 with Intel DL Boost",
     CpuClass.AVX512_VNNI),
    ("Intel Xeon Platinum 8380 (Ice Lake-SP)", _SKYLAKE_SP + " avx512ifma sha_ni avx512vbmi umip avx512_vbmi2 gfni vaes "
     "vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid", "Intel AVX-512 with Intel DL Boost",
     CpuClass.AVX512_VNNI),
    ("Intel Xeon Platinum 8380H (Cooper Lake)", _SKYLAKE_SP + " avx512_vnni avx512_bf16",
     "Intel AVX-512 with Intel DL Boost and bfloat16 support", CpuClass.AVX512_BF16),
    ("AMD EPYC (Zen 4), recorded on the course's machine",
     "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx "
     "mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl xtopology nonstop_tsc cpuid extd_apicid "
     "tsc_known_freq pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave "
     "avx f16c rdrand hypervisor lahf_lm cmp_legacy cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw topoext vmmcall "
     "fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid avx512f avx512dq rdseed adx smap avx512ifma clflushopt clwb "
     "avx512cd sha_ni avx512bw avx512vl xsaveopt xsavec xgetbv1 xsaves avx512_bf16 clzero xsaveerptr arat avx512vbmi "
     "umip avx512_vbmi2 gfni vaes vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq rdpid fsrm",
     "Intel AVX-512 with Intel DL Boost and bfloat16 support", CpuClass.AVX512_BF16),
    ("AMD EPYC 9005 (Zen 5)", _SKYLAKE_SP + " avx512ifma sha_ni avx_vnni avx512_bf16 avx512vbmi avx512_vbmi2 gfni vaes "
     "vpclmulqdq avx512_vnni avx512_bitalg avx512_vpopcntdq avx512_vp2intersect movdiri movdir64b",
     "Intel AVX-512 with Intel DL Boost and bfloat16 support", CpuClass.AVX512_BF16),
    ("Intel Xeon, family 6 model 207 (Emerald Rapids), cloud VM without AMX", _SAPPHIRE_RAPIDS_NO_AMX,
     "Intel AVX 10.1", CpuClass.AVX10_1),
    ("Intel Xeon Platinum 8480+ (Sapphire Rapids)", _SAPPHIRE_RAPIDS_NO_AMX + " amx_bf16 amx_tile amx_int8",
     "Intel AVX10.1 and Intel AMX with bfloat16 and 8-bit integer support", CpuClass.AMX),
    ("Intel Xeon 6980P (Granite Rapids)", _SAPPHIRE_RAPIDS_NO_AMX + " amx_bf16 amx_tile amx_int8 amx_fp16",
     "Intel AVX10.1 and Intel AMX with bfloat16, float16 and 8-bit integer support", CpuClass.AMX),
]

# Every name oneDNN 2.5-3.13 prints after "isa:" (cpu_isa_traits.cpp's get_name), with its oneDNN level and class.
ONEDNN_NAMES = [
    ("Intel SSE4.1", "sse41", None),
    ("Intel AVX", "avx", None),
    ("Intel 64", "default", None),
    ("Intel AVX2", "avx2", CpuClass.AVX2),
    ("Intel AVX2 with Intel DL Boost", "avx2_vnni", CpuClass.AVX2_VNNI),
    ("Intel AVX2 with Intel DL Boost, float16 and bfloat16 support", "avx2_vnni_2", CpuClass.AVX2_VNNI),
    ("Intel AVX2 with Intel DL Boost, float16 and bfloat16 support (preview support)", "avx2_vnni_2 (3.0-3.3)",
     CpuClass.AVX2_VNNI),
    ("Intel AVX-512", "avx512_common (2.5)", CpuClass.AVX512),
    ("Intel AVX-512 with AVX512CD, AVX512ER, and AVX512PF extensions", "avx512_mic (2.5)", CpuClass.AVX512),
    ("Intel AVX-512 with AVX512_4FMAPS and AVX512_4VNNIW extensions", "avx512_mic_4ops (2.5)", CpuClass.AVX512),
    ("Intel AVX-512 with AVX512BW, AVX512VL, and AVX512DQ extensions", "avx512_core", CpuClass.AVX512),
    ("Intel AVX-512 with Intel DL Boost", "avx512_core_vnni", CpuClass.AVX512_VNNI),
    ("Intel AVX-512 with Intel DL Boost and bfloat16 support", "avx512_core_bf16", CpuClass.AVX512_BF16),
    ("Intel AVX-512 with Intel DL Boost and bfloat16 support on Ymm/Zmm", "avx512_core_bf16_ymm", CpuClass.AVX512_BF16),
    ("Intel AVX 10.1", "avx512_core_fp16 (3.12-)", CpuClass.AVX10_1),
    ("Intel AVX-512 with float16, Intel DL Boost and bfloat16 support ", "avx512_core_fp16 (2.7-3.11)", CpuClass.AVX10_1),
    ("Intel AVX10.2", "avx10_2 (3.12-)", CpuClass.AVX10_1),
    ("Intel AVX10.2/512 with float16, Intel DL Boost and bfloat16 support ", "avx10_2_512 (3.9-3.11)", CpuClass.AVX10_1),
    ("Intel AVX10.2 and ACE support (preview)", "avx10_2_ace (3.14 preview)", CpuClass.AVX10_1),
    ("Intel AVX-512 with Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 support",
     "avx512_core_bf16_amx_bf16 (2.5-2.7)", CpuClass.AMX),
    ("Intel AVX-512 with Intel DL Boost and bfloat16 support and Intel AMX with 8-bit integer support",
     "avx512_core_bf16_amx_int8 (2.5-2.7)", CpuClass.AMX),
    ("Intel AVX-512 with Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit integer support",
     "avx512_core_amx (2.5-2.6)", CpuClass.AMX),
    ("Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16 and 8-bit integer "
     "support", "avx512_core_amx (2.7-3.11)", CpuClass.AMX),
    ("Intel AVX10.1 and Intel AMX with bfloat16 and 8-bit integer support", "avx512_core_amx (3.12-)", CpuClass.AMX),
    ("Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16, float16 and 8-bit "
     "integer support (preview support)", "avx512_core_amx_fp16 (3.0-3.3)", CpuClass.AMX),
    ("Intel AVX-512 with float16, Intel DL Boost and bfloat16 support and Intel AMX with bfloat16, float16 and 8-bit "
     "integer support", "avx512_core_amx_fp16 (3.4-3.11)", CpuClass.AMX),
    ("Intel AVX10.1 and Intel AMX with bfloat16, float16 and 8-bit integer support", "avx512_core_amx_fp16 (3.12-)",
     CpuClass.AMX),
    ("Intel AVX10.2/512 with float16, Intel DL Boost and Intel AMX with bfloat16, float16, float8 and 8-bit integer "
     "support", "avx10_2_512_amx_2 (3.9-3.11)", CpuClass.AMX),
    ("Intel AVX10.2 and Intel AMX with float8, float16, bfloat16 and 8-bit integer support", "avx10_2_amx_2 (3.12-)",
     CpuClass.AMX),
]


@pytest.mark.parametrize("cpu, flags, isa, klass", RECORDED_CPUS, ids=[c[0] for c in RECORDED_CPUS])
def test_flags_and_onednn_name_give_the_same_class(cpu, flags, isa, klass):
    assert hardware.classify(flags.split()) is klass
    assert hardware.onednn_isa_class(isa) is klass


@pytest.mark.parametrize("isa, level, klass", ONEDNN_NAMES, ids=[n[1] for n in ONEDNN_NAMES])
def test_every_onednn_isa_name_is_classified(isa, level, klass):
    assert hardware.onednn_isa_class(isa) is klass


def test_every_class_has_a_recorded_cpu():
    assert {c[3] for c in RECORDED_CPUS} == set(hardware.CPU_CLASSES)


def test_avx10_1_has_int8_and_16_bit_dot_products():
    """The CPU of issue 19: oneDNN's "Intel AVX 10.1" names none of the old words, yet implies VNNI, BF16 and FP16."""
    klass = hardware.onednn_isa_class("Intel AVX 10.1")
    assert (klass.onednn_int8_dot, klass.onednn_bf16_dot, klass.fp16_arithmetic, klass.amx) == (True, True, True, False)
    assert klass.fbgemm_int8_exact


@pytest.mark.parametrize("klass, exact, int8, bf16, fp16, amx", [
    (CpuClass.AVX2, False, False, False, False, False),
    (CpuClass.AVX2_VNNI, False, True, False, False, False),  # fbgemm has no AVX-VNNI path
    (CpuClass.AVX512, False, False, False, False, False),  # fbgemm's AVX-512 path uses vpmaddubsw without VNNI
    (CpuClass.AVX512_VNNI, True, True, False, False, False),
    (CpuClass.AVX512_BF16, True, True, True, False, False),
    (CpuClass.AVX10_1, True, True, True, True, False),
    (CpuClass.AMX, True, True, True, True, True),
])
def test_class_facts(klass, exact, int8, bf16, fp16, amx):
    assert (klass.fbgemm_int8_exact, klass.onednn_int8_dot, klass.onednn_bf16_dot, klass.fp16_arithmetic,
            klass.amx) == (exact, int8, bf16, fp16, amx)


def test_torch_cpuinfo_names_are_accepted():
    caps = {"avx2", "avx512_f", "avx512_bw", "avx512_dq", "avx512_vl", "avx512_vnni"}  # torch.cpu.get_capabilities()
    assert hardware.classify(caps) is CpuClass.AVX512_VNNI


def test_without_avx2_there_is_no_class():
    assert hardware.classify(["sse4_2", "avx"]) is None


@pytest.mark.parametrize("bad, error", [("avx2 avx512f", TypeError), (None, TypeError), ([1, 2], TypeError)])
def test_classify_rejects_bad_flags(bad, error):
    with pytest.raises(error, match="flag names"):
        hardware.classify(bad)


@pytest.mark.parametrize("bad, error, match", [
    (None, TypeError, "oneDNN's ISA name"),
    ("AArch64 SVE (512 bits)", ValueError, "start with 'Intel '"),
    ("", ValueError, "start with 'Intel '"),
])
def test_onednn_isa_class_rejects_bad_names(bad, error, match):
    with pytest.raises(error, match=match):
        hardware.onednn_isa_class(bad)


def test_int8_and_bf16_dot_follow_the_isa_name(monkeypatch):
    """onednn_int8_dot/onednn_bf16_dot answer from the name oneDNN printed, for every recorded name."""
    for isa, _, klass in ONEDNN_NAMES:
        monkeypatch.setattr(hardware, "onednn_isa", lambda isa=isa: isa)
        assert hardware.onednn_int8_dot() is (klass is not None and klass.onednn_int8_dot), isa
        assert hardware.onednn_bf16_dot() is (klass is not None and klass.onednn_bf16_dot), isa
    monkeypatch.setattr(hardware, "onednn_isa", lambda: "AArch64 SVE (512 bits)")
    assert hardware.onednn_int8_dot() is None and hardware.onednn_bf16_dot() is None


def test_the_class_table_marks_the_cpu_and_the_kernels(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(_SAPPHIRE_RAPIDS_NO_AMX.split()))
    monkeypatch.setattr(hardware, "onednn_isa", lambda: "Intel AVX2")
    monkeypatch.setattr(hardware, "fbgemm_saturates", lambda: True)
    table = hardware.class_table()
    assert list(table.index) == [c.label for c in hardware.CPU_CLASSES]
    assert table.loc[CpuClass.AVX10_1.label, "you"] == "CPU"
    assert table.loc[CpuClass.AVX2.label, "you"] == "kernels"
    assert (table["you"] != "").sum() == 2
    d = hardware.dispatch()
    assert d.cpu is CpuClass.AVX10_1 and d.kernels is CpuClass.AVX2
    assert any("measured class is shown" in n for n in d.notes)


def test_dispatch_says_when_fbgemm_disagrees_with_the_class(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_flags", lambda: frozenset(_SAPPHIRE_RAPIDS_NO_AMX.split()))
    monkeypatch.setattr(hardware, "onednn_isa", lambda: "Intel AVX 10.1")
    monkeypatch.setattr(hardware, "fbgemm_saturates", lambda: True)  # e.g. FBGEMM_ENABLE_INSTRUCTIONS=AVX2 alone
    d = hardware.dispatch()
    assert d.kernels is CpuClass.AVX10_1
    assert any("fbgemm was measured saturating" in n for n in d.notes)
    assert "fbgemm was measured saturating" in hardware.describe()
