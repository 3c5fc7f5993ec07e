"""cpuinfo → the box's cpu-info: flag names, signature, vCPU count; AES paths; srtp-mips."""

from __future__ import annotations

import platform

import pytest

from appliance.hal import aes
from appliance.hal.cpu import parse_cpuinfo, trace_lines
from appliance.services.hardware import cpu_info

# the seed's example CPU (i5-7400, signature 0x906e9), as Linux prints it
SEED_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 158
model name\t: Intel(R) Core(TM) i5-7400 CPU @ 3.00GHz
stepping\t: 9
cpu MHz\t\t: 3000.000
flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ss syscall nx pdpe1gb rdtscp lm constant_tsc arch_perfmon rep_good nopl xtopology cpuid pni pclmulqdq ssse3 fma cx16 pcid sse4_1 sse4_2 x2apic movbe popcnt aes xsave avx f16c rdrand hypervisor lahf_lm abm 3dnowprefetch fsgsbase bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt xsaveopt xsavec xgetbv1 xsaves arat

processor\t: 1
vendor_id\t: GenuineIntel
"""  # noqa: E501

SEED_FLAGS = (
    "sse3 pclmulqdq ssse3 sse4_1 sse4_2 aesni xsave xsaveopt osxsave avx f16c rdrand "
    "fpu mmx fxsr sse sse2 avx2"
)


def test_seed_cpu_gives_the_seed_flags_and_signature() -> None:
    cpu = parse_cpuinfo(SEED_CPUINFO)
    assert cpu.vendor == "GenuineIntel"
    assert cpu.signature == 0x906E9
    assert " ".join(cpu.box_flags()) == SEED_FLAGS
    assert cpu.count == 2
    assert cpu.mhz == 3000.0
    assert "multi-core is experimental" in trace_lines(cpu)[0]


def test_qemu64_without_aes() -> None:
    cpu = parse_cpuinfo(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 15\nmodel\t\t: 107\n"
        "model name\t: QEMU Virtual CPU version 2.5+\nstepping\t: 1\n"
        "flags\t\t: fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 "
        "clflush mmx fxsr sse sse2 syscall nx lm nopl cpuid pni cx16 hypervisor lahf_lm\n"
    )
    assert cpu.signature == 0x60FB1  # family 15+0, ext model 6 — what QEMU's qemu64 shows
    assert cpu.box_flags() == ["sse3", "fpu", "mmx", "fxsr", "sse", "sse2"]
    assert trace_lines(cpu) == []


def test_cpu_info_xml_lists_has_aesni_only_for_the_native_path() -> None:
    cpu = parse_cpuinfo(SEED_CPUINFO)
    pure = cpu_info(cpu, aes.PureAes(), 600)
    assert pure.startswith('<info><cpu vendor="GenuineIntel" signature="0x906e9" brand="Intel(R)')
    assert 'act-features="" srtp-mips="600"/></info>' in pure

    class FakeNative:
        name = "aesni"

    assert 'act-features="has_aesni"' in cpu_info(cpu, FakeNative(), 5)  # type: ignore[arg-type]


def test_pure_aes_meets_fips197() -> None:
    rk = aes.expand_key(aes.FIPS197_KEY)
    assert aes.PureAes().encrypt_blocks(rk, aes.FIPS197_PLAIN) == aes.FIPS197_CIPHER


def test_without_aes_flag_the_pure_path_is_chosen() -> None:
    chosen, why = aes.select_aes(frozenset({"sse2"}))
    assert chosen.name == "python" and "no aes" in why


@pytest.mark.skipif(platform.machine() != "x86_64", reason="x86-64 machine code")
def test_aesni_path_on_this_host_matches_the_pure_one() -> None:
    cpu = parse_cpuinfo(open("/proc/cpuinfo").read())
    chosen, why = aes.select_aes(cpu.flags)
    if "aes" not in cpu.flags:
        pytest.skip("host CPU without AES-NI")
    assert chosen.name == "aesni", why
    rk = aes.expand_key(bytes(range(100, 116)))
    data = bytes(range(256)) * 2
    assert chosen.encrypt_blocks(rk, data) == aes.PureAes().encrypt_blocks(rk, data)
    assert aes.measure_srtp_mips(chosen, 1000, 0.01) < aes.measure_srtp_mips(
        aes.PureAes(), 1000, 0.01
    )
