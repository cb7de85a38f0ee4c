"""A report names its CPU by model (and whether it has AVX512-BF16), not by architecture."""

from pathlib import Path

from train.hardware import cpu_name


def test_cpu_name_is_the_model_name_where_linux_gives_one():
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.exists() else []
    models = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    name = cpu_name()
    assert name
    if models:
        assert name.startswith(models[0])
        assert name.endswith("with AVX512-BF16") == any("avx512_bf16" in line for line in lines
                                                         if line.startswith("flags"))
