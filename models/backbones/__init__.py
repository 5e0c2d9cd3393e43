"""Backbones: Swin and SeMask-Swin."""
