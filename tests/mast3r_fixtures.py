"""Reading the official MASt3R sparse-alignment fixture (reference/mast3r/sparse_ga/scene.npz), for
tests/test_mast3r_sparse_ga.py and experiments/bench_sparse_align.py."""

N_VIEWS = 4
# the official run's pair list: make_pairs(complete, symmetrize=True) puts (i, j), i > j, first
FIRST = [(1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2)]


def fixture_inputs(ref):
    """(images, pair_predictions) of the fixture, both orders listed as the official run did."""
    images = [ref[f"gt__img_u8__v{k}"] for k in range(N_VIEWS)]

    def result(i, j, name, view):
        p = f"pred__{i}_{j}__{name}_"
        return {"pts3d": ref[p + "pts3d"], "conf": ref[p + "conf"], "desc_conf": ref[p + "desc_conf"],
                "desc": ref[f"desc__v{view}"]}

    preds = {(i, j): (result(i, j, "res11", i), result(i, j, "res21", j), result(i, j, "res22", j),
                      result(i, j, "res12", i)) for i, j in FIRST}
    for i, j in FIRST:
        res11, res21, res22, res12 = preds[i, j]
        preds[j, i] = (res22, res12, res11, res21)
    return images, preds
