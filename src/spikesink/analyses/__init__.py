"""Analyses: the paper's findings measured on the extraction's outputs and on targeted forwards."""
