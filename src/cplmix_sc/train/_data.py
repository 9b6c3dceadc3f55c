"""Device-resident data path: the registered matrix lives on the accelerator, mini-batches too.

scvi-tools' loaders slice an AnnData on the host for every mini-batch and copy it to the
device. For a model of about a million parameters that copy, and the Python around it, costs
more than the step. :class:`DeviceDataSplitter` keeps scvi-tools' train/validation split
(:class:`~scvi.dataloaders.DataSplitter`, same indices for the same seed) but serves the
mini-batches from tensors that stay on the training device:

- a dense matrix is copied once (on the CPU a float32 C-ordered array is shared, not copied);
- a sparse (CSR) matrix is kept as CSR (``indptr``, ``indices``, ``data``) unless its dense
  form is small (``max_dense_bytes``), and every mini-batch is densified on the device by a
  fixed-shape gather and scatter (no host round trip, no data-dependent shapes);
- the shuffling order is drawn once per epoch on the host (from the global torch generator,
  as scvi-tools' sampler does, so checkpoints resume exactly) and copied to the device once;
  a step only slices it: nothing in a step waits for the host.

Under DDP every rank gets an equal share of the epoch's permutation (the seed is broadcast
from rank 0), so all ranks run the same number of steps.
"""

from __future__ import annotations

import math

import h5py
import numpy as np
import scipy.sparse as sp
import torch
from scvi import REGISTRY_KEYS
from scvi.dataloaders import DataSplitter

from .._backed import is_backed, read_rows, row_blocks

#: a sparse matrix is densified on the device if its dense float32 form is at most this large
MAX_DENSE_BYTES = 512 * 2**20
#: on an accelerator, the data may take at most this fraction of the free device memory
DEVICE_MEMORY_FRACTION = 0.5


