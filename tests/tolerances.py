"""Float tolerances derived from the computation, never from what one machine printed (issue 23).

Two correct float32 evaluations of the same function differ only by rounding: each is within a
bound of the exact value that depends on the unit roundoff ``u = 2**-24``, on how many terms a
sum accumulates and on their magnitudes, not on the CPU (vector width, oneDNN or MLAS blocking,
thread count), so a bound computed from those survives any machine. References: N. J. Higham,
*Accuracy and Stability of Numerical Algorithms* (2nd ed.), eq. 3.4-3.5 (``gamma_n``) and §3.1
(dot products, in any order); the running, first-order error analysis of a composition follows
from it by the chain rule.

- :func:`gamma`: ``n*u / (1 - n*u)``, the relative error of a sum or dot product of ``n`` terms
  computed in any order, relative to the sum of the terms' magnitudes.
- :func:`logit_error_bound`: for a torch network and its input, the first-order bound on how
  far any float32 evaluation of it (torch, onnxruntime, another batch size) can be from the
  exact logits, computed from the network's own weights and activations.
- :func:`softmax_bound`: how far probabilities can move when their logits move by a given amount.
- :func:`parity_bound`: the two together, for two float32 evaluations of a model on the same
  faces (ONNX vs torch, a batch of 1 vs a batch of N); :func:`spy_on_crops` records the faces a
  recognizer classifies, to compute it on them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

U32 = 2.0**-24  # float32 unit roundoff
U64 = 2.0**-53  # float64 unit roundoff
# Standard deviations of the probabilistic bounds: a bound is exceeded with probability at most
# 2 * exp(-LAMBDA**2 / 2) = 2.5e-14 under the model of independent roundings (Higham & Mary 2019).
LAMBDA = 8.0


def gamma(n: float, u: float = U32) -> float:
    """``gamma_n = n*u / (1 - n*u)``: a sum or dot product of ``n`` terms, summed in any order
    (pairwise, blocked, vectorised, split across threads), is within ``gamma_n`` times the sum of
    the terms' magnitudes of the exact value (Higham, eq. 3.4-3.5)."""
    if n * u >= 1:
        raise ValueError(f"gamma({n}) is unbounded in this precision")
    return n * u / (1 - n * u)


def softmax_bound(probs: np.ndarray, logit_error: np.ndarray | float) -> np.ndarray:
    """Largest ``|p' - p|`` for probabilities ``probs`` whose (temperature-scaled) logits each move
    by at most ``logit_error`` (per row, or one number): ``p'_i / p_i = exp(e_i) / sum_j p_j
    exp(e_j)`` lies in ``[exp(-2e), exp(2e)]``, so ``|p'_i - p_i| <= p_i * expm1(2e)``. Exact, not
    first order. ``probs`` may be either side's: the other's is at most ``exp(2e)`` times larger,
    accounted for by taking the larger of the two where both are known."""
    e = np.asarray(logit_error, np.float64)
    if e.ndim == 1:
        e = e[:, None]
    return np.asarray(probs, np.float64) * np.expm1(2 * e) * np.exp(2 * e)


