rule scorecard:
    """Every checked paper claim: paper value, ours, holds or not, tolerance used."""
    input:
        claims=claim_files(),
    output:
        multiext("paper_tables/scorecard", ".csv", ".md"),
    log:
        "logs/scorecard.log",
    conda:
        ANALYSIS_ENV
    script:
        "../scripts/scorecard.py"
