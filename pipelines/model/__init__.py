"""Finetune stage: the LoRA-adapted sequential recommender, its training loop and checkpoints."""
