"""Load an acquired model directory (`resources/models/<name>/`) for analysis.

Every stage loads models through `load_model`, so all of them agree on the weights format
(safetensors only), evaluation mode, the architecture check and how dtype and device are chosen.
The manifest written by `spikesink.acquisition.models` is the source of truth for remote code and provenance.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from spikesink.acquisition.manifest import safetensors_hashes
from spikesink.acquisition.spec import MANIFEST
from spikesink.instrumentation.families import adapter_for
from spikesink.io import read_json

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
DEVICES = ("cpu", "cuda", "auto")


class ModelLoadError(RuntimeError):
    """An acquired model directory that cannot be loaded as asked; the message says why."""


def read_manifest(model_dir: str | Path) -> dict:
    """The manifest of an acquired model; a directory without one was never (fully) acquired."""
    path = Path(model_dir) / MANIFEST
    if not path.is_file():
        raise ModelLoadError(
            f"{model_dir} has no {MANIFEST}: it is not an acquired model directory. Run the acquire "
            "step (spikesink.acquisition.models.acquire_model / the `acquire_model` rule) first"
        )
    return read_json(path)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> cuda when available, else cpu; asking for cuda without a GPU is an error."""
    if device not in DEVICES:
        raise ModelLoadError(f"device {device!r} is not one of {', '.join(DEVICES)}")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """The torch dtype to load in; 'auto' is bfloat16 on CUDA and float32 on CPU.

    bfloat16 keeps float32's exponent range, so spikes of 1e4+ stay representable on GPU;
    on CPU half types are slow and gain nothing, so asking for them there logs a warning.
    """
    if dtype == "auto":
        dtype = "bfloat16" if device.type == "cuda" else "float32"
    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)} or 'auto'")
    if device.type == "cpu" and dtype != "float32":
        log.warning("loading in %s on CPU: slow on most CPUs; float32 is the CPU default", dtype)
    return DTYPES[dtype]


def verify_weights(model_dir: str | Path, manifest: dict | None = None) -> None:
    """Re-hash the safetensors files and compare with the manifest (slow for large models)."""
    model_dir = Path(model_dir)
    manifest = manifest or read_manifest(model_dir)
    expected = manifest.get("safetensors_sha256", {})
    got = safetensors_hashes(model_dir, {})
    if got != expected:
        changed = sorted(set(got.items()) ^ set(expected.items()))
        raise ModelLoadError(f"{model_dir}: safetensors files differ from the manifest ({changed[:4]}); re-acquire it")


