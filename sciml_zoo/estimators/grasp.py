"""ZO-GraSP: layer-wise sparsity ratios from loss queries only (DeepZero, Sec. 4).

GraSP (Wang, Zhang & Grosse, ICLR 2020) scores each weight by
``S = −θ ⊙ Hg``, its effect on the gradient flow. DeepZero replaces the
Hessian-gradient product by a finite difference of two RGE estimates,
``Hg ≈ (g1 − g0)/μ`` with ``g0 = ĝ(θ)`` and ``g1 = ĝ(θ + μ·g0)`` (q = 192
directions each), selects weights globally by score and keeps only the
resulting *per-layer* keep ratios; :class:`~sciml_zoo.estimators.sparse_cge.
SparseCGE` then draws random coordinates inside each layer at those ratios
(:func:`~sciml_zoo.estimators.subsets.coordinate_subsets`).

Two choices, both documented in the code:

* Selection is by ``|S|`` (largest kept), as in DeepZero's code, which passes
  the scores to ``torch.nn.utils.prune.global_unstructured`` with
  ``L1Unstructured`` (that prunes the smallest magnitudes).
* ``g1`` reuses ``g0``'s random directions (common random numbers), so
  ``g1 − g0`` measures the change of the gradient rather than the difference
  of two independent noise draws.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from sciml_zoo.errors import ConfigError
from sciml_zoo.estimators.weight_space import BatchedLoss, WeightRGE, trainable_parameters

__all__ = ["grasp_scores", "ratios_from_scores", "zo_grasp_ratios"]


def grasp_scores(
    model: nn.Module,
    batched_loss: BatchedLoss,
    *,
    num_directions: int = 192,
    mu: float = 5e-3,
    generator: torch.Generator,
    query_batch: int = 64,
) -> dict[str, Tensor]:
    """ZO-GraSP scores ``−θ ⊙ (g1 − g0)/μ`` for every weight tensor (2+ dims).

    Only the weight tensors are perturbed (biases stay at θ), as in DeepZero.
    Cost: ``2·(num_directions + 1)`` queries.

    Returns:
        name -> score tensor shaped like the weight.
    """
    weights = {n: p.detach() for n, p in trainable_parameters(model).items() if p.dim() > 1}
    if not weights:
        raise ConfigError("ZO-GraSP needs at least one trainable weight tensor (2+ dims)")
    rge = WeightRGE(num_directions=num_directions, mu=mu, query_batch=query_batch)
    state = generator.get_state()
    g0, _ = rge.estimate_at(weights, batched_loss, generator=generator, theta_is_current=True)
    generator.set_state(state)  # common random numbers for g1
    shifted = {n: w + mu * g0[n] for n, w in weights.items()}
    g1, _ = rge.estimate_at(shifted, batched_loss, generator=generator)
    return {n: -w * (g1[n] - g0[n]) / mu for n, w in weights.items()}


def ratios_from_scores(scores: dict[str, Tensor], *, target_sparsity: float) -> dict[str, float]:
    """Global selection of the top ``(1 − s)`` scores by magnitude -> per-tensor sparsity.

    Keeps exactly ``round((1 − s)·D)`` of the ``D`` scored entries, so the
    numel-weighted mean of the returned ratios is ``s`` up to ``1/D``.
    """
    if isinstance(target_sparsity, bool) or not 0.0 <= float(target_sparsity) < 1.0:
        raise ConfigError(f"target_sparsity must be in [0, 1), got {target_sparsity!r}")
    flat = torch.cat([s.detach().abs().reshape(-1).double() for s in scores.values()])
    keep = round((1.0 - float(target_sparsity)) * flat.numel())
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    mask[torch.topk(flat, keep).indices] = True
    ratios, start = {}, 0
    for name, s in scores.items():
        kept = int(mask[start : start + s.numel()].sum())
        ratios[name] = 1.0 - kept / s.numel()
        start += s.numel()
    return ratios


def zo_grasp_ratios(
    model: nn.Module,
    batched_loss: BatchedLoss,
    *,
    target_sparsity: float,
    num_directions: int = 192,
    mu: float = 5e-3,
    generator: torch.Generator,
    query_batch: int = 64,
) -> dict[str, float]:
    """Per-parameter sparsity ratios for :class:`~sciml_zoo.estimators.SparseCGE` from function queries only.

    Args:
        model: the network; its parameters are not modified.
        batched_loss: see :data:`~sciml_zoo.estimators.weight_space.BatchedLoss`
            (DeepZero evaluates it on a small batch).
        target_sparsity: ``s``, the fraction of weight coordinates *not*
            estimated, over all weight tensors together.
        num_directions: RGE directions for each of ``g0`` and ``g1``.
        mu: RGE smoothing step and the shift ``θ + μ·g0``.
        generator: source of the random directions.
        query_batch: most settings per ``batched_loss`` call.

    Returns:
        name -> sparsity in ``[0, 1]`` for every trainable parameter; 1-D
        tensors (biases, norm parameters) are 0.
    """
    scores = grasp_scores(
        model,
        batched_loss,
        num_directions=num_directions,
        mu=mu,
        generator=generator,
        query_batch=query_batch,
    )
    weight_ratios = ratios_from_scores(scores, target_sparsity=target_sparsity)
    return {n: weight_ratios.get(n, 0.0) for n in trainable_parameters(model)}
