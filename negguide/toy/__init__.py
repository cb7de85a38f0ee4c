"""Exact ground truth for the guidance core: Gaussian mixtures diffused by a DDPM schedule.

``python -m negguide.toy --out DIR`` runs the study (see :mod:`negguide.toy.__main__`).
"""
