"""A notebook's tour of spikesink: every analysis on a model already in memory.

Runs as a script (`python examples/notebook_tour.py`, about a minute on 2 CPU cores) or cell by
cell in a notebook. By default it builds the planted Llama (a tiny model whose spike sits at known
blocks and channels) in memory; give a model directory or a .gguf file to study a real model:

    python examples/notebook_tour.py resources/models/smollm2-135m --texts resources/corpus/passages.jsonl
"""

from __future__ import annotations

import argparse
from pathlib import Path

import spikesink

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="model directory or .gguf file (default: the planted Llama)")
    parser.add_argument("--texts", default=str(REPO / ".test" / "texts"), help="folder of .txt or passages.jsonl")
    parser.add_argument("--out", default="results/tour", help="where the figures go")
    parser.add_argument("--small", action="store_true", help="small prompt sets (a smoke run)")
    args = parser.parse_args(argv)

    # 1. A model: one you already hold in memory (here the planted Llama and its byte tokenizer) ...
    if args.model is None:
        from spikesink.acquisition.planted import build_planted_llama, planted_tokenizer

        hf_model, _ = build_planted_llama()
        model = spikesink.load_model(hf_model, planted_tokenizer(), name="planted")
    else:  # ... or a directory / GGUF file, loaded and checked the way the workflow loads it
        model = spikesink.load_model(args.model)
    print(f"{model.name}: {model.describe()['family']}, {model.n_blocks} blocks")

    # 2. A study: the model, the texts its prompt sets are sampled from, and any config overrides
    small = {"extraction": {"n_prompts": 16, "seq_len": 48}, "heldout": {"n_prompts": 4, "seq_len": 48}}
    small["analyses"] = {"vocab_probe": {"limit": 256}, "silu_regime": {"n_sentences": 32}}
    small["analyses"]["kv_cache"] = {"window": 32, "n_tokens": 128, "bin": 16}
    study = spikesink.Study(model, args.texts, config=small if args.small else None)

    # 3. One analysis: what it reads (the extraction forward, the life cycle) runs first
    lifecycle = study.run("lifecycle")
    print(f"step-up {lifecycle.step_up}, step-down {lifecycle.step_down}, channels {lifecycle.spike_channels}")

    # 4. Every analysis, its claims and a figure (returns the data it drew)
    results = study.run_all()
    for name, result in results.items():
        print(f"  {name:18s} {'n/a: ' + result.not_applicable if result.not_applicable else 'measured'}")
    scorecard = study.scorecard()
    verdicts = scorecard[scorecard["kind"] == "finding"]["verdict"].value_counts()
    print("claims: " + ", ".join(f"{n} {verdict}" for verdict, n in verdicts.items()))
    drawn = study.figure("lifecycle", Path(args.out) / f"{model.name}_lifecycle")
    print(
        f"figure: {args.out}/{model.name}_lifecycle.{{pdf,png}}, top-1 peak {drawn['']['post_residual']['top-1'].max():.4g}"
    )
    return {"study": study, "results": results, "scorecard": scorecard, "drawn": drawn}


if __name__ == "__main__":
    main()
