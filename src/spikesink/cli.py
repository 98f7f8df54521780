"""`spikesink scan MODEL`: the spike and the sinks of one model in a minute, from the shell.

MODEL is an acquired or Hugging Face model directory, a .gguf file, or the name of a model in a
workflow config (--config, default config/config.yaml). The scan runs what the workflow's rules
run, through the same package functions (acquisition, prompt sampling, the one extraction
forward, life-cycle detection), on a handful of prompts, prints the findings and writes the same
files the workflow writes under results/<model>/ (here: --out, default results/scan/<model>/).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import re
import shutil
import sys
import time
from pathlib import Path

log = logging.getLogger("spikesink.scan")

DEFAULT_CONFIG = Path("config/config.yaml")
DEFAULT_CORPUS = Path("resources/corpus/passages.jsonl")


class ScanError(Exception):
    """A problem with what was asked for; main prints it as one line."""


def _spec_for(target: str, config_path: Path) -> tuple[str, dict]:
    """(model name, acquisition spec) for a directory, a .gguf file or a configured model name."""
    path = Path(target).expanduser()
    if path.is_dir():
        return path.resolve().name, {"source": "local", "path": str(path.resolve())}
    if path.is_file() and path.suffix == ".gguf":
        return path.stem, {"source": "gguf_file", "path": str(path.resolve())}
    if "/" in target or target.startswith(("~", ".")) or path.suffix == ".gguf":
        raise ScanError(f"{target} does not exist; give a model directory, a .gguf file or a model name of --config")
    if not config_path.is_file():
        raise ScanError(
            f"{target!r} is neither a directory nor a .gguf file, and there is no config {config_path} "
            "naming models (pass --config)"
        )
    import yaml

    from spikesink.config import model_entry_problems

    try:
        models = (yaml.safe_load(config_path.read_text()) or {}).get("models") or {}
    except (yaml.YAMLError, AttributeError) as error:
        raise ScanError(f"{config_path} is not a YAML mapping ({' '.join(str(error).split())})") from None
    if target not in models:
        known = ", ".join(sorted(models)) or "none"
        raise ScanError(
            f"{target!r} is neither a directory, a .gguf file nor a model of {config_path} (models there: {known})"
        )
    # the checks of the workflow's start-up, so that no error names a key derived from a bad entry
    problems = model_entry_problems(target, models[target])
    if problems:
        raise ScanError(f"{config_path}: {'; '.join(problems)} (config/README.md describes every key)")
    return target, models[target]


def _passages(corpus: Path | None, cache: Path) -> list[dict]:
    from spikesink.acquisition import corpus as corpora

    if corpus is None:
        corpus = DEFAULT_CORPUS if DEFAULT_CORPUS.is_file() else cache / "corpus" / "passages.jsonl"
        if not corpus.is_file():
            log.info("no corpus given: acquiring the default one (Jane Austen, Debian r-cran-janeaustenr)")
            corpora.acquire_janeausten(corpus.parent)
    elif corpus.is_dir():
        out = cache / "corpus-local" / hashlib.sha256(str(corpus.resolve()).encode()).hexdigest()[:10]
        corpora.acquire_local_text(corpus, out)
        corpus = out / "passages.jsonl"
    return corpora.read_passages(corpus)


def scan(args: argparse.Namespace) -> dict:
    """The public API's extraction and life cycle on a few prompts (spikesink.api)."""
    from spikesink.api import Study, acquire_spec, load_model
    from spikesink.instrumentation.loading import ModelLoadError
    from spikesink.results import save_block_stats, write_prompts, write_sink_stats

    started = time.perf_counter()
    name, spec = _spec_for(args.model, Path(args.config))
    log.info("model %s (%s)", name, spec["source"])
    model_dir = acquire_spec(name, spec, Path(args.cache))
    try:
        model = load_model(model_dir, dtype=args.dtype, device=args.device, name=name)
    except ModelLoadError as error:
        if model_dir.is_relative_to(Path(args.cache)):
            shutil.rmtree(model_dir)  # a cached copy of bad weights: the next scan acquires the fixed ones
        # name what the user gave, not the cache copy it was acquired into
        raise ModelLoadError(str(error).replace(str(model_dir), args.model)) from error
    settings = {
        "extraction": {
            "n_prompts": args.prompts,
            "seq_len": args.seq_len,
            "seed": args.seed,
            "batch_size": min(args.batch_size, args.prompts),
        },
        "spike": {"floor": args.floor, "median_ratio": args.median_ratio},
    }
    study = Study(model, _passages(args.corpus, Path(args.cache)), config=settings, progress=not args.quiet)
    prompts = study.prompts("extraction")
    stats, sinks = study.extraction()
    lifecycle = study.run("lifecycle")
    out = Path(args.out or f"results/scan/{name}")
    write_prompts(out / "prompts" / "extraction", prompts)
    save_block_stats(stats, out / "block_stats.npz", out / "block_stats.json")
    write_sink_stats(out / "sinks.npz", sinks)
    lifecycle.save(out / "lifecycle")
    arch = model.describe()
    summary = {
        "model": name,
        "family": arch["family"],
        "model_type": arch["model_type"],
        "norm_placement": arch["norm_placement"],
        "ffn": arch["ffn_kind"],
        "blocks": lifecycle.n_blocks,
        "spike_channels": lifecycle.spike_channels,
        "step_up": lifecycle.step_up,
        "step_down": lifecycle.step_down,
        "plateau": lifecycle.plateau,
        "peak": lifecycle.peak_magnitude,
        "peak_block": lifecycle.peak_block,
        "peak_over_median": lifecycle.peak_median_ratio,
        "position0_spike_share": lifecycle.position0_spike_fraction,
        "sink_ratio_percent": sinks.sink_ratio,
        "key0_mass": sinks.key0_mass_mean,
        "prompts": f"{len(prompts.ids)} x {args.seq_len}",
        "bos_added": prompts.bos_added,
        "out": str(out),
        "seconds": round(time.perf_counter() - started, 1),
    }
    return summary


