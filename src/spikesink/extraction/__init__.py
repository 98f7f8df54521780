"""Extraction: prompts and the one batched forward pass that streams block and sink statistics."""
