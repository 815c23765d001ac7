"""The `device` argument of the official API: "cpu", "cuda", "gpu", "tpu" (optionally ":N") or a
jax.Device, turned into a jax.Device.

The official code takes PyTorch device strings (`inference(pairs, model, 'cuda')`,
`global_aligner(output, device='cpu')`); JAX names the CUDA backend "gpu".
"""
import jax

from dust3r_jax.errors import InputError

# official / PyTorch name -> JAX platform
_PLATFORMS = {"cpu": "cpu", "cuda": "gpu", "gpu": "gpu", "tpu": "tpu"}


def resolve_device(device):
    """None -> None (JAX's default device); a jax.Device as it is; "cuda:1" -> the second GPU.

    Raises InputError (one line) for an unknown name or a device JAX does not have here.
    """
    if device is None or isinstance(device, jax.Device):
        return device
    if not isinstance(device, str) and not hasattr(device, "type"):
        raise InputError(f"device: expected 'cpu', 'cuda', 'gpu', 'tpu' or a jax.Device, found a {type(device).__name__}")
    name = str(device)  # also torch.device objects, whose str() is "cuda:0"
    platform_name, _, index = name.partition(":")
    platform = _PLATFORMS.get(platform_name.lower())
    if platform is None or (index and not index.isdigit()):
        raise InputError(f"device {name!r}: expected 'cpu', 'cuda', 'gpu', 'tpu' (optionally ':N') or a jax.Device")
    try:
        devices = jax.devices(platform)
    except RuntimeError:
        devices = []
    if not devices:
        raise InputError(f"device {name!r}: JAX has no {platform.upper()} here "
                         f"(available: {', '.join(sorted({d.platform for d in jax.devices()}))})")
    k = int(index or 0)
    if k >= len(devices):
        raise InputError(f"device {name!r}: JAX sees only {len(devices)} {platform.upper()} device(s)")
    return devices[k]
