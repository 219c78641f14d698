"""Adaptive weight normalization (AWN) of adder filters.

Adder outputs and filters have very large variances, which shake batch
norm's running statistics; AWN ("Towards Stable and Robust AdderNets",
NeurIPS 2021) standardizes the filters every forward (minus the mean,
divided by the standard deviation) and multiplies them by a learnable gain.
The paper's text does not pin the granularity or the gain's start, so both
granularities are offered:

* ``per='filter'`` (default): mean and std over each output filter
  (Cin/groups * kh * kw values), one gain per output channel;
* ``per='layer'``: over the whole filter bank, one gain for the layer.

The gain starts at 1 (``gain=``): ``Adder2d`` draws raw filters from
N(0, 1), so at the start the standardized filters are the raw ones and AWN
changes nothing but the training dynamics; inputs arrive batch-normalized
(unit scale), where unit-scale filters keep |x - w| sensitive to both.

The variance is the biased (population) one, and ``eps`` is added to it
before the square root, as batch norm does.
"""
from typing import Optional

import torch

PER = ('filter', 'layer')


def check_weight_norm(cfg: Optional[dict], who: str) -> Optional[dict]:
    """Validate ``weight_norm`` and fill in the defaults (``who`` prefixes
    errors)."""
    if cfg is None:
        return None
    if not isinstance(cfg, dict) or cfg.get('type') != 'AWN':
        raise ValueError(f"{who}: weight_norm must be None or "
                         f"dict(type='AWN', ...), got {cfg!r}")
    unknown = set(cfg) - {'type', 'per', 'gain', 'eps'}
    if unknown:
        raise ValueError(f'{who}: unknown weight_norm keys {sorted(unknown)}'
                         " (known: per, gain, eps)")
    out = dict(type='AWN', per=cfg.get('per', 'filter'),
               gain=float(cfg.get('gain', 1.0)), eps=float(cfg.get('eps', 1e-5)))
    if out['per'] not in PER:
        raise ValueError(f"{who}: weight_norm per must be one of {PER}, "
                         f"got {out['per']!r}")
    if not out['eps'] > 0:
        raise ValueError(f"{who}: weight_norm eps must be positive, "
                         f"got {out['eps']}")
    return out


def gain_shape(weight_shape, per: str):
    """Shape of the learnable gain: broadcastable against the filters."""
    return (weight_shape[0] if per == 'filter' else 1, 1, 1, 1)


def standardize(weight: torch.Tensor, gain: torch.Tensor, per: str,
                eps: float) -> torch.Tensor:
    """gain * (weight - mean) / sqrt(var + eps), per filter or per layer."""
    dims = tuple(range(1, weight.dim())) if per == 'filter' else None
    if dims is None:
        mean, var = weight.mean(), weight.var(unbiased=False)
    else:
        mean = weight.mean(dim=dims, keepdim=True)
        var = weight.var(dim=dims, unbiased=False, keepdim=True)
    return gain * (weight - mean) * torch.rsqrt(var + eps)
