"""policies: demonstrations, datasets, policy training, evaluation and deployment."""
