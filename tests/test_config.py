"""Config building: defaults < file < key=value overrides, parsed by field type."""

from dataclasses import dataclass, field
from typing import Literal

import pytest

from cortex.params import param, validate
from sims.config import build_config, describe_config


@dataclass(frozen=True)
class Optimiser:
    lr: float = field(default=1e-3, metadata={"help": "learning rate"})


@dataclass(frozen=True)
class Config:
    steps: int = field(default=10, metadata={"help": "training steps"})
    beta: float = field(default=1.0, metadata={"help": "inverse temperature"})
    amortised: bool = field(default=False, metadata={"help": "use the recogniser"})
    name: str = field(default="net", metadata={"help": "a label"})
    kind: Literal["generative", "discriminative"] = field(
        default="generative", metadata={"help": "direction of prediction"})
    sizes: tuple[int, ...] = field(default=(64, 32), metadata={"help": "hidden widths"})
    gains: tuple[float, ...] = field(default=(), metadata={"help": "per-layer gains"})
    limit: int | None = field(default=None, metadata={"help": "early stop"})
    optimiser: Optimiser = field(default=Optimiser(), metadata={"help": "weights optimiser"})


def test_defaults():
    assert build_config(Config) == Config()


def test_overrides_parse_by_field_type():
    cfg = build_config(Config, overrides=[
        "steps=5", "beta=0.5", "amortised=yes", "name=deep", "kind=discriminative",
        "sizes=256, 128", "gains=1,2.5", "limit=3", "optimiser.lr=0.1"])
    assert cfg == Config(steps=5, beta=0.5, amortised=True, name="deep", kind="discriminative",
                         sizes=(256, 128), gains=(1.0, 2.5), limit=3, optimiser=Optimiser(lr=0.1))
    assert build_config(Config, overrides=["limit=none", "amortised=0", "sizes="]) == Config(
        limit=None, amortised=False, sizes=())


@pytest.mark.parametrize("override, expected", [
    ("steps=ten", "'steps' expects int"),
    ("amortised=maybe", "'amortised' expects bool"),
    ("kind=both", "'kind' expects one of 'generative', 'discriminative'"),
    ("sizes=1,x", "'sizes' expects comma-separated ints"),
    ("limit=lots", "'limit' expects int or none"),
    ("steps", "'steps' is not of the form key=value"),
])
def test_bad_values_name_the_key_and_type(override, expected):
    with pytest.raises(ValueError, match=expected):
        build_config(Config, overrides=[override])


def test_unknown_key_is_named_with_the_valid_keys():
    with pytest.raises(ValueError, match=r"unknown config key 'stepz'.*valid keys: steps, beta.*optimiser\.lr"):
        build_config(Config, overrides=["stepz=3"])


def test_json_and_toml_files(tmp_path):
    (tmp_path / "c.json").write_text('{"steps": 3, "sizes": [8, 4], "optimiser": {"lr": 1}}')
    (tmp_path / "c.toml").write_text('steps = 3\nsizes = [8, 4]\nlimit = "none"\n[optimiser]\nlr = 1\n')
    expected = Config(steps=3, sizes=(8, 4), optimiser=Optimiser(lr=1.0))
    assert build_config(Config, tmp_path / "c.json") == expected
    assert build_config(Config, tmp_path / "c.toml") == expected
    assert build_config(Config, tmp_path / "c.toml", ["steps=4"]).steps == 4


def test_file_errors_name_the_culprit(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json"):
        build_config(Config, tmp_path / "nope.json")
    (tmp_path / "c.yaml").write_text("steps: 3")
    with pytest.raises(ValueError, match="c.yaml.*'.yaml'"):
        build_config(Config, tmp_path / "c.yaml")
    (tmp_path / "bad.json").write_text('{"steps": 3,')
    with pytest.raises(ValueError, match="bad.json does not parse"):
        build_config(Config, tmp_path / "bad.json")
    (tmp_path / "unknown.json").write_text('{"optimiser": {"momentum": 0.9}}')
    with pytest.raises(ValueError, match="'optimiser.momentum'"):
        build_config(Config, tmp_path / "unknown.json")
    (tmp_path / "typed.json").write_text('{"steps": 2.5}')
    with pytest.raises(ValueError, match="'steps' expects int, got 2.5"):
        build_config(Config, tmp_path / "typed.json")


def test_describe_lists_fields_defaults_and_help():
    text = describe_config(Config)
    assert "sizes: comma-separated ints = 64,32" in text
    assert "limit: int or none = none" in text
    assert "optimiser.lr: float = 0.001" in text and "learning rate" in text


@dataclass(frozen=True)
class Checked:
    steps: int = param(10, "training steps", ge=1)
    rate: float = param(0.5, "a probability", ge=0, le=1)
    widths: tuple[int, ...] = param((4, 4), "hidden widths", ge=1)
    posterior: str = param("point", "kind of posterior", choices=("point", "laplace"))
    low: int = param(1, "lower end")
    high: int = param(2, "upper end")

    def __post_init__(self) -> None:
        validate(self)
        if not self.low < self.high:
            raise ValueError(f"config key 'high' must exceed low = {self.low}, got {self.high}")


@pytest.mark.parametrize("override, expected", [
    ("steps=0", r"'steps' must be >= 1, got 0"),
    ("rate=1.5", r"'rate' must be <= 1, got 1.5"),
    ("rate=nan", r"'rate' must be a finite number, got nan"),
    ("widths=4,0", r"'widths' must be >= 1, got 0"),
    ("posterior=exact", r"'posterior' must be one of point, laplace, got 'exact'"),
    ("high=1", r"'high' must exceed low = 1"),
])
def test_values_out_of_range_fail_at_construction_naming_the_key(override, expected):
    with pytest.raises(ValueError, match=expected):
        build_config(Checked, overrides=[override])


def test_describe_lists_the_admissible_values():
    text = describe_config(Checked)
    for line in ("    training steps (>= 1)", "    a probability (in [0, 1])", "    hidden widths (each >= 1)",
                 "    kind of posterior (one of: point, laplace)", "    lower end\n"):
        assert line in text


def test_a_config_object_built_in_python_is_validated_too():
    """The checks live in the dataclass, so a sweep building configs in Python meets them."""
    from sims.tracking import TrackingConfig

    with pytest.raises(ValueError, match="'process_noise' expects 3 values"):
        TrackingConfig(process_noise=(0.1, 0.2))
    with pytest.raises(ValueError, match="'process_noise' expects float"):
        TrackingConfig(process_noise=(0.1, 0.2, "a"))
