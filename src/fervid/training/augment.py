"""Batched augmentation on tensors: one affine warp per batch (rotation, scale, shift,
flip), brightness/contrast jitter, camera shifts (blur, motion blur, JPEG, low light, noise,
occluders, head pose; see :data:`CAMERA_KINDS`), random erasing and mixup/cutmix. Everything
runs on whole batches on the training device: no per-sample Python in the hot path."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fervid.errors import UserValueError

# What cameras do to faces (issue 13, item 5), as training-time augmentations. Each is drawn
# with random parameters over a range; ``benchmarks/robustness.py`` applies the same kinds at
# fixed settings (blur 1.5, motion 7, JPEG q10, x0.35, x0.25 + noise 8, noise 25, sunglasses
# rows 13-24, mask rows 27-47, hand ellipse, roll 20, yaw 30%) as the held-out check: the ranges
# below cover those settings without copying them, so that the benchmark measures robustness to
# the *kind* of shift rather than to the one setting trained on. Sizes are in pixels of a
# 48-pixel face and scale with the input side; intensities are on the [0, 1] scale (/255).
#   blur        Gaussian blur, sigma 0.5-2 px (out of focus)
#   motion      motion blur along a random direction, length 3-9 px (camera shake, a moving head)
#   jpeg        8x8 block-DCT quantisation with libjpeg's luminance table at quality 10-60
#               (block artefacts, ringing); the blocks are 8 px at the input resolution
#   lowlight    intensities x0.2-0.6 after a gamma 0.8-1.25, plus sensor noise sigma 0-10 grey levels
#   noise       Gaussian noise, sigma 3-25 grey levels
#   sunglasses  two dark (grey 0-50) rounded lenses and a bridge over the eye rows (~13-27)
#   mask        a light (grey 150-240) rounded shape from the nose (row ~25-31) down over the chin
#   hand        a skin-grey (90-205) shaded ellipse, 4-13 px half-axes, anywhere in the lower two thirds
#   roll        an in-plane rotation of 10-25 degrees either way (on top of ``rotate``)
#   yaw         one side squeezed to 65-90% of its height (a turned head; a bilinear
#               approximation of the perspective, no 3D model)
# They apply in the order a camera meets them: occluders (in the scene), head pose, exposure,
# optics, sensor noise, compression.
CAMERA_KINDS: tuple[str, ...] = (
    "sunglasses",
    "mask",
    "hand",
    "roll",
    "yaw",
    "lowlight",
    "blur",
    "motion",
    "noise",
    "jpeg",
)

# libjpeg's standard luminance quantisation table (ITU T.81, Annex K), quality 50.
_JPEG_LUMA = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)


@dataclass
class AugmentConfig:
    hflip: float = 0.5  # probability of a horizontal flip
    rotate: float = 10.0  # max rotation, degrees
    scale: tuple[float, float] = (0.85, 1.15)  # zoom range (>1 zooms in: a random resized crop)
    translate: float = 0.1  # max shift, share of the side
    brightness: float = 0.2  # +- additive, in normalised units of the [0,1] range
    contrast: float = 0.2  # +- multiplicative
    erase: float = 0.25  # probability of erasing one rectangle
    erase_area: tuple[float, float] = (0.02, 0.15)
    mixup: float = 0.0  # probability that a batch is mixed (mixup or cutmix, half each)
    mixup_alpha: float = 0.4
    # Camera shifts (off by default). ``camera``: probability that a sample gets one, of a kind
    # drawn uniformly from ``camera_kinds`` (any subset of CAMERA_KINDS); ``camera_second``:
    # probability that such a sample also gets a second, different kind (blur + JPEG, dark +
    # mask...). Independent of the per-class ``strength``.
    camera: float = 0.0
    camera_kinds: tuple[str, ...] = CAMERA_KINDS
    camera_second: float = 0.25

    def __post_init__(self) -> None:
        check_camera(self)


def check_camera(cfg: AugmentConfig) -> None:
    """A :class:`~fervid.errors.UserValueError` for camera settings that mean nothing."""
    bad = sorted(set(cfg.camera_kinds) - set(CAMERA_KINDS))
    if bad:
        raise UserValueError(f"augment.camera_kinds: unknown kind(s) {bad}; valid: {list(CAMERA_KINDS)}")
    if cfg.camera > 0 and not cfg.camera_kinds:
        raise UserValueError("augment.camera_kinds is empty while augment.camera > 0")
    for key in ("camera", "camera_second"):
        v = getattr(cfg, key)
        if not 0.0 <= v <= 1.0:
            raise UserValueError(f"augment.{key} is a probability in [0, 1], got {v}")


def augment(
    x: torch.Tensor,
    cfg: AugmentConfig,
    g: torch.Generator,
    strength: torch.Tensor | None = None,
    *,
    rows: torch.Tensor | None = None,
    total: int | None = None,
) -> torch.Tensor:
    """Augment a float batch ``N x C x H x W`` (values in [0, 1], before normalisation).

    ``strength`` (``N``, default 1) scales the geometric and erasing ranges per sample,
    which is how minority classes get stronger augmentation.

    ``rows``/``total``: ``x`` holds rows ``rows`` of a batch of ``total`` samples (one data-
    parallel rank's share). The random parameters are drawn for the whole batch and these
    rows' are used, so the shares of all ranks together get exactly what one process
    augmenting the whole batch would, and ``g`` advances the same on every rank.
    """
    n, _, h, w = x.shape
    dev = x.device
    n_all = n if rows is None else int(total)  # type: ignore[arg-type]

    def draw(*shape: int) -> torch.Tensor:
        r = torch.rand(n_all, *shape, device=dev, generator=g)
        return r if rows is None else r[rows.to(dev)]

    def u(lo: float, hi: float) -> torch.Tensor:
        return draw() * (hi - lo) + lo

    def normal(*shape: int) -> torch.Tensor:
        r = torch.randn(n_all, *shape, device=dev, generator=g)
        return r if rows is None else r[rows.to(dev)]

    s = torch.ones(n, device=dev) if strength is None else strength.to(dev, torch.float32)
    ang = u(-1, 1) * math.radians(cfg.rotate) * s
    lo, hi = cfg.scale
    zoom = 1 + (u(lo, hi) - 1) * s
    flip = torch.where(draw() < cfg.hflip, -1.0, 1.0)
    tx, ty = u(-1, 1) * cfg.translate * 2 * s, u(-1, 1) * cfg.translate * 2 * s
    cos, sin = torch.cos(ang) / zoom, torch.sin(ang) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if cfg.brightness or cfg.contrast:
        mean = x.mean((1, 2, 3), keepdim=True)
        c = 1 + u(-cfg.contrast, cfg.contrast).view(n, 1, 1, 1)
        b = u(-cfg.brightness, cfg.brightness).view(n, 1, 1, 1)
        x = ((x - mean) * c + mean + b).clamp_(0, 1)
    if cfg.camera > 0:
        x = _camera(x, cfg, draw, u, normal)
    if cfg.erase > 0:
        p = (cfg.erase * s).clamp(max=1.0)
        area = u(*cfg.erase_area) * h * w
        ratio = torch.exp(u(math.log(0.3), math.log(3.3)))
        eh = (area * ratio).sqrt().clamp(max=h - 1)
        ew = (area / ratio).sqrt().clamp(max=w - 1)
        y0 = u(0, 1) * (h - eh)
        x0 = u(0, 1) * (w - ew)
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        box = (
            (ys >= y0.view(n, 1, 1))
            & (ys < (y0 + eh).view(n, 1, 1))
            & (xs >= x0.view(n, 1, 1))
            & (xs < (x0 + ew).view(n, 1, 1))
        )
        on = (draw() < p).view(n, 1, 1)
        noise = draw(1, h, w)
        x = torch.where((box & on)[:, None], noise, x)
    return x


Draw = Callable[..., torch.Tensor]


def _camera(x: torch.Tensor, cfg: AugmentConfig, draw: Draw, u: Callable[[float, float], torch.Tensor], normal: Draw):
    """The camera shifts of :func:`augment`. Which samples get which kind, and every kind's
    parameters, are drawn for all samples whatever was picked (so ``g`` advances the same on
    every batch and rank); each kind is computed on the whole batch and kept where picked:
    no data-dependent indexing, hence no device synchronisation on CUDA. The settings were
    checked when the config was made (and by ``TrainConfig.validate`` before a run)."""
    n, c, h, w = x.shape
    dev = x.device
    s = h / 48.0  # sizes below are in pixels of a 48-pixel face
    kinds = [k for k in CAMERA_KINDS if k in cfg.camera_kinds]  # CAMERA_KINDS's order, no duplicates
    nk = len(kinds)
    on = draw() < cfg.camera
    first = (draw() * nk).long().clamp_(max=nk - 1)
    two = on & (draw() < cfg.camera_second) & (nk > 1)
    second = (first + 1 + (draw() * (nk - 1)).long().clamp_(max=max(nk - 2, 0))) % nk  # != first
    picked = {k: ((on & (first == i)) | (two & (second == i))).view(n, 1, 1, 1) for i, k in enumerate(kinds)}
    ys = torch.arange(h, device=dev, dtype=x.dtype).view(1, h, 1)
    xs = torch.arange(w, device=dev, dtype=x.dtype).view(1, 1, w)

    def paint(x: torch.Tensor, cover: torch.Tensor, grey: torch.Tensor, kind: str) -> torch.Tensor:
        cover = cover[:, None] * picked[kind]
        return x * (1 - cover) + grey * cover

    if "sunglasses" in picked:
        cy, cx = u(15, 22) * s, w / 2 + u(-2, 2) * s
        sep, rx, ry = u(8, 11) * s, u(6.5, 9.5) * s, u(4, 6.5) * s
        lenses = torch.maximum(
            _shape(ys, xs, cy, cx - sep, ry, rx, boxy=True), _shape(ys, xs, cy, cx + sep, ry, rx, boxy=True)
        )
        bridge = _shape(ys, xs, cy - ry * 0.4, cx, torch.full_like(cy, s), sep, boxy=True)
        x = paint(x, torch.maximum(lenses, bridge), u(0, 0.2).view(n, 1, 1, 1), "sunglasses")
    if "mask" in picked:
        top, ry, rx = u(25, 31) * s, u(14, 20) * s, u(15, 20) * s
        cover = _shape(ys, xs, top + ry, w / 2 + u(-2, 2) * s, ry, rx)
        x = paint(x, cover, u(0.6, 0.95).view(n, 1, 1, 1), "mask")
    if "hand" in picked:
        cy, cx, ry, rx, ang = u(18, 46) * s, u(6, 42) * s, u(4, 10) * s, u(6, 13) * s, u(0, math.pi)
        cover = _shape(ys, xs, cy, cx, ry, rx, angle=ang)
        # shaded along its long axis (light from one side), as a rounded hand is
        along = (
            (xs - cx.view(n, 1, 1)) * torch.cos(ang).view(n, 1, 1)
            + (ys - cy.view(n, 1, 1)) * torch.sin(ang).view(n, 1, 1)
        ) / rx.view(n, 1, 1)
        grey = u(0.4, 0.75).view(n, 1, 1) * (1 + u(-0.2, 0.2).view(n, 1, 1) * along.clamp(-1, 1))
        x = paint(x, cover, grey[:, None], "hand")
    if "roll" in picked or "yaw" in picked:
        x = _pose(x, picked, u, draw)
    if "lowlight" in picked:
        dark = x.clamp(min=0).pow(u(0.8, 1.25).view(n, 1, 1, 1)) * u(0.2, 0.6).view(n, 1, 1, 1)
        dark = dark + normal(1, h, w) * (u(0, 10) / 255).view(n, 1, 1, 1)
        x = torch.where(picked["lowlight"], dark, x)
    if "blur" in picked:
        x = torch.where(picked["blur"], gaussian_blur(x, u(0.5, 2.0) * s, radius=math.ceil(6 * s)), x)
    if "motion" in picked:
        x = torch.where(picked["motion"], motion_blur(x, u(3, 9) * s, u(0, math.pi), radius=math.ceil(5 * s)), x)
    if "noise" in picked:
        x = torch.where(picked["noise"], x + normal(1, h, w) * (u(3, 25) / 255).view(n, 1, 1, 1), x)
    x = x.clamp(0, 1)  # JPEG works on 8-bit values, and the other kinds must end in range too
    if "jpeg" in picked:
        x = torch.where(picked["jpeg"], jpeg(x, u(10, 60)), x)
    return x.clamp_(0, 1)


def _shape(
    ys: torch.Tensor,
    xs: torch.Tensor,
    cy: torch.Tensor,
    cx: torch.Tensor,
    ry: torch.Tensor,
    rx: torch.Tensor,
    *,
    angle: torch.Tensor | None = None,
    boxy: bool = False,
) -> torch.Tensor:
    """Per-sample coverage ``N x H x W`` in [0, 1] of an ellipse, or with ``boxy`` of the
    rounded rectangle ``u^4 + v^4 <= 1``, with a one-pixel antialiased edge so that occluders
    add no aliasing the camera would not. Squares and square roots only: no ``pow``."""
    n = cy.shape[0]
    dy, dx = ys - cy.view(n, 1, 1), xs - cx.view(n, 1, 1)
    if angle is not None:
        co, si = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
        dx, dy = dx * co + dy * si, dy * co - dx * si
    a, b = rx.view(n, 1, 1), ry.view(n, 1, 1)
    u2, v2 = (dx / a).square(), (dy / b).square()
    r = (u2.square() + v2.square()).sqrt().sqrt() if boxy else (u2 + v2).sqrt()
    return ((1 - r) * torch.minimum(a, b) + 0.5).clamp(0, 1)


def _pose(
    x: torch.Tensor,
    picked: dict[str, torch.Tensor],
    u: Callable[[float, float], torch.Tensor],
    draw: Draw,
) -> torch.Tensor:
    """Roll and yaw as one resampling: output coordinates are un-rolled, then un-yawed."""
    n = x.shape[0]
    eye = torch.eye(2, 3, device=x.device, dtype=x.dtype).expand(n, 2, 3)
    grid = F.affine_grid(eye, list(x.shape), align_corners=False)  # N x H x W x 2, (x, y) in [-1, 1]
    gx, gy = grid[..., 0], grid[..., 1]
    if "roll" in picked:
        ang = torch.deg2rad(u(10, 25)) * torch.where(draw() < 0.5, -1.0, 1.0)
        co, si = torch.cos(ang).view(n, 1, 1), torch.sin(ang).view(n, 1, 1)
        on = picked["roll"].view(n, 1, 1)
        gx, gy = torch.where(on, co * gx - si * gy, gx), torch.where(on, si * gx + co * gy, gy)
    if "yaw" in picked:
        d = u(0.1, 0.35).view(n, 1, 1)  # the far side keeps 1 - d of its height
        side = torch.where(draw() < 0.5, -1.0, 1.0).view(n, 1, 1)
        xs = (side * gx + 1) / (1 - d / 2) - 1  # the face narrows by d/2 towards the far side...
        height = (1 - d * (xs + 1) / 2).clamp(min=0.3)  # ...which shrinks linearly to 1 - d
        on = picked["yaw"].view(n, 1, 1)
        gx, gy = torch.where(on, side * xs, gx), torch.where(on, gy / height, gy)
    warped = F.grid_sample(x, torch.stack([gx, gy], -1), mode="bilinear", padding_mode="border", align_corners=False)
    moved = torch.zeros_like(picked[next(iter(picked))])
    for k in ("roll", "yaw"):
        if k in picked:
            moved = moved | picked[k]
    return torch.where(moved, warped, x)


def _per_sample_conv(x: torch.Tensor, kernels: torch.Tensor, pad: tuple[int, int, int, int], mode: str) -> torch.Tensor:
    """``x`` (``N x C x H x W``) filtered with one kernel per sample (``N x kh x kw``, the same
    for every channel): one grouped convolution over the batch."""
    n, c, h, w = x.shape
    k = kernels.to(x.dtype).repeat_interleave(c, 0)[:, None]  # N*C x 1 x kh x kw
    y = F.conv2d(F.pad(x.reshape(1, n * c, h, w), pad, mode=mode), k, groups=n * c)
    return y.view(n, c, h, w)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """Gaussian blur with a per-sample ``sigma`` (``N``, pixels), kernel truncated at ``radius``
    and reflected borders (OpenCV's default), as two 1-D passes."""
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t**2) / (2 * sigma.view(-1, 1).clamp(min=1e-3) ** 2))
    k = k / k.sum(1, keepdim=True)
    x = _per_sample_conv(x, k[:, None, :], (radius, radius, 0, 0), "reflect")
    return _per_sample_conv(x, k[:, :, None], (0, 0, radius, radius), "reflect")


