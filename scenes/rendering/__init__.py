"""Rendering splats: rasterize() over gsplat (CUDA), Warp kernels (CPU) and a PyTorch oracle; camera paths; video."""
