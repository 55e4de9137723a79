"""Course tooling: ``python -m course list | run | release | check | grade``."""
