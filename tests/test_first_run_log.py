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