def logit_error_bound(model: Any, x: Any, lam: float | None = LAMBDA, roundings: int = 4) -> np.ndarray:
    """First-order bound, per face and logit (``N x K``), on ``|z_float32 - z_exact|`` for ``model``
    (a torch ``nn.Module`` in eval mode) on the normalised input ``x`` (``N x C x S x S``).

    Each layer's float32 output ``y_l`` carries a rounding error ``d_l``; to first order the logits
    move by ``sum_l J_l d_l``, ``J_l = dz / dy_l`` (autograd, one backward per logit). A
    convolution or linear layer of fan-in ``n`` (``C_in / groups * kh * kw``, one more for its
    bias) computes dot products in some order: ``|d_l| <= gamma(n + roundings) * (|W| * |x_l| +
    |b|)``; the extra ``roundings`` cover a BatchNorm folded into the weights by an exporter
    (one rounding of each weight), the output's own rounding, and the elementwise operations
    after it that are not modules (a residual addition). Every other leaf module (BatchNorm,
    ReLU, pooling) is an elementwise operation or a reduction of ``r`` inputs per output
    (``r = in.numel() / out.numel()``): ``|d_l| <= gamma(r + roundings) * |y_l|``. The
    input itself (uint8 / 255 - mean) / std, in numpy or torch: ``roundings`` roundings of ``|x|``.
    With ``lam=None`` the bound is the worst case, ``sum_l |J_l| |d_l|`` per logit, in float64.
    It is far from sharp for a network (every one of ~10^7 roundings at its extreme, all of one
    sign: 0.05 in probability for ``fast``), so by default it is the probabilistic bound of Higham
    & Mary (SIAM J. Sci. Comput. 41(5), 2019): rounding errors are independent, mean-zero and at
    most ``u`` each, the partial sums of a dot product are at most its magnitude ``m``, so the
    logit error is a sum of independent terms ``c_t * delta_t`` with ``sum c_t^2 <= sum_l J_l^2 *
    n_l * m_l^2``, and by Hoeffding's inequality it exceeds ``lam * u * sqrt(sum c_t^2)`` with
    probability at most ``2 exp(-lam^2 / 2)`` (``lam`` = :data:`LAMBDA` = 8: 2.5e-14 per logit).
    Two float32 evaluations differ by at most twice the bound. First order: second-order terms
    are ``O(u^2)`` of the same magnitudes.
    """
    import torch
    import torch.nn.functional as F

    model = model.eval()
    x = torch.as_tensor(x, dtype=torch.float32).clone().requires_grad_(True)
    records: list[tuple[torch.nn.Module, torch.Tensor, torch.Tensor]] = []

    def hook(mod: torch.nn.Module, inp: tuple, out: Any) -> None:
        if isinstance(out, torch.Tensor) and inp and isinstance(inp[0], torch.Tensor) and out.requires_grad:
            records.append((mod, inp[0].detach(), out))

    # Modules that round nothing (a copy, a selection, a sign test) carry no error of their own.
    exact = (torch.nn.ReLU, torch.nn.MaxPool2d, torch.nn.Dropout, torch.nn.Identity, torch.nn.Flatten)
    leaves = [m for m in model.modules() if not list(m.children()) and not isinstance(m, exact)]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.enable_grad():
            z = model(x)
    finally:
        for h in handles:
            h.remove()
    # The rounding each recorded output carries, per element: (n, m), |d| <= gamma(n) * m.
    errors = []
    for mod, inp, out in records:
        with torch.no_grad():
            if isinstance(mod, torch.nn.Conv2d | torch.nn.Linear):
                n = mod.weight[0].numel() + (mod.bias is not None) + roundings
                w, a = mod.weight.detach().abs(), inp.abs()
                if isinstance(mod, torch.nn.Conv2d):
                    pad = mod.padding if mod.padding_mode == "zeros" else 0
                    mag = F.conv2d(a, w, None, mod.stride, pad, mod.dilation, mod.groups)  # type: ignore[arg-type]
                    b = mod.bias.detach().abs().view(1, -1, 1, 1) if mod.bias is not None else 0.0
                else:
                    mag = F.linear(a, w)
                    b = mod.bias.detach().abs() if mod.bias is not None else 0.0
                errors.append((n, (mag + b).flatten(1)))
            else:
                r = max(1.0, inp[0].numel() / max(1, out[0].numel()))
                errors.append((r + roundings, out.detach().abs().flatten(1)))
    errors.insert(0, (float(roundings), x.detach().abs().flatten(1)))  # the input's normalisation
    outs = [x] + [out for _, _, out in records]
    bound = np.zeros(tuple(z.shape), np.float64)
    if lam is None:  # worst case: every rounding at its extreme, all of one sign
        weights = [gamma(n) * m for n, m in errors]
    else:  # Hoeffding: lam standard deviations of independent roundings, n per output
        weights = [n * m.square() for n, m in errors]
    for k in range(z.shape[1]):
        grads = torch.autograd.grad(z[:, k].sum(), outs, retain_graph=True, allow_unused=True)
        with torch.no_grad():
            total = torch.zeros(len(x), dtype=torch.float64)
            for g, w in zip(grads, weights, strict=True):
                if g is not None:
                    g = g.flatten(1)
                    total += ((g.abs() if lam is None else g.square()) * w).sum(1).double()
        bound[:, k] = (total if lam is None else lam * U32 * total.sqrt()).numpy()
    return bound


def parity_bound(model: Any, faces: np.ndarray, probs: np.ndarray, *others: np.ndarray) -> np.ndarray:
    """Per face and class, the largest ``|p_a - p_b|`` two float32 evaluations of ``model`` (a
    fervid torch model) can give on the uint8 ``faces``: each side's logits within
    :func:`logit_error_bound` of the exact ones, so the two within twice it; divided by the
    model's temperature and turned into probabilities by :func:`softmax_bound` on the larger of
    ``probs`` and ``others`` (the two sides' probabilities)."""
    from fervid.data.preprocess import to_tensor
    from fervid.models import model_preprocess, model_temperature

    x = to_tensor(faces, model_preprocess(model))
    logit = 2 * logit_error_bound(model, x).max(1) / model_temperature(model)
    return softmax_bound(np.maximum.reduce([np.asarray(probs), *map(np.asarray, others)]), logit)


def sum_bound(n: int, magnitude: float, u: float = U32) -> float:
    """Two evaluations of the same sum of ``n`` terms whose magnitudes add to ``magnitude``, in
    two orders: each within ``gamma_n * magnitude`` of the exact sum, so within twice it."""
    return 2 * gamma(n, u) * magnitude


__all__ = [
    "LAMBDA",
    "U32",
    "U64",
    "gamma",
    "logit_error_bound",
    "parity_bound",
    "softmax_bound",
    "spy_on_crops",
    "sum_bound",
]


def spy_on_crops(recognizer: Any, monkeypatch: Any) -> list[np.ndarray]:
    """The face batches ``recognizer``'s classifier is given until the test ends, one array per
    call (its ``logits`` wrapped through pytest's ``monkeypatch``, undone after the test), for
    :func:`parity_bound` on a recognizer's crops."""
    crops: list[np.ndarray] = []
    clf = recognizer.classifier
    logits = clf.logits

    def spy(faces: np.ndarray) -> np.ndarray:
        crops.append(np.asarray(faces))
        return logits(faces)

    monkeypatch.setattr(clf, "logits", spy)
    return crops
