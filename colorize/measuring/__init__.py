"""Measuring: classic colorizers, evaluation reports, comparing runs, the Turing-test page."""
