"""Companion package of the deep generative models course.

Reference implementations the lessons import: data loading (:mod:`companion.data`),
profiles and seeding (:mod:`companion.config`), the training helper
(:mod:`companion.train`), plotting (:mod:`companion.viz`), lesson gates
(:mod:`companion.gates`) and exercise checkers (:mod:`companion.exercises`).
"""

__version__ = "0.1.0"
