"""Training: losses, LR schedules (pure functions of the step), checkpoints, monitoring, LR finder,
weight import and freezing (weight_import), fit-training (fit)."""
