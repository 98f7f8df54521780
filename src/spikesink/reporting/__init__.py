"""Figures and tables: one plotting style, paper-style tables, the paper's numbers, the scorecard."""
