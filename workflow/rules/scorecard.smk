rule scorecard:
    """Every checked paper claim: paper value, ours, holds or not, tolerance used."""
    input:
        claims=claim_files(),
    output:
        csv=report("paper_tables/scorecard.csv", caption="../report/scorecard.rst", category="Scorecard"),
        md="paper_tables/scorecard.md",
        counts=multiext("paper_tables/scorecard_counts", ".csv", ".md"),
        figure=report(
            "figures/scorecard/overview.pdf", caption="../report/scorecard_overview.rst", category="Scorecard"
        ),
        figure_png="figures/scorecard/overview.png",
    log:
        "logs/scorecard.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/scorecard.py"
