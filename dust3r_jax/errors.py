"""Errors for bad user input.

Everything a user can get wrong (a file, an image, a config key, an argument) raises an
`InputError` whose message is one line naming the thing and the problem, e.g.
"checkpoint model.pth: truncated zip archive (is the download complete?)". The CLI prints such an
error without a traceback; library users can catch it as a `ValueError`.
"""


class InputError(ValueError):
    """Bad user input: the message names the file/key/argument and what is wrong with it."""


class CheckpointError(InputError):
    """A checkpoint that cannot be read or does not fit its config."""


class CrocoCheckpointError(CheckpointError):
    """A checkpoint without DUSt3R heads (CroCo pre-training weights) loaded without `croco=True`:
    its heads would be random, which only an explicit request may do."""


class ImageError(InputError):
    """An image file or image array that cannot be used."""


class ConfigError(InputError):
    """A config key or value that does not exist or does not fit."""
