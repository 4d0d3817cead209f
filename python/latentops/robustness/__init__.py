"""latentops.robustness: perturb the inputs or the model of your own classifier, for robustness
curves in the manner of the Laplacian-networks authors (Lassance et al.): Gaussian noise and FGSM set
by a per-sample SNR, L∞ PGD, k-bit weights and test-time dropout. Inputs are images in [0, 1]."""

from __future__ import annotations

from latentops.robustness.attacks import fgsm, pgd_linf
from latentops.robustness.model_perturbations import kbit_weights, with_test_time_dropout
from latentops.robustness.noise import gaussian_noise, snr_db

__all__ = ["fgsm", "gaussian_noise", "kbit_weights", "pgd_linf", "snr_db", "with_test_time_dropout"]
