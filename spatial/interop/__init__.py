"""Other tools' camera formats: COLMAP models and nerfstudio transforms.json, in and out."""
