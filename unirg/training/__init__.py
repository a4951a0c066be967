"""Training: TRL GRPOTrainer and SFTTrainer assembly, callbacks, checkpoints."""
