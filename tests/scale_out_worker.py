"""One process of the multi-host reconstruction test (tests/test_scale_out_multihost.py).

    python tests/scale_out_worker.py OUT.npz [COORDINATOR NUM_PROCESSES PROCESS_ID]

Runs sharded inference of a tiny random model on fixed images and a sharded global alignment of a
synthetic scene over every device of every process (a 1-D mesh), and saves what this process got.
Without the last three arguments it runs alone (one process, its own devices).
"""
import sys

import jax


def main(out, coordinator=None, num_processes=1, process_id=0):
    if coordinator:
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=coordinator, num_processes=int(num_processes),
                                   process_id=int(process_id))
    import numpy as np

    import dust3r_jax
    from dust3r_jax import meshes
    import synthetic_scenes as synthetic
    from dust3r_jax.inference import inference
    from dust3r_jax.loading import init_params
    from dust3r_jax.model import AsymmetricCroCo3DStereo
    from dust3r_jax.model_config import model_config
    from dust3r_jax.pairs import make_pairs

    mesh = meshes.data_mesh()  # every device of every process
    model = AsymmetricCroCo3DStereo(model_config(enc_embed_dim=32, enc_depth=2, enc_num_heads=2, dec_embed_dim=32,
                                                 dec_depth=2, dec_num_heads=2, head_type="linear"))
    params = init_params(model, jax.random.key(0))
    rng = np.random.default_rng(0)
    images = [{"img": rng.uniform(-1, 1, (1, 32, 48, 3)).astype(np.float32),
               "true_shape": np.array([[32, 48]], np.int32), "idx": i, "instance": str(i)} for i in range(3)]
    output = inference(make_pairs(images, "complete", symmetrize=True), model, params, batch_size=4,
                       verbose=False, mesh=mesh)

    truth = synthetic.make_scene(5, 24, 32, seed=1)
    scene = dust3r_jax.global_align(synthetic.make_predictions(truth, synthetic.complete_pairs(5), noise=0.01, seed=1),
                                    niter=50, mesh=mesh)
    np.savez(out, pts3d=output["pred1"]["pts3d"], pts3d_other=output["pred2"]["pts3d_in_other_view"],
             conf=output["pred2"]["conf"], loss=scene.loss, cam2world=scene.cam2world, focals=scene.focals,
             depth0=scene.depthmaps[0], devices=jax.device_count(), processes=jax.process_count())


if __name__ == "__main__":
    main(*sys.argv[1:])
