"""The browser viewer (viser): a bundle's splats, points, mesh and cameras; path editor; headless screenshots."""
