"""Model loading and the tiny offline vision-language model factory."""
