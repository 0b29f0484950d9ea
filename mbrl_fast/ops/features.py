"""How a dynamics model reads a state: the input feature map of ``propagate`` and the models.

PETS feeds its networks a preprocessed observation, not the raw one (Chua et al.
2018's ``obs_preproc``; mbrl-lib's ``obs_process_fn``): an angle enters as (sin, cos),
so the model sees theta and theta + 2 pi as the same pose, and a coordinate that the
dynamics do not depend on (HalfCheetah's x position, which grows without bound as the
cheetah runs) is left out, so the model never extrapolates in it. ``ObsFeatures``
declares that map once; the model trains on it and every propagate backend applies it
inside the rollout (so no Python runs per step)::

    features(s) = concat(s[keep], sin(s[angles]), cos(s[angles]))      [..., F]
    keep        = the indices in [0, D) that are neither in drop nor in angles, ascending
    F           = D - |drop| - |angles| + 2 |angles|

The model's input is ``concat(features(s), a)`` [F + A]; it still predicts the change
of the full state s [D] (delta-state targets), so a dropped coordinate is still
predicted, it only stops being an input.

Kernels read the map as a table (:meth:`ObsFeatures.table`): feature column c is
``src[c]`` of the state, passed through ``kind[c]`` (0 value, 1 sin, 2 cos).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KIND_VALUE, KIND_SIN, KIND_COS = 0, 1, 2  # shared with the kernels


@dataclass(frozen=True)
class ObsFeatures:
    """obs_dim D; drop: state indices the model does not read; angles: indices read as
    (sin, cos). Indices are ints in [0, D); drop and angles are disjoint."""

    obs_dim: int
    drop: tuple[int, ...] = ()
    angles: tuple[int, ...] = ()

    def __post_init__(self):
        d = self.obs_dim
        if not isinstance(d, int) or isinstance(d, bool) or d < 1:
            raise ValueError(f"ObsFeatures: obs_dim must be an int >= 1, got {d!r}")
        for name in ("drop", "angles"):
            value = getattr(self, name)
            try:
                idx = tuple(int(i) for i in value)
            except TypeError:
                raise TypeError(f"ObsFeatures: {name} must be a sequence of ints, got "
                                f"{value!r}") from None
            if any(i < 0 or i >= d for i in idx) or len(set(idx)) != len(idx):
                raise ValueError(f"ObsFeatures: {name} must be distinct indices in [0, {d}), "
                                 f"got {list(idx)}")
            object.__setattr__(self, name, idx)
        if set(self.drop) & set(self.angles):
            raise ValueError(f"ObsFeatures: an index cannot be both dropped and an angle, got "
                             f"drop={list(self.drop)}, angles={list(self.angles)}")
        if not self.keep and not self.angles:
            raise ValueError("ObsFeatures: the map drops every state entry")

    @property
    def keep(self) -> tuple[int, ...]:
        """State indices passed through unchanged, ascending."""
        skip = set(self.drop) | set(self.angles)
        return tuple(i for i in range(self.obs_dim) if i not in skip)

    @property
    def width(self) -> int:
        """F, the number of feature columns."""
        return len(self.keep) + 2 * len(self.angles)

    @property
    def is_identity(self) -> bool:
        return not self.drop and not self.angles

    def table(self, device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
        """(src, kind), int64 [F] each: column c of features(s) is kind[c] of s[src[c]]."""
        src = list(self.keep) + list(self.angles) * 2
        kind = ([KIND_VALUE] * len(self.keep) + [KIND_SIN] * len(self.angles)
                + [KIND_COS] * len(self.angles))
        return (torch.tensor(src, dtype=torch.int64, device=device),
                torch.tensor(kind, dtype=torch.int64, device=device))

    def to_dict(self) -> dict:
        return {"obs_dim": self.obs_dim, "drop": list(self.drop), "angles": list(self.angles)}


def obs_features_reference(obs: torch.Tensor, features: ObsFeatures | None) -> torch.Tensor:
    """The specification: obs [..., D] -> [..., F] (obs itself for None / the identity)."""
    if features is None or features.is_identity:
        return obs
    if obs.shape[-1] != features.obs_dim:
        raise ValueError(f"obs must be [..., {features.obs_dim}] for these ObsFeatures, got "
                         f"{tuple(obs.shape)}")
    angles = obs[..., list(features.angles)]
    return torch.cat([obs[..., list(features.keep)], torch.sin(angles), torch.cos(angles)],
                     dim=-1)
