"""Dense geometry: plane-sweep depth per view, fused into a coloured point cloud and a collision mesh."""
