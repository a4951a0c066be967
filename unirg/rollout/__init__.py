"""Rollout workers: vLLM engines in Ray actors and the TRL generation backend that drives them."""
