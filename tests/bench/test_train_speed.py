"""bench/train_speed.py runs end to end on a tiny problem and writes what it printed."""

from __future__ import annotations

import json

from bench import train_speed


def test_train_speed_writes_its_figures_with_the_loss_compared(tmp_path, capsys):
    assert train_speed.main(["--users", "40", "--items", "30", "--seq-len", "8", "--batch-size", "8",
                             "--steps", "2", "--device", "cpu", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "train_speed-cpu.json").read_text())
    figures = result["figures"]
    assert result["machine"]["device"] == "cpu" and figures["precision"] == "float32"
    for key in ("step_s", "samples_per_s", "tokens_per_s", "eval_users_per_s", "epoch_s_estimate",
                "loss_chunked_s", "loss_plain_s"):
        assert figures[key] > 0, key
    assert figures["loss_plain_over_chunked"] == figures["loss_plain_s"] / figures["loss_chunked_s"]
    assert figures["eval_users"] == 40
    assert "loss_plain_over_chunked" in capsys.readouterr().out
