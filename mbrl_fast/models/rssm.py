"""The RSSM world model of Dreamer (Hafner et al. 2019/2020; V2/V3 refinements where noted).

State s_t = (h_t, z_t): a deterministic GRU state h and a stochastic latent z, Gaussian
(Dreamer V1) or 32 x 32 categorical with straight-through gradients (V2/V3)::

    h_t   = GRU(h_{t-1}, act([z_{t-1}, a_{t-1}] @ W_in + b_in))      (the op's gru_cell)
    prior    p(z_t | h_t)       = prior MLP(h_t)
    posterior q(z_t | h_t, e_t) = post MLP([h_t, e_t]),   e_t = encoder(x_t)
    x_t = features(o_t): vector observations with angles as (sin, cos) and unbounded
          coordinates dropped (the task's ObsFeatures, PETS's obs_preproc), or images
    heads on f_t = [h_t, z_t]: decoder o_t, reward r_t, continue c_t (tasks that terminate)

Loss per step (V3's balancing; V1 used one KL term with 3 free nats)::

    decoder  |symlog(x_t) - dec(f_t)|^2 / 2   (vectors: x = the observation's features;
                                              pixels: |o/255 - 0.5 - dec|^2 / 2)
    reward   (symlog(r_t) - rew(f_t))^2 / 2
    continue BCE(cont(f_t), 1 - terminal_t)
    kl_dyn   kl_dyn_scale * max(free_nats, KL(sg(q) || p))
    kl_rep   kl_rep_scale * max(free_nats, KL(q || sg(p)))

The imagination rollout (prior + actor + heads, H steps) is the compiled op
:func:`mbrl_fast.ops.imagine.imagine`; :meth:`RSSM.imagine_params` hands it the weights.
Weights are stored [in, out] (``x @ W + b``), the layout the op's kernels read in place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mbrl_fast.ops.features import ObsFeatures, obs_features_reference
from mbrl_fast.ops.imagine import ImagineParams, gru_cell, sample_latent


@dataclass
class WorldModelConfig:
    """The RSSM and its training (Dreamer V1 sizes; V3 loss balancing)."""

    deter: int = 200
    """GRU state width D (V1 200)."""
    stoch: int = 30
    """Stochastic latent width S: Gaussian dims, or groups x classes for categorical (V1 30)."""
    classes: int = 0
    """0: Gaussian latent (V1); C >= 2: S / C categorical groups of C classes (V2/V3: 32)."""
    hidden: int = 200
    """Width of the GRU input layer and of the prior / posterior hidden layer (V1 200)."""
    units: int = 400
    """Width of the encoder, decoder, reward and continue MLPs (V1 num_units 400)."""
    layers: int = 2
    """Hidden layers of the encoder, decoder, reward and continue MLPs (V1 reward: 2)."""
    embed: int = 400
    """Encoder output width for vector observations (pixels: the conv encoder's 1024)."""
    cnn_depth: int = 32
    """Channels of the first conv layer for pixel observations (V1 32, doubling per layer)."""
    activation: str = "elu"
    """Activation of every MLP (V1 ELU; V3 SiLU)."""
    z_min_std: float = 0.1
    """Gaussian latent: std = softplus(raw) + z_min_std (V1 0.1)."""
    unimix: float = 0.01
    """Categorical latent: the uniform share mixed into the class probabilities (V3 1%)."""
    free_nats: float = 1.0
    """KL terms below this many nats per step are not optimized (V3 1.0; V1 3.0)."""
    kl_dyn_scale: float = 0.5
    """Weight of KL(sg(posterior) || prior): trains the prior (V3 0.5)."""
    kl_rep_scale: float = 0.1
    """Weight of KL(posterior || sg(prior)): regularizes the representation (V3 0.1)."""
    lr: float = 6e-4
    """Adam learning rate of the world model (V1 6e-4)."""
    eps: float = 1e-5
    """Adam epsilon."""
    grad_clip: float = 100.0
    """Global gradient-norm clip (V1 100)."""


def symlog(x: torch.Tensor) -> torch.Tensor:
    """sign(x) log(1 + |x|) (DreamerV3): squashes targets of any scale."""
    return torch.sign(x) * torch.log1p(x.abs())


def symexp(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`symlog`."""
    return torch.sign(x) * torch.expm1(x.abs())


class Dense(nn.Module):
    """y = x @ weight + bias with weight [in, out] (Glorot-uniform init, zero bias)."""

    def __init__(self, d_in: int, d_out: int, scale: float = 1.0):
        super().__init__()
        bound = scale * math.sqrt(6.0 / (d_in + d_out))
        self.weight = nn.Parameter(torch.empty(d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.zeros(d_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.t(), self.bias)

    def layer(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight, self.bias


_ACTS = {"elu": F.elu, "silu": F.silu, "relu": F.relu, "tanh": torch.tanh}


class MLP(nn.Module):
    """Dense layers d_0 -> ... -> d_L with ``activation`` between them (none after the last)."""

    def __init__(self, sizes, activation: str = "elu", out_scale: float = 1.0):
        super().__init__()
        if activation not in _ACTS:
            raise ValueError(f"activation must be one of {sorted(_ACTS)}, got {activation!r}")
        self.activation = activation
        n = len(sizes) - 1
        self.layers = nn.ModuleList(Dense(a, b, out_scale if i == n - 1 else 1.0)
                                    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:],
                                                                   strict=True)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        act = _ACTS[self.activation]
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i + 1 < len(self.layers):
                x = act(x)
        return x

    def layer_tuple(self, detach: bool = False):
        return tuple((w.detach(), b.detach()) if detach else (w, b)
                     for w, b in (layer.layer() for layer in self.layers))


class ConvEncoder(nn.Module):
    """64 x 64 x 3 uint8 images -> [1024] (V1: 4 convs, kernel 4, stride 2, depth 32 x 1/2/4/8)."""

    def __init__(self, depth: int = 32):
        super().__init__()
        chans = [3, depth, 2 * depth, 4 * depth, 8 * depth]
        self.convs = nn.ModuleList(nn.Conv2d(a, b, 4, 2) for a, b in zip(chans[:-1], chans[1:],
                                                                          strict=True))
        self.out_dim = 8 * depth * 2 * 2

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0 - 0.5
        for conv in self.convs:
            x = F.relu(conv(x))
        return x.reshape(*lead, -1)


class ConvDecoder(nn.Module):
    """[F] -> 64 x 64 x 3 (centered at 0; V1: dense to 32 depth, 4 transposed convs 5-5-6-6)."""

    def __init__(self, feat: int, depth: int = 32):
        super().__init__()
        self.depth = depth
        self.fc = Dense(feat, 32 * depth)
        chans = [32 * depth, 4 * depth, 2 * depth, depth, 3]
        self.deconvs = nn.ModuleList(nn.ConvTranspose2d(a, b, k, 2) for a, b, k in
                                     zip(chans[:-1], chans[1:], (5, 5, 6, 6), strict=True))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        lead = feat.shape[:-1]
        x = self.fc(feat).reshape(-1, 32 * self.depth, 1, 1)
        for i, deconv in enumerate(self.deconvs):
            x = deconv(x)
            if i + 1 < len(self.deconvs):
                x = F.relu(x)
        return x.permute(0, 2, 3, 1).reshape(*lead, 64, 64, 3)


@dataclass
class Observed:
    """Posterior states and the statistics of one observed sequence batch ([T, B, ...])."""

    h: torch.Tensor  # [T, B, D]
    z: torch.Tensor  # [T, B, S]
    prior: torch.Tensor  # [T, B, 2S or S]
    post: torch.Tensor  # [T, B, 2S or S]

    @property
    def feat(self) -> torch.Tensor:
        return torch.cat([self.h, self.z], -1)


class RSSM(nn.Module):
    """Encoder, recurrent state-space model and heads. obs_shape (D,) or (64, 64, 3).

    obs_features: how vector observations are read (angles as sin / cos, unbounded
    coordinates dropped; the task's ObsFeatures): the encoder's input and the decoder's
    target are the features, not the raw observation."""

    def __init__(self, obs_shape: tuple[int, ...], act_dim: int, config: WorldModelConfig,
                 continue_head: bool = False, obs_features: ObsFeatures | None = None):
        super().__init__()
        c = self.config = config
        self.obs_shape, self.act_dim = tuple(obs_shape), act_dim
        self.pixels = len(self.obs_shape) == 3
        if obs_features is not None and (self.pixels or obs_features.obs_dim != obs_shape[0]):
            raise ValueError(f"obs_features for {obs_features.obs_dim}-D vectors do not fit "
                             f"observations of shape {self.obs_shape}")
        self.obs_features = obs_features
        if self.pixels and self.obs_shape != (64, 64, 3):
            raise ValueError(f"pixel observations must be 64 x 64 x 3, got {self.obs_shape}")
        if c.classes and (c.classes < 2 or c.stoch % c.classes):
            raise ValueError(f"model.classes must be 0 (Gaussian) or >= 2 dividing model.stoch="
                             f"{c.stoch}, got {c.classes}")
        self.stoch_kind = "categorical" if c.classes else "gaussian"
        s, d, hid, u, act = c.stoch, c.deter, c.hidden, c.units, c.activation
        stats = s if c.classes else 2 * s
        if self.pixels:
            self.encoder = ConvEncoder(c.cnn_depth)
            embed = self.encoder.out_dim
        else:
            width = obs_features.width if obs_features is not None else self.obs_shape[0]
            self.encoder = MLP([width] + [u] * c.layers + [c.embed], act)
            embed = c.embed
        self.img_in = Dense(s + act_dim, hid)
        self.gru = Dense(hid + d, 3 * d)
        self.prior = MLP([d, hid, stats], act)
        self.post = MLP([d + embed, hid, stats], act)
        feat = d + s
        self.feat_dim = feat
        self.decoder = (ConvDecoder(feat, c.cnn_depth) if self.pixels
                        else MLP([feat] + [u] * c.layers + [width], act))
        self.reward = MLP([feat] + [u] * c.layers + [1], act, out_scale=0.0)
        self.cont = MLP([feat] + [u] * c.layers + [1], act) if continue_head else None

    # ---- observations ---------------------------------------------------------------------
    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """What the encoder reads and the decoder reconstructs: [..., F] (vectors), or the
        uint8 images themselves."""
        if self.pixels or self.obs_features is None:
            return obs
        return obs_features_reference(obs, self.obs_features)

    def embed(self, obs: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.features(obs))

    # ---- one step and a sequence ------------------------------------------------------
    def initial(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        w = self.gru.weight
        return w.new_zeros(batch, c.deter), w.new_zeros(batch, c.stoch)

    def _sample(self, stats: torch.Tensor, generator=None) -> torch.Tensor:
        c = self.config
        if c.classes:
            shape = (*stats.shape[:-1], c.stoch // c.classes)
            noise = torch.rand(shape, generator=generator, dtype=stats.dtype)
        else:
            noise = torch.randn((*stats.shape[:-1], c.stoch), generator=generator,
                                dtype=stats.dtype)
        return sample_latent(stats, noise, self.stoch_kind, c.classes, c.unimix, c.z_min_std)

    def obs_step(self, h, z, act, embed, is_first, generator=None):
        """One filtering step: (h, z) of t-1, a_{t-1}, e_t, is_first [B] -> (h, z, prior, post).
        On ``is_first`` the previous state and action are zeros (a new episode)."""
        keep = (~is_first).to(h.dtype).unsqueeze(-1)
        h, z, act = h * keep, z * keep, act * keep
        x = _ACTS[self.config.activation](self.img_in(torch.cat([z, act], -1)))
        h = gru_cell(self.gru(torch.cat([x, h], -1)), h)
        prior = self.prior(h)
        post = self.post(torch.cat([h, embed], -1))
        return h, self._sample(post, generator), prior, post

    def observe(self, embed, act, is_first, generator=None) -> Observed:
        """Posterior states of a batch of sequences: embed [T, B, E], act [T, B, A] (a_{t-1}),
        is_first [T, B] -> Observed ([T, B, ...]). Samples with ``generator``."""
        h, z = self.initial(embed.shape[1])
        hs, zs, priors, posts = [], [], [], []
        for t in range(embed.shape[0]):
            h, z, prior, post = self.obs_step(h, z, act[t], embed[t], is_first[t], generator)
            hs.append(h)
            zs.append(z)
            priors.append(prior)
            posts.append(post)
        return Observed(torch.stack(hs), torch.stack(zs), torch.stack(priors), torch.stack(posts))

    # ---- the loss ---------------------------------------------------------------------
    def kl(self, lhs: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
        """KL(lhs || rhs) per step [...] of two stats tensors [..., 2S or S]."""
        c = self.config
        if c.classes:
            def logp(stats):
                probs = torch.softmax(stats.unflatten(-1, (-1, c.classes)), -1)
                return torch.log((1 - c.unimix) * probs + c.unimix / c.classes)

            lq, lp = logp(lhs), logp(rhs)
            return (lq.exp() * (lq - lp)).sum((-2, -1))
        mq, sq = lhs.chunk(2, -1)
        mp, sp = rhs.chunk(2, -1)
        sq, sp = F.softplus(sq) + c.z_min_std, F.softplus(sp) + c.z_min_std
        return (torch.log(sp / sq) + (sq**2 + (mq - mp) ** 2) / (2 * sp**2) - 0.5).sum(-1)

    def loss(self, obs, act, reward, is_first, is_terminal, generator=None):
        """World-model loss of a batch of sequences ([T, B, ...]; act is a_{t-1}); the
        posterior samples draw from ``generator``.

        Returns (total loss, {term: mean value}, Observed)."""
        c = self.config
        obs = self.features(obs)
        embed = self.encoder(obs)
        out = self.observe(embed, act, is_first, generator)
        feat = out.feat
        if self.pixels:
            target = obs.float() / 255.0 - 0.5
            recon = 0.5 * ((self.decoder(feat) - target) ** 2).sum((-3, -2, -1))
        else:
            recon = 0.5 * ((self.decoder(feat) - symlog(obs)) ** 2).sum(-1)
        terms = {"decoder": recon,
                 "reward": 0.5 * (self.reward(feat)[..., 0] - symlog(reward)) ** 2}
        if self.cont is not None:
            terms["continue"] = F.binary_cross_entropy_with_logits(
                self.cont(feat)[..., 0], (~is_terminal).to(feat.dtype), reduction="none")
        post_sg, prior_sg = out.post.detach(), out.prior.detach()
        terms["kl_dyn"] = c.kl_dyn_scale * self.kl(post_sg, out.prior).clamp(min=c.free_nats)
        terms["kl_rep"] = c.kl_rep_scale * self.kl(out.post, prior_sg).clamp(min=c.free_nats)
        means = {k: v.mean() for k, v in terms.items()}
        return sum(means.values()), means, out

    # ---- imagination --------------------------------------------------------------------
    def imagine_params(self, actor: MLP, heads: list[MLP], critic: MLP | None = None, *,
                       act_min_std: float, act_max_std: float,
                       act_mean_scale: float) -> ImagineParams:
        """The op's ImagineParams: this model's dynamics (detached: the actor loss does not
        train the world model), the actor (attached), ``heads`` (detached), and ``critic``
        (attached, as the op's detached head: it reads stop-gradient features)."""
        c = self.config
        d = lambda layer: tuple(t.detach() for t in layer.layer())  # noqa: E731
        head_layers = [h.layer_tuple(detach=True) for h in heads]
        if critic is not None:
            head_layers.append(critic.layer_tuple())
        return ImagineParams(
            img_in=d(self.img_in), gru=d(self.gru), prior=self.prior.layer_tuple(detach=True),
            actor=actor.layer_tuple(), heads=tuple(head_layers),
            detached_heads=int(critic is not None), stoch=self.stoch_kind, classes=c.classes,
            activation=c.activation, unimix=c.unimix, z_min_std=c.z_min_std,
            act_min_std=act_min_std, act_max_std=act_max_std, act_mean_scale=act_mean_scale)
