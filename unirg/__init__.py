"""unirg: reinforcement-learning post-training for vision-language models that write radiology reports."""

__version__ = "0.1.0"
