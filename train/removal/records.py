"""DNG's per-sample records of a point, and what the report and the ablation read from them.

A DNG point records p and lambda of every sample at every step (``record="per_image"``: two floats per sample and
step, kept on the device until the batch ends). From them:

* :func:`lambda_table` - the mean over ALL samples of lambda (and p) at each step: the table the np-schedule
  ablation follows (NP with that lambda(k) for every sample: same average guidance, no per-sample posterior);
* :func:`last_posterior` - each sample's posterior at the last step's evaluation: the last *informative* one (the
  step after it injects no noise, so a transition likelihood there only measures the guidance itself);
* :func:`curve_indices` / :func:`curves` - the individual curves shown in the report, chosen by final label:
  the first samples ending in the removed class and the first ending elsewhere (the first N samples alone are
  almost all kept ones at a 1% forbidden share, which hid what p does on the samples that matter);
* :func:`label_summary` - per step, the mean and 10/50/90% quantiles of p for samples ending in the removed
  class and for the others, and the scalars the summary quotes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

QUANTILES = (0.1, 0.5, 0.9)


@dataclass(frozen=True)
class PosteriorRecords:
    """``p`` and ``lam``: ``[steps recorded, samples]`` float64; ``step``, ``sigma``: per recorded step."""

    step: list[int]
    sigma: list[float]
    p: np.ndarray
    lam: np.ndarray

    @classmethod
    def from_batches(cls, batches: list[list[dict]]) -> PosteriorRecords:
        """Stack the core's per-image records (``DynamicNegativeGuidance.records``) of consecutive batches."""
        if not batches or not batches[0]:
            raise ValueError("no DNG records: sample the point with record='per_image'")
        steps = [r["step"] for r in batches[0]]
        if any([r["step"] for r in batch] != steps for batch in batches):
            raise ValueError("the batches recorded different steps")
        p = np.concatenate([np.array([r["p"] for r in batch], dtype=np.float64) for batch in batches], axis=1)
        lam = np.concatenate([np.array([r["lambda"] for r in batch], dtype=np.float64) for batch in batches], axis=1)
        return cls(steps, [float(r["sigma"]) for r in batches[0]], p, lam)

    def tensors(self) -> dict[str, torch.Tensor]:
        """As a point's files keep them: ``dng_p``, ``dng_lambda`` ``[steps, samples]``, ``dng_step``, ``dng_sigma``."""
        return {"dng_p": torch.from_numpy(self.p), "dng_lambda": torch.from_numpy(self.lam),
                "dng_step": torch.tensor(self.step), "dng_sigma": torch.tensor(self.sigma, dtype=torch.float64)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor]) -> PosteriorRecords | None:
        """The records in a point's tensors (:meth:`tensors`), None when it has none."""
        if "dng_p" not in tensors:
            return None
        return cls(tensors["dng_step"].tolist(), tensors["dng_sigma"].tolist(), tensors["dng_p"].numpy(),
                   tensors["dng_lambda"].numpy())

    @classmethod
    def joined(cls, parts: list[PosteriorRecords]) -> PosteriorRecords:
        """The records of consecutive sample ranges side by side (same steps)."""
        if any(part.step != parts[0].step for part in parts):
            raise ValueError("the sample ranges recorded different steps")
        return cls(parts[0].step, parts[0].sigma, np.concatenate([part.p for part in parts], axis=1),
                   np.concatenate([part.lam for part in parts], axis=1))


def lambda_table(records: PosteriorRecords) -> dict:
    """Per recorded step: the mean over all samples of lambda and of p."""
    return {"step": list(records.step), "mean_lambda": records.lam.mean(axis=1).tolist(),
            "mean_p": records.p.mean(axis=1).tolist()}


def schedule_lambdas(table: dict, steps: int, initial: float) -> list[float]:
    """lambda for each of ``steps`` sampler steps from a :func:`lambda_table`: a step without a record reuses
    the last recorded lambda (what DNG itself does there), ``initial`` before the first record."""
    by_step = dict(zip(table["step"], table["mean_lambda"], strict=True))
    out, current = [], initial
    for k in range(steps):
        current = by_step.get(k, current)
        out.append(float(current))
    return out


def last_posterior(records: PosteriorRecords) -> np.ndarray:
    """Each sample's posterior at the last recorded step."""
    return records.p[-1].copy()


def curve_indices(labels: np.ndarray, removed: int, count: int) -> list[int]:
    """Up to ``count`` sample indices: the first ``count // 2`` ending in the removed class and the first ending
    elsewhere, topped up from the other kind when one is short, in index order."""
    forbidden = np.flatnonzero(labels == removed).tolist()
    kept = np.flatnonzero(labels != removed).tolist()
    take_forbidden = min(len(forbidden), max(count // 2, count - len(kept)))
    take_kept = min(len(kept), count - take_forbidden)
    return sorted(forbidden[:take_forbidden] + kept[:take_kept])


def curves(records: PosteriorRecords, labels: np.ndarray, removed: int, count: int) -> dict:
    """p(t) and lambda(t) of the :func:`curve_indices` samples (``p[step][i]``), with their indices and labels."""
    chosen = curve_indices(labels, removed, count)
    return {"step": list(records.step), "sigma": list(records.sigma), "indices": chosen,
            "labels": [int(labels[i]) for i in chosen], "p": records.p[:, chosen].tolist(),
            "lambda": records.lam[:, chosen].tolist()}


def label_summary(records: PosteriorRecords, labels: np.ndarray, removed: int) -> dict:
    """Per group ("removed": samples the classifier puts in the removed class at the end, "kept": the others):
    its size, per step the mean and QUANTILES of p, and the scalars: mean p at the last recorded step, mean of each
    sample's largest p, and the share of samples whose p ever exceeded 0.5."""
    out = {"step": list(records.step), "quantiles": list(QUANTILES)}
    for group, mask in (("removed", labels == removed), ("kept", labels != removed)):
        p = records.p[:, mask]
        if p.shape[1] == 0:
            out[group] = {"samples": 0}
            continue
        out[group] = {"samples": int(p.shape[1]), "mean_p": p.mean(axis=1).tolist(),
                      "quantile_p": np.quantile(p, QUANTILES, axis=1).T.tolist(),
                      "last_mean_p": float(p[-1].mean()), "mean_max_p": float(p.max(axis=0).mean()),
                      "share_above_half": float((p.max(axis=0) > 0.5).mean())}
    return out
