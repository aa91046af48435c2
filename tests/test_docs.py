"""The README's promises that can be checked mechanically."""

import re
import shlex
from pathlib import Path

from napari_resample._cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", readme, flags=re.S)
    test_commands = [b.strip() for b in blocks if "pytest" in b]
    assert test_commands, "README gives no test command"
    ci_lines = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci_lines[-1].strip() == test_commands[0]


def test_readme_main_command_runs_on_the_sample(tmp_path, monkeypatch, capsys):
    readme = (ROOT / "README.md").read_text()
    line = next(ln for ln in readme.splitlines() if "napari-resample --sample" in ln)
    args = shlex.split(line.split("napari-resample", 1)[1].split("&&")[0])
    monkeypatch.chdir(tmp_path)
    assert main(args) == 0
    assert "Resampled image saved at:" in capsys.readouterr().out
    out_dir = tmp_path / args[args.index("--sample") + 1]
    assert (out_dir / "phantom_resampled.nii.gz").is_file()
