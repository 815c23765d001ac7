"""Procedural multi-view scenes with exact ground truth (see `scene`), rendered by analytic ray
casting (`raycast`) with photograph and pattern textures (`textures`)."""
