"""What the first run prints: no absl set-up noise from the study's child processes."""

import subprocess
import sys
import textwrap


def test_a_study_child_process_logs_without_absls_pre_flag_parsing_warning(tmp_path):
    """The child never parses flags; absl must not announce "Logging before flag parsing"."""
    script = tmp_path / "child_log.py"
    script.write_text(textwrap.dedent("""
        import logging
        from nodulelearn.study.worker import RunWorker

        def work():
            logging.getLogger("nodulelearn.child").warning("a record from the child")
            return 7

        if __name__ == "__main__":
            logging.getLogger().setLevel(logging.INFO)
            with RunWorker() as worker:
                print(worker.run(work))
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "7"
    assert "a record from the child" in result.stderr  # the child's records still reach stderr
    assert "Logging before flag parsing" not in result.stderr, result.stderr


def test_the_readme_caption_quotes_figures_that_hold_across_seeds():
    """A newcomer's one-seed numbers differ (another seed, another CPU): the caption says by how
    much, and the reliances it quotes are the eight-seed means of `paper` in docs/results.md."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    caption = readme.split("docs/images/study_quick_heatmap.png)", 1)[1].split("*\n", 1)[0]
    caption = " ".join(caption.split())  # the caption's line breaks fall anywhere
    assert "one seed" in caption and "up to about 0.1" in caption
    results = (root / "docs" / "results.md").read_text(encoding="utf-8")
    paper = results.split("## `paper` (eight seeds)", 1)[1].split("\n## ", 1)[0]
    quoted = re.findall(r"\d\.\d\d / \d\.\d\d", caption)
    assert quoted, caption
    for pair in quoted:  # "0.65 / 0.30": reliance margin / other, in a margin_noise row
        rows = [row for row in paper.splitlines() if row.startswith("| `margin_noise` |")]
        assert any(f"| {pair} |" in row for row in rows), pair
