"""Training: losses, LR schedules (pure functions of the step), checkpoints, monitoring, LR finder."""
