"""Small artifacts on top of a base model: modality paths, bonds, projectors, LoRA, model cards, and their file I/O."""
