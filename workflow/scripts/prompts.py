from spikesink.acquisition.corpus import read_passages
from spikesink.extraction.prompts import sample_prompt_set
from spikesink.instrumentation.loading import load_tokenizer
from spikesink.logs import snakemake_logger
from spikesink.results import write_prompts

log = snakemake_logger(snakemake)
tokenizer, max_positions = load_tokenizer(snakemake.input.model)
prompts = sample_prompt_set(
    snakemake.wildcards.prompt_set,
    read_passages(snakemake.input.passages),
    tokenizer,
    max_positions=max_positions,
    **snakemake.params.spec,
)
write_prompts(snakemake.output[0], prompts)
log.info("%s: %d prompts (BOS added: %s)", prompts.name, len(prompts.ids), prompts.bos_added)
