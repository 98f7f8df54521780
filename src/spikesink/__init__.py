"""spikesink: replicate "The Spike, the Sparse and the Sink" on the paper's models and on yours.

The public API (spikesink.api) is importable from here; it loads lazily, so that `import
spikesink` stays cheap (the workflow imports the package while it builds its DAG):

    model = spikesink.load_model("resources/models/smollm2-135m")
    study = spikesink.Study(model, ".test/texts")
    study.run("lifecycle")
"""

__version__ = "0.1.0"

_API = ("APIError", "Study", "analyses", "compare", "load_model", "load_texts", "run")


def __getattr__(name: str):
    if name in _API:
        from spikesink import api

        return getattr(api, name)
    raise AttributeError(f"module 'spikesink' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
