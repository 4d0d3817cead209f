"""The CUDA nearest-centroid GEMM's shared-memory configuration, chosen on the host: whatever the
rows' width, it fits the opt-in limit of every arch the wheel ships (a kernel asking for more fails
to launch there) and prefers resident z tiles and the deeper pipeline where they fit."""

import pytest

from latentops.native import library

# cudaDevAttrMaxSharedMemoryPerBlockOptin of each arch of the wheel that takes the tensor-core
# path (sm_75 rescans exactly, without the GEMM), less the GEMM's 2 KiB of static shared memory.
OPTIN = {"sm_80": 166912, "sm_86": 101376, "sm_89": 101376, "sm_90": 232448, "sm_100": 232448, "sm_120": 101376}
STATIC = 256 * 8
PITCH = (32 + 4) * 4  # bytes per smem tile row
WIDTHS = [1, 2, 31, 64, 65, 127, 128, 129, 255, 256, 257, 512, 4095, 65536]


def _config(d, element_bytes, arch):
    if not hasattr(library, "nearest_centroid_cuda_gemm_config"):
        pytest.skip("the compiled extension is unavailable")
    return library.nearest_centroid_cuda_gemm_config(d=d, element_bytes=element_bytes, smem_optin=OPTIN[arch] - STATIC)


@pytest.mark.parametrize("arch", OPTIN)
@pytest.mark.parametrize("element_bytes", [4, 2])
def test_every_width_fits_every_arch(arch, element_bytes):
    for d in WIDTHS:
        resident, stages, smem = _config(d, element_bytes, arch)
        k_tiles = -(-(d if element_bytes == 4 else -(-d // 2)) // 32)
        assert 0 < smem <= OPTIN[arch] - STATIC, (d, smem)
        assert smem == ((k_tiles if resident else stages) * 256 + stages * 64) * PITCH
        assert stages in (2, 3)
        assert not resident or k_tiles <= 4


def test_the_fastest_configuration_that_fits_is_taken():
    # fp32 D=64 (2 k-tiles): resident with 3 stages needs 101,376 bytes, 2 KiB over sm_86's budget.
    assert _config(64, 4, "sm_90") == (True, 3, 101376)
    assert _config(64, 4, "sm_86") == (True, 2, 92160)
    # fp32 D=128 (4 k-tiles): resident needs 175,104 bytes with 3 stages and 165,888 with 2, both
    # over the A100's 164,864, which streams z with 3 stages; sm_86 streams with 2.
    assert _config(128, 4, "sm_90") == (True, 3, 175104)
    assert _config(128, 4, "sm_80") == (False, 3, 138240)
    assert _config(128, 4, "sm_86") == (False, 2, 92160)
    # Wide rows stream z: 3 stages where 138,240 bytes fit.
    assert _config(4096, 4, "sm_90") == (False, 3, 138240)
    assert _config(4096, 2, "sm_120") == (False, 2, 92160)


def test_nothing_fits_a_tiny_limit():
    if not hasattr(library, "nearest_centroid_cuda_gemm_config"):
        pytest.skip("the compiled extension is unavailable")
    assert library.nearest_centroid_cuda_gemm_config(d=64, element_bytes=4, smem_optin=48 * 1024)[2] == 0
