"""Stage 3: 512 wide, DPT head (random), fine-tuned from the 512 linear model.

Official: as stage 2 (8 GPUs x 4 x accum 2) with 15 warm-up of 90 epochs.
Set `--config.init_from` to stage 2's best checkpoint (the DPT head starts random).
"""
import importlib.util
from pathlib import Path


def _linear_512_config():
    # configs are loaded by path, not as a package: load the sibling the same way
    path = Path(__file__).with_name("train_512_linear.py")
    spec = importlib.util.spec_from_file_location("train_512_linear", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def get_config():
    c = _linear_512_config()
    c.model.head_type = "dpt"
    c.optim.update(warmup_epochs=15, epochs=90)
    c.checkpoint.every_epochs = 5
    return c
