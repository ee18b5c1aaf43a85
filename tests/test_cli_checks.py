"""What ``eigenflow run`` and ``eigenflow bench`` check before they write anything: the
device, the output folder, TensorBoard, the examples of ``run --help`` and solver names."""

from __future__ import annotations

import re
import shlex
import sys

import pytest
import torch
from helpers import FAST_GCP_ARGS, error_line

from eigenflow.cli import _prepare_run, build_parser, main

# --------------------------------------------------------------------------- --device


@pytest.mark.parametrize(
    ("device", "hint"),
    [
        ("foo", None),
        ("mps", None),
        ("meta", None),
        ("", None),
        ("cpu:1", "cpu"),
        ("CUDA", "cuda"),
        ("cuda:x", "cuda:0"),
        ("gpu:1", "cuda:1"),
    ],
)
def test_run_refuses_a_device_it_cannot_use_before_writing(tmp_path, capsys, device, hint):
    out = tmp_path / "run"
    assert main(["run", "gcp", "--device", device, "--out", str(out), *FAST_GCP_ARGS]) == 1
    line = error_line(capsys)
    assert line.startswith(f"eigenflow: error: --device: {device!r} is not a device")
    assert "(allowed: cpu, cuda, cuda:N for GPU N;" in line
    if hint is None:
        assert "did you mean" not in line
    else:
        assert f"did you mean {hint!r}?" in line
    assert not out.exists()


def test_a_refused_device_leaves_the_folder_free_for_the_next_run(tmp_path, capsys):
    # --device meta used to fail after run.json was written: the next run needed --overwrite
    out = tmp_path / "run"
    assert main(["run", "gcp", "--device", "meta", "--out", str(out), *FAST_GCP_ARGS]) == 1
    capsys.readouterr()
    assert main(["run", "gcp", "--device", "cpu", "--out", str(out), *FAST_GCP_ARGS]) == 0
    assert (out / "summary.json").is_file()


def test_run_refuses_cuda_without_cuda_and_a_gpu_index_past_the_last(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["run", "gcp", "--device", "cuda:0", "--out", str(out), *FAST_GCP_ARGS]) == 1
    line = error_line(capsys)
    assert "--device: 'cuda:0' requested but CUDA is not available here" in line
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert main(["run", "gcp", "--device", "cuda:2", "--out", str(out), *FAST_GCP_ARGS]) == 1
    line = error_line(capsys)
    assert "--device: 'cuda:2' requested but this machine has 2 GPU(s)" in line
    assert "cuda:0 to cuda:1" in line
    assert not out.exists()


def test_run_refuses_the_device_of_a_config_file_before_writing(tmp_path, capsys):
    config = tmp_path / "run.toml"
    out = tmp_path / "run"
    config.write_text(f'pipeline = "gcp"\ndevice = "meta"\nout = "{out.as_posix()}"\n')
    assert main(["run", str(config), *FAST_GCP_ARGS]) == 1
    assert error_line(capsys).startswith("eigenflow: error: device: 'meta' is not a device")
    assert not out.exists()


# --------------------------------------------------------------------------- --out


def test_run_refuses_an_output_folder_that_is_a_file_or_below_one(tmp_path, capsys):
    file = tmp_path / "f"
    file.write_text("keep me")
    assert main(["run", "gcp", "--out", str(file), *FAST_GCP_ARGS]) == 1
    line = error_line(capsys)
    assert line.startswith(f"eigenflow: error: --out: {str(file)!r} is a file, not a folder")
    assert main(["run", "gcp", "--out", str(file / "sub"), *FAST_GCP_ARGS]) == 1
    line = error_line(capsys)
    assert line == (
        f"eigenflow: error: --out: {str(file / 'sub')!r} cannot be created: "
        f"{str(file)!r} is a file, not a folder"
    )
    assert main(["run", "gcp", "--out", "", *FAST_GCP_ARGS]) == 1
    assert error_line(capsys) == "eigenflow: error: --out: expected a folder path, got ''"
    assert file.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_run_refuses_a_config_output_folder_that_is_a_file(tmp_path, capsys):
    file = tmp_path / "f"
    file.write_text("")
    config = tmp_path / "run.json"
    config.write_text(f'{{"pipeline": "gcp", "out": "{file.as_posix()}/sub"}}')
    assert main(["run", str(config), *FAST_GCP_ARGS]) == 1
    assert error_line(capsys).startswith(f"eigenflow: error: out: '{file.as_posix()}/sub'")


