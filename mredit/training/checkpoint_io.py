"""Checkpoint writing that a kill cannot corrupt.

Lightning's ``_atomic_save`` (2.6) writes local files through an fsspec transaction, which stages the bytes in a
``tempfile.mkstemp`` file under the system temp dir and then ``shutil.move``s it. When the temp dir and the
checkpoint dir are on different filesystems that move is a copy into the destination, so a SIGKILL during it
leaves a truncated ``last.ckpt``. Here local checkpoints are written next to their destination, fsynced and
``os.replace``d (atomic on POSIX); remote paths keep Lightning's behaviour.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if not _is_local_file_protocol(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        partial = f"{path}.partial-{os.getpid()}"
        try:
            with open(partial, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(partial, path)
        finally:
            if os.path.exists(partial):
                os.remove(partial)
