"""convert and evaluate warn when the model is far from trained."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from faceswap.train import checkpoint as ck
from faceswap.train.maturity import REFERENCE_STEPS, maturity, warn_if_untrained


def _copy(tiny_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_run, tmp_path / "run"))


def test_few_steps_warn_with_the_reference(tiny_run, tmp_path, caplog):
    run = _copy(tiny_run, tmp_path)
    found = maturity(ck.resolve_checkpoint(run, "latest"))
    assert found["step"] == 12 and found["arch"] == "sae"
    assert any(f"under the {REFERENCE_STEPS['sae']}" in w for w in found["warnings"])
    with caplog.at_level("WARNING", logger="faceswap"):
        assert warn_if_untrained(run)
    assert "far from trained" in caplog.text


def test_steep_validation_and_inherited_steps(tiny_run, tmp_path):
    run = _copy(tiny_run, tmp_path)
    latest = ck.resolve_checkpoint(run, "latest")
    state = json.loads((latest / "state.json").read_text())
    # a fit of a long-trained run: the inherited steps count
    state["lineage"] = {"source_step": 30_000, "parent": {"source_step": 20_000}}
    (latest / "state.json").write_text(json.dumps(state))
    rows = [{"step": s, "train": 1.0, "val_a": v, "val_b": v, "gap": 0.0}
            for s, v in ((3, 1.0), (6, 0.99), (9, 0.985), (12, 0.98))]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = maturity(latest)
    assert found["inherited_steps"] == 50_000 and found["warnings"] == []  # trained, flat
    rows[-1]["val_a"] = rows[-1]["val_b"] = 0.8  # -20 % over the last three validations
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    warnings = maturity(latest)["warnings"]
    assert len(warnings) == 1 and "still falling steeply (20%" in warnings[0]


def test_unreadable_state_is_not_our_error(tmp_path):
    assert warn_if_untrained(tmp_path / "nothing") == []