def _print(summary: dict) -> None:
    def blocks(values):
        return ", ".join(map(str, values)) or "none"

    print(
        f"{summary['model']}: {summary['family']} ({summary['model_type']}), {summary['norm_placement']} norm, "
        f"{summary['ffn']}, {summary['blocks']} blocks"
    )
    print(f"  spike channels  {blocks(summary['spike_channels'])}")
    print(f"  step-up blocks  {blocks(summary['step_up'])}    step-down blocks  {blocks(summary['step_down'])}")
    plateau = "-".join(map(str, summary["plateau"])) if summary["plateau"] else "none"
    print(
        f"  peak |h|        {summary['peak']:.4g} at block {summary['peak_block']} = "
        f"{summary['peak_over_median']:.3g} x median (massive blocks {plateau}; position 0 spikes in "
        f"{100 * summary['position0_spike_share']:.0f}% of prompts)"
    )
    print(
        f"  sink ratio      {summary['sink_ratio_percent']:.1f}% (eps 0.3), mean attention on key 0 "
        f"{summary['key0_mass']:.3f}"
    )
    print(
        f"  {summary['prompts']} tokens (BOS added: {summary['bos_added']}), {summary['seconds']} s; "
        f"results in {summary['out']}/"
    )


def _user_error(error: Exception, target: str) -> str | None:
    """One line for an error that is the input's fault (the message says what to do); None for a bug."""
    message = " ".join(str(error).split())
    if isinstance(error, ScanError):
        return message
    from spikesink.acquisition.spec import ModelSourceError
    from spikesink.extraction.block_stats import NonFiniteHiddenState
    from spikesink.instrumentation.loading import ModelLoadError

    if not isinstance(error, (ModelSourceError, ModelLoadError, NonFiniteHiddenState)):
        return None
    if isinstance(error, ModelSourceError) and Path(target).expanduser().exists():
        # acquisition names config keys (models.<name>.path: ...); a model given as a path has none
        message = re.sub(r"^models\.\S+?: ", "", message)
        message = message if target in message else f"{target}: {message}"
    return message


def default_spike_rule():
    from spikesink.config import default_rule

    return default_rule()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="spikesink", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser(
        "scan",
        help="spike channels, step-up/down blocks and sinks of one model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model directory, .gguf file, or model name in --config")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="workflow config naming models (default: %(default)s)")
    p.add_argument(
        "--corpus", type=Path, help="passages.jsonl or a directory of .txt files (default: the workflow's corpus)"
    )
    p.add_argument("--prompts", type=int, default=8, help="number of prompts (default: %(default)s)")
    p.add_argument("--seq-len", type=int, default=128, help="tokens per prompt (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    spike = default_spike_rule()
    p.add_argument(
        "--floor", type=float, default=spike.floor, help="massive: above this |h| ... (default: %(default)s)"
    )
    p.add_argument(
        "--median-ratio",
        type=float,
        default=spike.median_ratio,
        help="... and this many times the median (default: %(default)s)",
    )
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.add_argument(
        "--cache", default="resources/scan", help="where acquired models and corpora go (default: %(default)s)"
    )
    p.add_argument("--out", help="results directory (default: results/scan/<model>)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars or log lines")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    commands.add_parser("thresholds", help="every claim's threshold, its default and the reason for it (Markdown)")
    args = parser.parse_args(argv)
    if args.command == "thresholds":
        from spikesink.config import thresholds_markdown

        print(thresholds_markdown(), end="")
        return 0
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.quiet:
        import transformers

        transformers.logging.disable_progress_bar()
    try:
        summary = scan(args)
    except Exception as error:
        message = _user_error(error, args.model)
        if message is None or args.debug:
            raise
        print(f"spikesink scan: {message}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
