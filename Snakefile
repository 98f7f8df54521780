# The workflow lives in workflow/Snakefile (the Snakemake catalog layout); this top-level file
# lets `snakemake` run from a clone's root, as the README says. (The `include:` keyword would
# keep this file's default target, none; the call below takes workflow/Snakefile's `rule all`.)
workflow.include("workflow/Snakefile", overwrite_default_target=True)