@pytest.mark.skipif(sys.platform == "win32", reason="symbolic links")
def test_run_refuses_an_output_folder_below_a_dangling_link(tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    assert main(["run", "gcp", "--out", str(link / "sub"), *FAST_GCP_ARGS]) == 1
    assert f"{str(link)!r} is a link to nothing, not a folder" in error_line(capsys)
    assert not (tmp_path / "gone").exists()


# --------------------------------------------------------------------------- --tensorboard


def test_run_refuses_tensorboard_without_the_package_before_writing(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # not installed
    out = tmp_path / "run"
    assert main(["run", "gcp", "--tensorboard", "--out", str(out), *FAST_GCP_ARGS]) == 1
    line = error_line(capsys)
    assert line.startswith("eigenflow: error: --tensorboard: TensorBoard logging needs the")
    assert "pip install tensorboard" in line
    assert not out.exists()
    # the same from a config file names the config's key
    config = tmp_path / "run.toml"
    config.write_text(f'pipeline = "gcp"\ntensorboard = true\nout = "{out.as_posix()}"\n')
    assert main(["run", str(config), *FAST_GCP_ARGS]) == 1
    assert error_line(capsys).startswith("eigenflow: error: tensorboard: TensorBoard logging")
    assert not out.exists()


# --------------------------------------------------------------------------- run --help


def _run_help(capsys) -> str:
    with pytest.raises(SystemExit) as info:
        main(["run", "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def _validate(argv: list[str]):
    """What ``eigenflow run`` checks before it runs: the specification with the overrides
    (the pipeline's config validation), device, output folder; nothing is trained."""
    args = build_parser(bench_options=False).parse_args(argv)
    pipeline, _, _ = _prepare_run(args)
    return args, pipeline


def test_every_example_of_run_help_is_valid(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the examples' relative output folders
    help_text = _run_help(capsys)
    examples = [
        line.strip() for line in help_text.splitlines() if line.startswith("  eigenflow run ")
    ]
    assert len(examples) >= 3, help_text
    dotted = 0
    for example in examples:
        words = shlex.split(example)
        assert words[:2] == ["eigenflow", "run"], example
        args, pipeline = _validate(words[1:])
        assert [s.name for s in pipeline.stages] == [args.config], example
        config = pipeline.stages[0].config
        for item in args.set or []:  # each override reached the validated config
            key = item.split("=", 1)[0]
            head, _, entry = key.partition(".")
            value = getattr(config, head)
            if entry:
                dotted += 1
                assert entry in value, (example, key)
    assert dotted, "no example shows a dotted --set KEY"
    assert list(tmp_path.iterdir()) == []  # validating wrote nothing


def test_the_dotted_key_example_of_set_is_valid(capsys):
    # it was trainer.lr=1e-4, which the train pipeline refuses: lr is its own option
    help_text = " ".join(_run_help(capsys).split())
    match = re.search(r"\(e\.g\. (\S+=\S+) for the (\S+) pipeline\)", help_text)
    assert match, help_text
    setting, pipeline = match.groups()
    _, built = _validate(["run", pipeline, "--set", setting])
    head, entry = setting.split("=", 1)[0].split(".", 1)
    assert entry in getattr(built.stages[0].config, head)


# --------------------------------------------------------------------------- bench --solvers


@pytest.mark.parametrize(
    ("solvers", "expected"),
    [
        ("mpa-lyaa", "solvers: 'mpa-lyaa' matches no registered solver; did you mean 'mpa-lya'?"),
        (
            "svd,sdv-pade",
            "solvers: 'sdv-pade' matches no registered solver; did you mean 'svd-pade'?",
        ),
        ("mpa-lyaa:degree=6", "solvers: unknown solver 'mpa-lyaa'; did you mean 'mpa-lya'?"),
        ("torch.linalg.eig", "did you mean 'torch.linalg.eigh'?"),
    ],
)
def test_bench_suggests_the_closest_solver_name(tmp_path, capsys, solvers, expected):
    out = tmp_path / "bench"
    code = main(["bench", "--solvers", solvers, "--out", str(out), "--no-plots", "--quiet"])
    assert code == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("eigenflow bench: error: ") and expected in line, line
    assert "(registered: " in line and "svd-pade" in line
    assert not out.exists()


def test_bench_without_a_close_name_keeps_the_harness_message(tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["bench", "--solvers", "zzzz", "--out", str(out), "--no-plots", "--quiet"])
    assert code == 2
    line = capsys.readouterr().err.strip()
    assert line.startswith("eigenflow bench: error: solvers: 'zzzz' matches no registered")
    assert "did you mean" not in line