def motion_blur(x: torch.Tensor, length: torch.Tensor, angle: torch.Tensor, radius: int) -> torch.Tensor:
    """Motion blur along a segment of ``length`` pixels at ``angle`` (radians from the x axis),
    per sample (``N`` each): the average over an antialiased line kernel, replicated borders."""
    n = length.shape[0]
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    dy, dx = t.view(1, -1, 1), t.view(1, 1, -1)
    co, si = torch.cos(angle).view(n, 1, 1), torch.sin(angle).view(n, 1, 1)
    along, across = dx * co + dy * si, (dy * co - dx * si).abs()
    # length 7 at angle 0 is exactly the 1 x 7 box of the benchmark; fractions taper at the ends
    k = (1 - across).clamp(min=0) * (length.view(n, 1, 1) / 2 + 0.5 - along.abs()).clamp(0, 1)
    k = k / k.sum((1, 2), keepdim=True)
    return _per_sample_conv(x, k, (radius, radius, radius, radius), "replicate")


@functools.lru_cache(maxsize=8)
def _jpeg_table(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    # made once per device: a host-to-device copy every batch would stall a CUDA stream
    return torch.tensor(_JPEG_LUMA, device=device, dtype=dtype)


def jpeg(x: torch.Tensor, quality: torch.Tensor) -> torch.Tensor:
    """JPEG-like compression of a grey batch in [0, 1] at a per-sample ``quality`` (``N``, 1-100):
    libjpeg's luminance table scaled as libjpeg scales it, on 8x8 blocks of the orthonormal DCT
    (the transform JPEG uses), values rounded to 8 bits. No entropy coding (lossless anyway) and
    no chroma (grey faces): the loss is the quantisation, as in a real JPEG."""
    n, c, h, w = x.shape
    ph, pw = -h % 8, -w % 8
    y = F.pad(x, (0, pw, 0, ph), mode="replicate") if ph or pw else x
    hb, wb = (h + ph) // 8, (w + pw) // 8
    i = torch.arange(8, device=x.device, dtype=x.dtype)
    d = torch.cos(math.pi * (2 * i.view(1, 8) + 1) * i.view(8, 1) / 16) * math.sqrt(2 / 8)
    d[0] = math.sqrt(1 / 8)  # D[k, j]: orthonormal DCT-II
    q = quality.clamp(1, 100).view(n, 1, 1)
    scale = torch.where(q < 50, 5000 / q, 200 - 2 * q)
    table = _jpeg_table(x.device, x.dtype)
    step = ((table * scale + 50) / 100).floor().clamp(1, 255).view(n, 1, 1, 1, 8, 8)
    blocks = (torch.round(y * 255) - 128).view(n, c, hb, 8, wb, 8).transpose(3, 4)  # N C hb wb 8 8
    coef = torch.round(d @ blocks @ d.T / step) * step
    out = (d.T @ coef @ d + 128).transpose(3, 4).reshape(n, c, h + ph, w + pw)[..., :h, :w]
    return torch.round(out).clamp(0, 255) / 255


def mix(x: torch.Tensor, y: torch.Tensor, cfg: AugmentConfig, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Mixup or CutMix on a batch with one-hot/soft targets ``y`` (``N x K``); every random
    draw, the mixing weight included, comes from ``g``. Under data-parallel training each rank
    mixes within its own share of the batch (the partners come from the same rank)."""
    if cfg.mixup <= 0 or torch.rand(1, generator=g, device=g.device).item() >= cfg.mixup:
        return x, y
    # torch.distributions samples from the global RNG and takes no generator: draw the Beta
    # weight from a numpy generator seeded by ``g`` so that ``g`` alone decides the batch.
    seed = int(torch.randint(0, 2**62, (1,), generator=g, device=g.device))
    lam = float(np.random.default_rng(seed).beta(cfg.mixup_alpha, cfg.mixup_alpha))
    perm = torch.randperm(x.shape[0], device=x.device, generator=g)
    if torch.rand(1, generator=g, device=g.device).item() < 0.5:
        x = lam * x + (1 - lam) * x[perm]
    else:
        h, w = x.shape[-2:]
        ch, cw = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = (
            int(torch.randint(h, (1,), generator=g, device=g.device)),
            int(torch.randint(w, (1,), generator=g, device=g.device)),
        )
        y0, y1, x0, x1 = max(cy - ch // 2, 0), min(cy + ch // 2, h), max(cx - cw // 2, 0), min(cx + cw // 2, w)
        x = x.clone()
        x[..., y0:y1, x0:x1] = x[perm][..., y0:y1, x0:x1]
        lam = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    return x, lam * y + (1 - lam) * y[perm]