class DeviceMatrix:
    """Rows of a count matrix held on one device, densified a mini-batch at a time.

    Parameters
    ----------
    x
        ``(n_cells, n_genes)`` NumPy array or SciPy sparse matrix (CSR is used as is; other
        formats are converted once, on the host), or the matrix of a backed AnnData: a CSR
        one is read into host memory as CSR (never densified whole on the host), a dense one
        is copied to the device a block of rows at a time.
    device
        Where the tensors live.
    max_dense_bytes
        A sparse matrix whose dense float32 form is at most this large is densified once.
    """

    def __init__(
        self, x, device: torch.device | str = "cpu", max_dense_bytes: int = MAX_DENSE_BYTES
    ):
        device = torch.device(device)
        self.shape = tuple(int(s) for s in x.shape)
        n, g = self.shape
        self.device = device
        self.dense: torch.Tensor | None = None
        if is_backed(x):
            if isinstance(x, h5py.Dataset):  # dense in the file: fill the device copy by blocks
                self.dense = torch.empty((n, g), dtype=torch.float32, device=device)
                start = 0
                for block in row_blocks(x):
                    stop = start + block.shape[0]
                    self.dense[start:stop] = torch.from_numpy(
                        np.asarray(block, dtype=np.float32)
                    ).to(device)
                    start = stop
                return
            x = read_rows(x)  # CSR in the file: CSR in host memory
        if sp.issparse(x):
            x = x.tocsr() if x.format != "csr" else x
            if not x.has_sorted_indices:
                x = x.sorted_indices()
            indptr = torch.from_numpy(np.asarray(x.indptr, dtype=np.int64))
            indices = torch.from_numpy(np.asarray(x.indices, dtype=np.int32))
            data = torch.from_numpy(np.asarray(x.data, dtype=np.float32))
            if n * g * 4 <= max_dense_bytes:
                # densified a block of rows at a time: peak = the dense matrix + one block
                self.dense = torch.empty((n, g), dtype=torch.float32, device=device)
                step = max(1, (64 * 2**20) // max(g * 4, 1))
                for i in range(0, n, step):
                    block = np.asarray(x[i : i + step].toarray(), dtype=np.float32)
                    self.dense[i : i + step] = torch.from_numpy(block).to(device)
            else:
                self.indptr = indptr.to(device)
                self.indices = indices.to(device)
                self.data = data.to(device)
                lengths = np.diff(x.indptr)
                # width of the padded gather: the longest row (at most n_genes)
                self.max_row_nnz = max(int(lengths.max()) if n else 1, 1)
                self._offsets = torch.arange(self.max_row_nnz, device=device)
        else:
            arr = np.ascontiguousarray(np.asarray(x), dtype=np.float32)
            self.dense = torch.from_numpy(arr).to(device)  # shares memory on the CPU

    @property
    def is_sparse(self) -> bool:
        return self.dense is None

    @property
    def nbytes(self) -> int:
        if self.dense is not None:
            return self.dense.numel() * self.dense.element_size()
        return sum(t.numel() * t.element_size() for t in (self.indptr, self.indices, self.data))

    def rows(self, idx: torch.Tensor) -> torch.Tensor:
        """Dense ``(len(idx), n_genes)`` float32 rows; ``idx`` on this object's device."""
        if self.dense is not None:
            return self.dense.index_select(0, idx)
        start = self.indptr.index_select(0, idx)
        length = self.indptr.index_select(0, idx + 1) - start
        pos = start[:, None] + self._offsets[None, :]  # (B, W), W = longest row
        valid = self._offsets[None, :] < length[:, None]
        pos = torch.where(valid, pos, torch.zeros_like(pos))
        cols = self.indices[pos].long()
        vals = torch.where(valid, self.data[pos], torch.zeros((), device=self.device))
        out = torch.zeros(idx.shape[0], self.shape[1], device=self.device)
        # padded entries add 0 to column of index 0 of the row (or any valid column)
        return out.scatter_add_(1, cols, vals)


def data_fits(x, device: torch.device | str, max_dense_bytes: int = MAX_DENSE_BYTES) -> bool:
    """Whether :class:`DeviceMatrix` of ``x`` fits the device (always true on the CPU)."""
    device = torch.device(device)
    if device.type == "cpu":
        return True
    n, g = x.shape
    if sp.issparse(x):
        need = n * g * 4 if n * g * 4 <= max_dense_bytes else x.nnz * 8 + (n + 1) * 8
    else:
        need = n * g * 4
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return need <= DEVICE_MEMORY_FRACTION * free
    return False  # other accelerators: use scvi-tools' loaders


class DeviceBatchLoader:
    """Mini-batches of given cells from a :class:`DeviceMatrix`, as scvi-tools' loaders yield.

    Each item is ``{"X": (B, G) float32, "batch": (B, 1) int64, "ind_x": (B, 1) int64}`` on
    the data's device (``ind_x``: the cells' rows in the registered data, as scvi-tools'
    ``REGISTRY_KEYS.INDICES_KEY``).

    Parameters
    ----------
    matrix
        The data.
    batch_codes
        ``(n_cells,)`` integer batch codes on the data's device.
    indices
        The cells to iterate over (host array).
    batch_size
        Mini-batch size.
    shuffle
        Draw a new order every epoch (from the global torch generator).
    drop_last
        Drop a last, smaller mini-batch.
    rank, world_size
        This process's share under DDP: every rank iterates over ``len(indices) // world_size``
        cells of the same permutation.
    broadcast
        Under DDP, a function that sends rank 0's value to all ranks (the epoch's seed).
    """

    def __init__(
        self,
        matrix: DeviceMatrix,
        batch_codes: torch.Tensor,
        indices: np.ndarray,
        batch_size: int,
        shuffle: bool,
        drop_last: bool = False,
        rank: int = 0,
        world_size: int = 1,
        broadcast=None,
    ):
        self.matrix = matrix
        self.batch_codes = batch_codes
        self.indices = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.rank, self.world_size = int(rank), int(world_size)
        self.broadcast = broadcast
        self.n_local = len(self.indices) // self.world_size if self.world_size > 1 else len(
            self.indices
        )

    def __len__(self) -> int:
        if self.drop_last:
            return self.n_local // self.batch_size
        return math.ceil(self.n_local / self.batch_size)

    def epoch_order(self) -> torch.Tensor:
        """This rank's cells for one epoch, in order (host tensor)."""
        order = self.indices
        if self.shuffle:
            # one draw from the global generator per epoch, as torch's RandomSampler does
            seed = int(torch.empty((), dtype=torch.int64).random_().item())
            if self.world_size > 1 and self.broadcast is not None:
                seed = int(self.broadcast(seed))
            gen = torch.Generator().manual_seed(seed)
            order = order[torch.randperm(len(order), generator=gen)]
        if self.world_size > 1:
            order = order[self.rank :: self.world_size][: self.n_local]
        return order

    def __iter__(self):
        order = self.epoch_order().to(self.matrix.device, non_blocking=True)
        for i in range(len(self)):
            idx = order[i * self.batch_size : (i + 1) * self.batch_size]
            yield {
                REGISTRY_KEYS.X_KEY: self.matrix.rows(idx),
                REGISTRY_KEYS.BATCH_KEY: self.batch_codes.index_select(0, idx).unsqueeze(-1),
                REGISTRY_KEYS.INDICES_KEY: idx.unsqueeze(-1),
            }


