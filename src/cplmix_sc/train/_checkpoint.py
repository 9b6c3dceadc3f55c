"""Checkpoints of a training run: writing them, reading them, and checking that one belongs
to the model and data that resume from it."""

from __future__ import annotations

import hashlib
import os
import random
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from lightning.pytorch import Callback

#: file name of the checkpoint that :class:`ResumableCheckpoint` keeps up to date
CHECKPOINT_NAME = "last.ckpt"
#: key of the CplMixVAE section of a checkpoint
CHECKPOINT_KEY = "cplmix_sc"


def get_rng_state() -> dict:
    """Torch (CPU and CUDA), NumPy and Python random states, as checkpoint-safe objects."""
    np_state = np.random.get_state()  # noqa: NPY002 - the global state is what we save
    state = {
        "torch": torch.get_rng_state(),
        "numpy": (np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]),
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"].cpu())
    name, keys, *rest = state["numpy"]
    np_state = (name, np.asarray(keys, dtype=np.uint32), *rest)
    np.random.set_state(np_state)  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


class ResumableCheckpoint(Callback):
    """Save a checkpoint (weights, optimiser, loop and RNG states, phase) every N epochs.

    The file ``dirpath / "last.ckpt"`` is replaced atomically at the end of every
    ``every_n_epochs``-th epoch and of the phase's last epoch. Besides what Lightning saves
    (module parameters *and* buffers, e.g. the start's PCA and centres and the usage prior,
    optimiser state, epoch and step counters), the checkpoint holds the random number
    generators' states, so that a resumed run draws the same mini-batches, augmentations and
    Gumbel noise as an uninterrupted one, and ``meta``: the phase, whether it is complete and
    the arguments that :meth:`~cplmix_sc.CplMixVAE.train` needs to continue.

    Parameters
    ----------
    dirpath
        Directory of the checkpoint (created if needed).
    every_n_epochs
        Save every this many epochs of a phase.
    meta
        JSON-like description of the run; ``meta["phase"]`` names the phase.
    """

    def __init__(self, dirpath: str | os.PathLike, every_n_epochs: int, meta: dict):
        super().__init__()
        self.dirpath = Path(dirpath)
        self.every_n_epochs = every_n_epochs
        self.meta = meta

    @property
    def state_key(self) -> str:
        return "CplMixResumableCheckpoint"

    @property
    def path(self) -> Path:
        return self.dirpath / CHECKPOINT_NAME

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        done = trainer.current_epoch + 1
        last = done >= trainer.max_epochs
        if done % self.every_n_epochs and not last:
            return
        self.meta = {**self.meta, "epochs_done": done, "phase_complete": last}
        self.dirpath.mkdir(parents=True, exist_ok=True)
        tmp = self.dirpath / f".{CHECKPOINT_NAME}.tmp"
        trainer.save_checkpoint(tmp)  # every rank calls it; under DDP only rank 0 writes
        if trainer.is_global_zero:
            os.replace(tmp, self.path)  # a crash while writing never leaves a broken last.ckpt
        trainer.strategy.barrier("cplmix_checkpoint")

    def state_dict(self) -> dict:
        return {"rng": get_rng_state(), "meta": self.meta}

    def load_state_dict(self, state_dict: dict) -> None:
        # called while Lightning restores the checkpoint, before the first mini-batch is drawn
        set_rng_state(state_dict["rng"])


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint written by :class:`ResumableCheckpoint` (on the CPU)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise FileNotFoundError(
            f"No checkpoint at {str(path)!r}; pass the checkpoint_dir of the interrupted run "
            "(train(checkpoint_dir=..., resume=True)) or the path of its last.ckpt."
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # truncated zip, garbage, another pickle: all unreadable here
        raise ValueError(
            f"{str(path)!r} is not a readable checkpoint ({type(err).__name__}: the file is "
            "truncated, e.g. by a full disk, or not a torch checkpoint). Delete it and train "
            "from the start, or resume from another checkpoint."
        ) from err
    if not isinstance(ckpt, dict):
        raise ValueError(f"{str(path)!r} is not a CplMixVAE checkpoint; it cannot be resumed.")
    state = ckpt.get("callbacks", {}).get("CplMixResumableCheckpoint")
    if state is None:
        raise ValueError(
            f"{str(path)!r} is not a CplMixVAE checkpoint (written by "
            "train(checkpoint_dir=...)); it cannot be resumed."
        )
    ckpt[CHECKPOINT_KEY] = state
    ckpt["path"] = str(path)
    return ckpt


def jsonable(value):
    """Plain Python types (for comparing a model's arguments with a checkpoint's)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items() if k != "adata"}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value if isinstance(value, str | int | float | bool | type(None)) else repr(value)


def flat_params(init_params: dict) -> dict:
    """A model's ``init_params_`` as one flat dictionary of its arguments."""
    return {
        **init_params.get("non_kwargs", {}),
        **init_params.get("kwargs", {}).get("module_kwargs", {}),
    }


def _digest(names: pd.Index) -> str:
    return hashlib.sha256("\0".join(map(str, names)).encode()).hexdigest()


def data_identity(var_names: pd.Index, obs_names: pd.Index) -> dict:
    """What identifies a run's data in its checkpoint: the genes and the cells, in order."""
    return {"genes": _digest(var_names), "n_genes": len(var_names),
            "cells": _digest(obs_names), "n_cells": len(obs_names)}


def check_resume(ckpt: dict, init_params: dict, state_dict: dict, identity: dict) -> None:
    """Refuse a checkpoint written for other model arguments, other shapes, other genes or
    other cells (names or order); a checkpoint without a data identity (written before
    identities were stored) is accepted with a warning."""
    where = f"The checkpoint {ckpt['path']!r}"
    saved = flat_params(ckpt[CHECKPOINT_KEY]["meta"]["init_params"])
    mine = flat_params(jsonable(init_params))
    diff = [f"{k}={saved.get(k)!r} there, {mine.get(k)!r} here"
            for k in sorted(set(saved) | set(mine)) if saved.get(k) != mine.get(k)]
    if diff:
        raise ValueError(
            f"{where} was written by a model built with other arguments ({'; '.join(diff)}); "
            "build the model with the same arguments to resume."
        )
    shapes = {k: tuple(v.shape) for k, v in state_dict.items()}
    saved_shapes = {k.removeprefix("module."): tuple(v.shape)
                    for k, v in ckpt["state_dict"].items() if k.startswith("module.")}
    if shapes != saved_shapes:
        raise ValueError(
            f"{where} does not fit this model (different genes, batches or sizes); resume "
            "with the AnnData and arguments of the interrupted run."
        )
    saved_id = ckpt[CHECKPOINT_KEY]["meta"].get("data")
    if saved_id is None:
        warnings.warn(
            f"{where} does not record its genes and cells (written by an older version): "
            "make sure this AnnData has the interrupted run's genes and cells in the same order.",
            UserWarning,
            stacklevel=4,
        )
        return
    for what, n in (("genes", "n_genes"), ("cells", "n_cells")):
        if saved_id[what] != identity[what]:
            raise ValueError(
                f"{where} was written for other {what} ({saved_id[n]} {what} there, "
                f"{identity[n]} here, other names or another order): resume with the AnnData "
                f"of the interrupted run (same {what}, same order), or train a new model "
                "without `resume`."
            )


def check_checkpoint_dir(checkpoint_dir) -> None:
    """Refuse a ``checkpoint_dir`` that is an existing file (before any epoch is trained)."""
    if checkpoint_dir is None:
        return
    if not isinstance(checkpoint_dir, str | os.PathLike):
        raise TypeError(f"`checkpoint_dir` must be a path, got {checkpoint_dir!r}.")
    if Path(checkpoint_dir).exists() and not Path(checkpoint_dir).is_dir():
        raise ValueError(
            f"checkpoint_dir={str(checkpoint_dir)!r} is a file; pass a folder (it is created "
            "if needed and will hold last.ckpt)."
        )
