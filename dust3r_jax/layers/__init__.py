"""Flax building blocks of the DUSt3R network (patch embedding, RoPE, transformer blocks, heads)."""
