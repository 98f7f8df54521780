import re
from pathlib import Path

from snakemake.utils import validate

from spikesink.config import check_config


validate(config, schema="../schemas/config.schema.yaml")
check_config(config, workdir=Path.cwd())

MODELS = sorted(config["models"])
ANALYSIS_ENV = "../../envs/analysis.yaml"
TORCH_ENV = "../../envs/torch.yaml"


wildcard_constraints:
    model="|".join(re.escape(name) for name in MODELS),


def model_spec(wildcards):
    return config["models"][wildcards.model]


def uses_gpu():
    return config["extraction"].get("device", "auto") == "cuda"


def claim_files():
    """Every analysis that checks paper claims adds its per-model claims file here."""
    return expand("results/{model}/claims/lifecycle.json", model=MODELS)


def all_outputs():
    return [
        *expand("figures/lifecycle/{model}.{ext}", model=MODELS, ext=["pdf", "png"]),
        *expand("figures/lifecycle/all_models.{ext}", ext=["pdf", "png"]),
        *expand("paper_tables/table1_step_up_down.{ext}", ext=["csv", "md", "tex"]),
        *expand("paper_tables/scorecard.{ext}", ext=["csv", "md"]),
    ]