class DeviceDataSplitter(DataSplitter):
    """:class:`~scvi.dataloaders.DataSplitter` whose loaders serve mini-batches from the device.

    The split (``train_idx``, ``val_idx``, ``test_idx``) is scvi-tools' own. The training
    device is read from the Lightning trainer when the loaders are made. If the data do not
    fit the device (:func:`data_fits`), the AnnData is backed (on disk) or it has fields other
    than counts and batch, scvi-tools' loaders are used (unless ``force``).

    Parameters
    ----------
    adata_manager, train_size, validation_size, shuffle_set_split, **kwargs
        As :class:`~scvi.dataloaders.DataSplitter` (``batch_size``, ``drop_last``).
    max_dense_bytes
        See :class:`DeviceMatrix`.
    matrix
        A :class:`DeviceMatrix` of the registered counts to reuse (e.g. across the phases of
        one ``train()`` call); made on first use otherwise.
    force
        Serve from the device even if :func:`data_fits` says no, or the AnnData is backed
        (its matrix is then read from the file into the device copy).
    """

    def __init__(
        self,
        adata_manager,
        train_size: float | None = None,
        validation_size: float | None = None,
        shuffle_set_split: bool = True,
        max_dense_bytes: int = MAX_DENSE_BYTES,
        matrix: DeviceMatrix | None = None,
        force: bool = False,
        **kwargs,
    ):
        super().__init__(
            adata_manager,
            train_size=train_size,
            validation_size=validation_size,
            shuffle_set_split=shuffle_set_split,
            **kwargs,
        )
        self.max_dense_bytes = max_dense_bytes
        self.matrix = matrix
        self.force = force
        self.batch_size = self.data_loader_kwargs.get("batch_size") or 128
        self.on_device: bool | None = None  # decided when the first loader is made
        self._codes: torch.Tensor | None = None

    def _device(self) -> torch.device:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device if trainer is not None else torch.device("cpu")

    def _prepare(self) -> bool:
        if self.on_device is not None:
            return self.on_device
        device = self._device()
        fields = set(self.adata_manager.data_registry)
        x = self.adata_manager.get_from_registry(REGISTRY_KEYS.X_KEY)
        supported = fields <= {REGISTRY_KEYS.X_KEY, REGISTRY_KEYS.BATCH_KEY}
        # a backed (on-disk) matrix is read by scvi-tools' loaders unless forced
        fits = self.force or (not is_backed(x) and data_fits(x, device, self.max_dense_bytes))
        self.on_device = bool(supported and fits)
        if self.on_device:
            if self.matrix is None or self.matrix.device != device:
                self.matrix = DeviceMatrix(x, device, self.max_dense_bytes)
            codes = self.adata_manager.get_from_registry(REGISTRY_KEYS.BATCH_KEY)
            codes = np.asarray(codes).reshape(-1).astype(np.int64)
            self._codes = torch.from_numpy(codes).to(device)
        return self.on_device

    def _loader(self, indices, shuffle: bool, drop_last: bool) -> DeviceBatchLoader:
        trainer = getattr(self, "trainer", None)
        rank = trainer.global_rank if trainer is not None else 0
        world = trainer.world_size if trainer is not None else 1
        broadcast = trainer.strategy.broadcast if trainer is not None and world > 1 else None
        return DeviceBatchLoader(
            self.matrix, self._codes, indices, self.batch_size, shuffle, drop_last,
            rank=rank, world_size=world, broadcast=broadcast,
        )

    def train_dataloader(self):
        if not self._prepare():
            return super().train_dataloader()
        return self._loader(self.train_idx, shuffle=True, drop_last=self.drop_last)

    def val_dataloader(self):
        if not self._prepare():
            return super().val_dataloader()
        if len(self.val_idx) == 0:
            return None
        return self._loader(self.val_idx, shuffle=False, drop_last=False)
