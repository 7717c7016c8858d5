"""Training: config, losses and imbalance strategies, augmentation, optimiser and freezing
helpers, the training loop, fine-tuning and the imbalance study."""
