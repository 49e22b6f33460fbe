"""ACT (Zhao et al. 2023, Action Chunking with Transformers): LeRobot's folder shape, configuration / modeling /
processor, plus the temporal ensembler a runtime uses to blend overlapping chunks."""
