"""Model names -> something `load_model` reads: Hugging Face Hub ids are downloaded and cached.

    resolve_weights("naver/DUSt3R_ViTLarge_BaseDecoder_512_dpt")  # -> cached folder (config.json + model.safetensors)
    resolve_weights("DUSt3R_ViTLarge_BaseDecoder_512_dpt.pth")    # an existing path: returned as it is
    resolve_weights("some_name")                                  # no '/', not a path: returned unchanged

Hub ids are fetched with `huggingface_hub` (the library the official `from_pretrained` uses), into
its cache (`HF_HUB_CACHE` / `HF_HOME`, default ~/.cache/huggingface/hub); with `HF_HUB_OFFLINE=1`
the cached copy is used without any network access. The official repositories hold what
`PyTorchModelHubMixin.save_pretrained` writes: `config.json` + `model.safetensors`, i.e. a
Hugging Face folder, which `load_model` reads.
"""
import os
import re
from pathlib import Path

from dust3r_jax.errors import CheckpointError

HUB_FILES = ("config.json", "model.safetensors")
# "owner/name" as the Hub spells repository ids
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w][\w.-]*$")
# a name with one of these endings is a file the user meant, never a repository
_FILE_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".json", ".npz")
_LOCAL_HINT = ("pass a local file or folder instead: an official .pth, a folder with config.json + "
               "model.safetensors, or a folder written by `dust3r-jax convert`")


def is_hub_id(name) -> bool:
    """Whether `name` is read as a Hub repository id: a string "owner/name" that is not an
    existing path and does not end like a checkpoint file."""
    if not isinstance(name, str) or os.path.exists(name):
        return False
    return bool(_HUB_ID.match(name)) and not name.lower().endswith(_FILE_SUFFIXES)


def resolve_weights(name_or_path, revision=None, cache_dir=None, token=None, local_files_only=False,
                    force_download=False):
    """What to hand to `load_model` for `name_or_path`.

    A Hub id -> the local snapshot folder holding config.json + model.safetensors (downloaded
    once, then read from the cache; the keyword arguments are those of `hf_hub_download`).
    Anything else (an existing path, a path that does not exist, a bare name) is returned
    unchanged: `load_model` reports a missing file or reads a name it knows.
    Raises CheckpointError (one line) when a Hub id can be neither downloaded nor found in the cache.
    """
    if not is_hub_id(name_or_path):
        return name_or_path
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub import utils as errors  # (where the error classes are from 0.23 to 2.x)

    paths = []
    for filename in HUB_FILES:
        try:
            paths.append(hf_hub_download(name_or_path, filename, revision=revision, cache_dir=cache_dir, token=token,
                                         local_files_only=local_files_only, force_download=force_download))
        except errors.LocalEntryNotFoundError:
            offline = local_files_only or constants.HF_HUB_OFFLINE
            cache = cache_dir or constants.HF_HUB_CACHE
            reason = (f"offline (HF_HUB_OFFLINE=1) and not in the cache {cache}" if offline else
                      f"no connection to the Hub and not in the cache {cache}")
            raise _not_downloaded(name_or_path, reason) from None
        except errors.RepositoryNotFoundError:
            raise _not_downloaded(name_or_path, "no such repository (or it is gated/private: set HF_TOKEN)") from None
        except errors.RevisionNotFoundError:
            raise _not_downloaded(name_or_path, f"no revision {revision!r}") from None
        except errors.EntryNotFoundError:
            raise _not_downloaded(name_or_path, f"the repository has no {filename}") from None
        except (errors.HfHubHTTPError, OSError) as err:
            raise _not_downloaded(name_or_path, str(err).strip().splitlines()[0] if str(err).strip()
                                  else type(err).__name__) from None
    return Path(paths[-1]).parent


def _not_downloaded(name, reason):
    return CheckpointError(f"model {name!r} could not be downloaded from the Hugging Face Hub ({reason}); "
                           f"{_LOCAL_HINT}")
