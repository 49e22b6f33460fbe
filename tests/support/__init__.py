"""Shared test support: small scenes and bundles built from real components, loopback helpers."""
