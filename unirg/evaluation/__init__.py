"""Evaluation: the ReXrank-style metric table and the run report."""
