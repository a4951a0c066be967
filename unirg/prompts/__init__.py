"""Prompt templates and the completion parser shared by rewards."""
