"""The comparison report is rebuilt from results.json exactly as the full run writes it."""

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _row(method, clean, pgd, aa, train_s):
    return {"method": method, "clean_acc": clean, "pgd20_acc": pgd, "cw20_acc": pgd - 0.01,
            "aa_acc": aa, "aa_seconds": 71.6, "best_epoch": 2, "last_epoch_clean_acc": clean,
            "last_epoch_pgd20_acc": pgd, "train_seconds": train_s, "final_eval_seconds": 3.04,
            "attack_steps": 0 if method == "natural" else 10}


def test_report_only_rewrites_table_and_plot(tmp_path):
    rows = [_row("natural", 0.436, 0.029, 0.0, 25.3), _row("st", 0.342, 0.211, 0.185, 600.5)]
    with open(tmp_path / "results.json", "w") as f:
        json.dump({"protocol": "p", "rows": rows}, f)
    subprocess.run([sys.executable, "-m", "benchmarks.compare_methods", "--report_only",
                    f"--output_dir={tmp_path}", "--aa_examples=200",
                    "--data_dir=/nonexistent"],  # a report needs no data
                   cwd=ROOT, check=True, capture_output=True)
    lines = (tmp_path / "results.md").read_text().splitlines()
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header[:5] == ["method", "clean", "PGD-20", "CW-20", "AA (200 imgs)"]
    assert header[-1] == "AA s"
    st = [c.strip() for c in lines[-1].strip("|").split("|")]
    assert st == ["st", "34.2%", "21.1%", "20.1%", "18.5%", "2", "34.2%", "21.1%", "10",
                  "600", "3", "72"]
    assert (tmp_path / "clean_vs_robust.png").stat().st_size > 1000
    assert json.load(open(tmp_path / "results.json"))["rows"] == rows
