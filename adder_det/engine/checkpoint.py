"""Let torch's weights-only loading read mmengine's own checkpoints.

torch >= 2.6 loads checkpoints weights-only by default: only tensors,
containers and allow-listed types are unpickled, so a checkpoint cannot run
code on load. mmengine 0.10.7 calls ``torch.load`` without
``weights_only``, and its checkpoints hold a few more types (the message
hub's ``HistoryBuffer`` with numpy arrays and scalars), so its resume,
``load_from`` and ``init_cfg=dict(type='Pretrained')`` fail on its own
files. We allow exactly those types, process-wide, instead of turning
weights-only loading off: anything else in a checkpoint is still refused.

One of them needs care: a ``HistoryBuffer`` pickles its statistics methods
as ``getattr(HistoryBuffer, 'min')``. Allowing ``builtins.getattr`` itself
would let a checkpoint reach any attribute of any allowed object, so the
name ``builtins.getattr`` is bound to :func:`history_buffer_getattr`,
which answers only those four lookups.
"""
import torch

#: The statistics methods HistoryBuffer registers (and pickles by name).
HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')

_done = False


def history_buffer_getattr(obj, name):
    """``getattr`` restricted to ``HistoryBuffer.<statistics method>``."""
    from mmengine.logging import HistoryBuffer
    if obj is HistoryBuffer and name in HISTORY_BUFFER_METHODS:
        return getattr(obj, name)
    raise torch.serialization.pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); only '
        f'HistoryBuffer.{{{", ".join(HISTORY_BUFFER_METHODS)}}} is allowed')


def mmengine_checkpoint_types():
    """What an mmengine 0.10.7 checkpoint holds besides tensors and
    containers: the message hub's HistoryBuffer and numpy arrays, dtypes
    and scalars."""
    import numpy as np
    from mmengine.logging import HistoryBuffer
    try:
        from numpy._core import multiarray  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    dtype_classes = {type(np.dtype(t)) for t in np.typecodes['All']
                     if t not in 'OMm'}  # not object / datetimes
    return [HistoryBuffer, np.ndarray, np.dtype, multiarray._reconstruct,
            multiarray.scalar, *sorted(dtype_classes, key=str),
            (history_buffer_getattr, 'builtins.getattr')]


def allow_mmengine_checkpoints():
    """Allow-list the types of mmengine checkpoints (idempotent)."""
    global _done
    if not _done:
        torch.serialization.add_safe_globals(mmengine_checkpoint_types())
        _done = True
