"""What the sink costs a KV cache that evicts old tokens (the StreamingLLM protocol)."""

from spikesink.analyses.unit import Analysis, Figure, PromptSet, Table


def _check(section, config):
    """A window the long text can test (the model's positions are checked when it is loaded)."""
    s = config["analyses"]["kv_cache"]
    window, tokens, keep = s["window"], s["n_tokens"], s["keep"]
    if tokens < 2 * window:
        return [
            f"analyses.kv_cache.n_tokens: {tokens} < 2 x analyses.kv_cache.window = {2 * window}: the window would "
            "evict too little to test; give a longer text or a smaller window"
        ]
    if any(k >= window for k in keep):
        return [f"analyses.kv_cache.keep: {keep} must lie in [0, window = {window})"]
    return []


ANALYSIS = Analysis(
    name="kv_cache",
    title="Sliding-window attention keeping 0, 1 or 4 first tokens (StreamingLLM)",
    paper="beyond the paper (StreamingLLM)",
    section="beyond the paper: KV cache",
    reads=("model", "prompts.long"),
    figures=(Figure("", "caption.rst", "windowed perplexity over position"),),
    tables=(Table(""),),
    prompt_sets=(PromptSet("long", "prompts", n="n_texts", seq_len="n_tokens"),),
    gpu=True,
    check=_check,
)
