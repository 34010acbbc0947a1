"""Training infrastructure: the loop, checkpoints, optimiser, GradCache, gathering, tracking, run folders."""
