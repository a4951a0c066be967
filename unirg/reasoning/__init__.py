"""Med-R2 reasoning: radiology knowledge (the checklist), teacher traces for SFT, and reflection."""
