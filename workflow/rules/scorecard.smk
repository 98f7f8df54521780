rule scorecard:
    """Every checked paper claim: paper value, ours, holds or not, tolerance used."""
    input:
        claims=claim_files(),
    output:
        csv=report("paper_tables/scorecard.csv", caption="../report/scorecard.rst", category="Scorecard"),
        md="paper_tables/scorecard.md",
        counts=multiext("paper_tables/scorecard_counts", ".csv", ".md"),
        figure="figures/scorecard/overview.pdf",
        figure_png=report(
            "figures/scorecard/overview.png", caption="../report/scorecard_overview.rst", category="Scorecard"
        ),
    log:
        "logs/scorecard.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/scorecard.py"


rule provenance:
    """Where every model's weights came from and the bytes analysed; a hub revision that is not a
    commit hash is named here, under the scorecard on the report's first page."""
    input:
        models=expand("resources/models/{model}", model=MODELS),
    output:
        csv=report("paper_tables/provenance.csv", caption="../report/provenance.rst", category="Scorecard"),
        md="paper_tables/provenance.md",
    log:
        "logs/provenance.log",
    conda:
        ANALYSIS_ENV
    params:
        models=MODELS,
    script:
        "../scripts/provenance.py"