def load_model(
    model_dir: str | Path,
    dtype: str = "float32",
    device: str = "cpu",
    attn_implementation: str | None = None,
    verify: bool = False,
):
    """(model, tokenizer, manifest) for an acquired model directory, in eval mode.

    The files and the architecture are checked from the config before any weight is read, so an
    unsupported family or a missing shard fails fast. attn_implementation defaults to the
    family's base implementation (sdpa; eager for Gemma 2, whose logit soft-capping sdpa
    refuses). `verify=True` re-hashes the weights against the manifest first. Weights that do
    not fit the config (missing, unused, other shapes) or are not finite raise ModelLoadError:
    transformers would only warn and run on freshly initialised weights.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model_dir = Path(model_dir)
    manifest = read_manifest(model_dir)
    check_model_files(model_dir)
    if verify:
        verify_weights(model_dir, manifest)
    trust = bool(manifest.get("trust_remote_code", False))
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust)
    try:
        adapter = adapter_for(config)
    except ValueError as error:
        raise ModelLoadError(f"{model_dir}: {error}") from None
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    report = _DropLoadReport()
    _transformers_log.addFilter(report)
    try:
        # mismatched shapes are collected (not raised) so that check_loading_info reports them all
        model, info = AutoModelForCausalLM.from_pretrained(
            model_dir,
            config=config,
            dtype=torch_dtype,
            use_safetensors=True,
            trust_remote_code=trust,
            attn_implementation=attn_implementation or adapter.base_attention,
            output_loading_info=True,
            ignore_mismatched_sizes=True,
        )
    except (OSError, RuntimeError) as error:
        if report.dropped:  # its details (e.g. CONVERSION entries) are what the error points at
            log.warning("%s", report.dropped)
        reason = " ".join(str(error).split())[:400] or type(error).__name__
        raise ModelLoadError(
            f"{model_dir}: transformers could not load the weights ({reason}); re-acquire it"
        ) from error
    finally:
        _transformers_log.removeFilter(report)
    check_loading_info(model_dir, model, info)
    check_finite_weights(model_dir, model)
    model.to(torch_device).eval()
    tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust)
    return model, tokenizer, manifest


def check_model_files(model_dir: Path) -> None:
    """config.json and every shard the safetensors index names are there."""
    if not (model_dir / "config.json").is_file():
        raise ModelLoadError(
            f"{model_dir} has no config.json: it is not a Hugging Face model directory (or it was changed "
            "after acquisition); acquire the model again"
        )
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(read_json(index)["weight_map"].values()))
        missing = [shard for shard in shards if not (model_dir / shard).is_file()]
        if missing:
            raise ModelLoadError(
                f"{model_dir}: its safetensors index names shards that are not there: {_first(missing)} "
                f"({len(missing)} of {len(shards)}); re-acquire the model (or copy the missing shards in)"
            )


def check_loading_info(model_dir: Path, model, info: dict) -> None:
    """Refuse weights that do not fit the model config.json describes.

    transformers initialises missing weights at random and drops unused ones with a warning, so a
    checkpoint of one family under another family's config.json (or with other sizes) would
    otherwise be analysed as a random model. transformers already leaves out what it ties or
    computes itself (lm_head tied to the embedding, rotary frequencies, causal masks); missing
    buffers are initialised by the model, not learned, so they are no reason to refuse either.
    """
    buffers = {name for name, _ in model.named_buffers(remove_duplicate=False)}
    missing = sorted(k for k in info["missing_keys"] if k not in buffers)
    unexpected = sorted(info["unexpected_keys"])
    mismatched = sorted(info["mismatched_keys"])
    problems = []
    if missing:
        problems.append(f"{len(missing)} weights the model needs are missing from the checkpoint ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} weights of the checkpoint are not used by it ({_first(unexpected)})")
    if mismatched:
        shapes = [
            f"{k}: {_shape(ckpt)} in the checkpoint vs {_shape(ours)} from config.json" for k, ckpt, ours in mismatched
        ]
        problems.append(f"{len(mismatched)} weights have other shapes than config.json gives ({_first(shapes)})")
    if info.get("error_msgs"):
        problems.append(_first(info["error_msgs"]))
    if problems:
        config = model.config
        raise ModelLoadError(
            f"{model_dir}: the weights do not match config.json (model_type {config.model_type!r}, "
            f"{', '.join(config.architectures or [type(model).__name__])}): {'; '.join(problems)}. "
            "Check that config.json's model_type, architectures and sizes are those of the checkpoint "
            "(or convert it again), then acquire it again"
        )


def check_finite_weights(model_dir: Path, model) -> None:
    """One pass over the parameters; the first one holding NaN or inf is named.

    Such a weight turns every hidden state after it into NaN, which would pass for a result.
    """
    params = [(name, p) for name, p in model.named_parameters() if p.numel()]
    # one flag per parameter and a single device sync (not one per parameter on a GPU); min and max
    # propagate NaN and show +-inf, in one pass with no tensor of flags (12x isfinite(p).all() on CPU)
    finite = (
        torch.stack([torch.isfinite(torch.stack(torch.aminmax(p.detach()))).all() for _, p in params]).cpu()
        if params
        else torch.ones(0)
    )
    if not bool(finite.all()):
        bad = [name for (name, _), ok in zip(params, finite.tolist()) if not ok]
        more = f" (and {len(bad) - 1} more parameters)" if len(bad) > 1 else ""
        raise ModelLoadError(
            f"{model_dir}: {bad[0]} holds non-finite values (NaN or inf){more}: the checkpoint is corrupt "
            "or was converted with overflow; re-acquire or re-convert it"
        )


def _first(items: list[str], n: int = 3) -> str:
    """The first n items, and how many more, for error messages."""
    more = f", ... {len(items) - n} more" if len(items) > n else ""
    return ", ".join(map(str, items[:n])) + more


def _shape(size) -> str:
    return "x".join(map(str, size))


_transformers_log = logging.getLogger("transformers.modeling_utils")


class _DropLoadReport(logging.Filter):
    """Holds back transformers' table of missing / unused / mismatched keys: check_loading_info
    reports them in one line and raises before anything runs on such weights."""

    def __init__(self):
        super().__init__()
        self.dropped = ""

    def filter(self, record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in record.getMessage():
            self.dropped = record.getMessage()
            return False
        return True


def load_tokenizer(model_dir: str | Path):
    """(tokenizer, max positions) of an acquired model directory, without reading weights."""
    from transformers import AutoConfig, AutoTokenizer

    manifest = read_manifest(model_dir)
    trust = bool(manifest.get("trust_remote_code", False))
    config = AutoConfig.from_pretrained(model_dir, trust_remote_code=trust)
    return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust), _max_positions(config)


def _max_positions(config) -> int:
    value = getattr(config, "max_position_embeddings", None)
    if not value:
        raise ModelLoadError(f"{type(config).__name__} states no max_position_embeddings")
    return int(value)


def max_positions(model) -> int:
    """The longest sequence the model was configured for (its position / rope limit)."""
    return _max_positions(model.config)
