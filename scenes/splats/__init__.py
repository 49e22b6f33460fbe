"""3D Gaussian splats: the tensors and PLY layout, initialisation, densification and the training loop."""
