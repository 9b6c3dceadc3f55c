"""Saving and loading :class:`~cplmix_sc.CplMixVAE` (scvi-tools' format), with our checks."""

from __future__ import annotations

import os
import pickle
from pathlib import Path


class SavingMixin:
    """``save`` that never leaves a stale ``adata.h5ad`` beside new weights, and ``load`` with
    errors that name the file and the fix."""

    def save(self, dir_path: str | os.PathLike, prefix: str | None = None,
             overwrite: bool = False, save_anndata: bool = False, **kwargs) -> None:
        """Save the model (scvi-tools' :meth:`~scvi.model.base.BaseModelClass.save`).

        With ``overwrite=True`` and ``save_anndata=False``, an ``adata.h5ad`` left by an
        earlier save in ``dir_path`` is removed: :meth:`load` would otherwise pair the new
        weights with the old data.
        """
        stale = Path(dir_path) / f"{prefix or ''}adata.h5ad"
        super().save(str(dir_path), prefix=prefix, overwrite=overwrite,
                     save_anndata=save_anndata, **kwargs)
        if overwrite and not save_anndata and stale.exists():
            stale.unlink()

    @classmethod
    def load(cls, dir_path: str | os.PathLike, adata=None, prefix: str | None = None,
             **kwargs):
        """Load a model saved by :meth:`save` (scvi-tools'
        :meth:`~scvi.model.base.BaseModelClass.load`); ``adata`` must have the saved model's
        genes and batches."""
        model_file = Path(dir_path) / f"{prefix or ''}model.pt"
        if not model_file.is_file():
            raise FileNotFoundError(
                f"No saved model at {str(model_file)!r}: pass the folder given to "
                "model.save(...) (it holds model.pt)."
            )
        saved_data = Path(dir_path) / f"{prefix or ''}adata.h5ad"
        if adata is None and not saved_data.is_file() and not kwargs.get("backup_url"):
            raise ValueError(
                f"{str(dir_path)!r} holds no saved AnnData (saved without save_anndata=True): "
                "pass the data, CplMixVAE.load(dir_path, adata=adata), with the model's genes."
            )
        try:
            return super().load(str(dir_path), adata=adata, prefix=prefix, **kwargs)
        except (EOFError, pickle.UnpicklingError, RuntimeError) as err:
            if isinstance(err, RuntimeError) and "PytorchStreamReader" not in str(err):
                raise  # not a broken file
            raise ValueError(_unreadable(model_file, err)) from err


def _unreadable(path: Path, err: Exception) -> str:
    return (f"{str(path)!r} is not a readable saved model ({type(err).__name__}: the file is "
            "truncated, e.g. by a full disk or an interrupted copy, or not a model.pt). Save "
            "the model again, or load another copy.")
