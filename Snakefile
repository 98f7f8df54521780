# The replication workflow. Rules live in workflow/rules (one file per stage), their thin
# scripts in workflow/scripts, all logic in the spikesink package (src/spikesink).
#   snakemake --cores all                               everything in config/config.yaml
#   snakemake figures/lifecycle/smollm2-135m.png        one figure (and what it needs)
#   snakemake --cores all --configfile config/paper.yaml  the paper's models (GPU)
from snakemake.utils import min_version

min_version("9.0")


# A --configfile on the command line replaces the default instead of being merged into it, so
# `--configfile config/paper.yaml` runs the paper's models only.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"



report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/acquire.smk"
include: "workflow/rules/extract.smk"
include: "workflow/rules/lifecycle.smk"
include: "workflow/rules/mechanisms.smk"
include: "workflow/rules/sinks.smk"
include: "workflow/rules/ablations.smk"
include: "workflow/rules/scorecard.smk"


rule all:
    input:
        all_outputs(),
    default_target: True
