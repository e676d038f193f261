"""train/compat.py: the up-front version check of the libraries whose private members the
trainers touch. Fast: no model is loaded."""

from __future__ import annotations

import importlib.metadata

import pytest

from gpt4llm.errors import UserError
from gpt4llm.train import compat


def test_the_installed_versions_are_the_tested_ones():
    compat.check_versions()  # what the test suite runs on is, by definition, tested
    for name, minors in compat.TESTED.items():
        installed = importlib.metadata.version(name)
        assert ".".join(installed.split(".")[:2]) in minors, (name, installed)


@pytest.mark.parametrize("package", ["trl", "peft", "transformers"])
def test_an_untested_minor_version_fails_in_one_line_naming_it(monkeypatch, package):
    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: "9.99.1" if name == package else real(name)
    )
    with pytest.raises(UserError) as e:
        compat.check_versions()
    message = str(e.value)
    assert "\n" not in message
    assert f"{package} 9.99.1" in message
    assert all(f"{v}.x" in message for v in compat.TESTED[package])
    compat.check_versions(*(p for p in compat.TESTED if p != package))  # only those asked


def test_a_patch_release_of_a_tested_minor_passes_and_a_missing_package_is_left_alone(
    monkeypatch,
):
    real = importlib.metadata.version

    def fake(name):
        if name == "trl":
            return compat.TESTED["trl"][0] + ".7"
        if name == "peft":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "version", fake)
    compat.check_versions()


def test_a_trainer_checks_before_any_work(monkeypatch, tmp_path):
    from gpt4llm.train import dpo

    real = importlib.metadata.version
    monkeypatch.setattr(
        importlib.metadata, "version", lambda name: "1.99.0" if name == "trl" else real(name)
    )
    with pytest.raises(UserError, match=r"trl 1\.99\.0 is untested"):
        dpo.run(dpo.Config(data=tmp_path / "missing.jsonl", output=tmp_path / "out"))
    assert not (tmp_path / "out").exists()
