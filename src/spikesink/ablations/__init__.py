"""Section 4 ablations trained from scratch: a plain Llama-style decoder with one switch per ablation.

model.py (the decoder), data.py (tokenizer + memory-mapped tokens), train.py (the loop, the CLI and
run_variant), evaluate.py (held-out ppl, sink ratio, spike), variants.py (named diffs from a baseline
with the paper's numbers attached), configs.py (ModelConfig and TrainConfig; torch-free, like
variants.py, since the workflow reads both while it builds its DAG).
"""
