"""The editing service every front end shares: ``mredit edit``, ``mredit serve`` and Python.

``open_model`` opens a model once (an export folder, an InstructPix2Pix checkpoint or a SmartEdit checkpoint);
``EditingModel.edit`` edits one image, ``EditingModel.sweep`` the same edit over a grid of two perspectives' scores.
See ``mredit.editing.service``.
"""

from mredit.editing.service import EditingModel, EditOptions, Sweep, check_options, check_scores, open_model

__all__ = ["EditOptions", "EditingModel", "Sweep", "check_options", "check_scores", "open_model"]
