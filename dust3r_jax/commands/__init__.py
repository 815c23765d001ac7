"""Sub-commands of the `dust3r-jax` CLI (see dust3r_jax/cli.py)."""
