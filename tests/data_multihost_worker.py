"""One process of the two-host data test (run by test_data_loader.py, not collected by pytest).

argv: process_id, coordinator port, reference dir, output .npz. Each process reads only its rows
of the first global batch, builds global arrays with `jax.make_array_from_process_local_data`
and writes what it read and a reduction computed over the global array.
"""
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
os.environ["JAX_PLATFORMS"] = "cpu"

import jax  # noqa: E402
import numpy as np  # noqa: E402


def main():
    process_id, port, reference_dir, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    jax.distributed.initialize(coordinator_address=f"localhost:{port}", num_processes=2, process_id=process_id)
    from jax.sharding import NamedSharding, PartitionSpec

    from dust3r_jax.data.loader import PairLoader, to_global_arrays
    from dust3r_jax.data.mixture import parse_dataset

    fake = f"{reference_dir}/datasets/fake"
    dataset = parse_dataset(f"2 * ARKitScenes(split='train', ROOT='{fake}/ARKitScenes', aug_crop=16, "
                            f"resolution=[(32, 24), (32, 16)])")
    loader = PairLoader(dataset, 2, seed=5)  # world size and rank from jax
    view1, _ = next(loader.epoch(0))
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    batch = to_global_arrays({"img": view1["img"]}, NamedSharding(mesh, PartitionSpec("data")))
    total = jax.jit(lambda x: x.sum(axis=(1, 2, 3)), out_shardings=NamedSharding(mesh, PartitionSpec()))(batch["img"])
    np.savez(out, idx=view1["idx"], global_shape=np.array(batch["img"].shape), per_sample_sum=np.asarray(total),
             process_count=jax.process_count())
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
