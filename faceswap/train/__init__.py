"""Training: losses, LR schedules (pure functions of the step), monitoring and the LR finder."""
