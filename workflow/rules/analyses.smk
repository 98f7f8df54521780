# Every analysis's rules, generated from its registry entry (spikesink.analyses): adding an analysis
# adds a folder under src/spikesink/analyses/, no rule text. Per analysis <name>:
#   <name>          the measurement -> results/<model>/<name>/ (loads the model once when it reads one;
#                   an analysis across models, e.g. architectures, -> results/<name>/)
#   <name>_report   claims, figures and tables, from the result files (never a model)
#   <name>_summary  figures and tables across the configured models
# Each job's params are the config it reads and a hash of the analysis's own code on that side, so a
# changed measurement reruns its model job, a changed figure, caption or threshold only its report;
# a per-model job's params name no other model (common.smk: job_models), so adding a model to the
# config reruns only the new model's jobs and those across models.


for entry in ANALYSES.values():
    model_job = entry.needs_model
    log_name = "{model}" if entry.per_model else "all"

    rule:
        name:
            entry.name
        input:
            unpack(read_files(entry.reads, entry.per_model)),
        output:
            analysis_jobs.result_files(entry),
        log:
            f"logs/{entry.name}/{log_name}.log",
        benchmark:
            f"logs/benchmarks/{entry.name}/{log_name}.tsv"
        priority: entry.priority or int(model_job)
        conda:
            TORCH_ENV if model_job else ANALYSIS_ENV
        threads: analysis_threads(entry)
        resources:
            mem_mb=model_mem_mb if model_job else 2000,
            gpu=GPUS if model_job and entry.gpu else 0,
        params:
            analysis=entry.name,
            models=job_models(entry),
            config=job_config(entry, "measure"),
            options=lambda wc: config["models"][wc.model] if "model" in wc.keys() else {},
            code=analysis_jobs.source_hash(entry, "measure"),
        script:
            "../scripts/measure.py"

    rule:
        name:
            f"{entry.name}_report"
        input:
            unpack(read_files(entry.report_reads, entry.per_model)),
            result=analysis_jobs.result_files(entry),
        output:
            **report_outputs(entry),
        log:
            f"logs/{entry.name}_report/{log_name}.log",
        conda:
            ANALYSIS_ENV
        params:
            analysis=entry.name,
            models=job_models(entry),
            config=job_config(entry, "report"),
            paper_models=job_paper_models(entry),
            code=analysis_jobs.source_hash(entry, "report"),
        script:
            "../scripts/report.py"

    if entry.summary_figures or entry.summary_tables:

        rule:
            name:
                f"{entry.name}_summary"
            input:
                unpack(read_files(entry.report_reads, per_model=False)),
                result=[f for m in MODELS for f in analysis_jobs.result_files(entry, m)],
            output:
                **figure_outputs(entry, entry.summary_figures, None),
                **table_outputs(entry, entry.summary_tables, None),
            log:
                f"logs/{entry.name}_summary.log",
            conda:
                ANALYSIS_ENV
            params:
                analysis=entry.name,
                models=MODELS,
                config=job_config(entry, "report"),
                paper_models=PAPER_MODELS,
                code=analysis_jobs.source_hash(entry, "report"),
            script:
                "../scripts/summary.py"
