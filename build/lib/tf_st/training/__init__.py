"""Strategy, schedules, PyTorch-semantics optimizer, checkpoint/resume, paper presets."""
