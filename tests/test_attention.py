"""The attention kernel choice (model config `attention`) and the kernels that run on the CPU."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dust3r_jax.errors import ConfigError
from dust3r_jax.layers.attention import attention_implementation, multi_head_attention
from dust3r_jax.model import model_config


def test_auto_takes_cudnn_only_for_half_precision_on_cuda():
    assert attention_implementation(jnp.float32, 64, "cpu") == "matmul"
    assert attention_implementation(jnp.float32, 64, "cuda") == "matmul"
    assert attention_implementation(jnp.bfloat16, 64, "cpu") == "xla"
    assert attention_implementation(jnp.bfloat16, 64, "tpu") == "xla"
    # 'cudnn' needs a CUDA device of compute capability >= 8.0; this machine may have none
    has_sm80 = any(tuple(map(int, d.compute_capability.split("."))) >= (8, 0)
                   for d in jax.devices() if d.platform == "gpu" and hasattr(d, "compute_capability"))
    assert attention_implementation(jnp.bfloat16, 64, "cuda") == ("cudnn" if has_sm80 else "xla")
    assert attention_implementation(jnp.bfloat16, 36, "cuda") == "xla"  # head size not a multiple of 8


@pytest.mark.parametrize("dtype,tol", [(jnp.float32, 1e-6), (jnp.bfloat16, 2e-2)])
def test_kernels_that_run_here_agree(dtype, tol):
    q, k, v = (jax.random.normal(key, (2, 40, 3, 16)) for key in jax.random.split(jax.random.key(0), 3))
    reference = multi_head_attention(q, k, v, "matmul")
    for implementation in ("auto", "xla"):
        out = multi_head_attention(*(t.astype(dtype) for t in (q, k, v)), implementation)
        assert out.dtype == dtype
        np.testing.assert_allclose(np.asarray(out, np.float32), reference, atol=tol)


def test_config_refuses_an_unknown_kernel():
    assert model_config().attention == "auto"
    with pytest.raises(ConfigError, match="attention='flash'"):
        model_config(attention="flash")
