"""Exact ground truth for the guidance core: Gaussian mixtures diffused by a DDPM schedule.

``python -m negguide.toy --out DIR`` runs the study (see :mod:`negguide.toy.__main__`). Unlike the front-ends it
reaches past the package's front door: it checks the core's parts against exact answers (the flow tracker with a
mixture's exact divergence, oracle trackers, the posterior's own settings, the schedule tables).
"""
