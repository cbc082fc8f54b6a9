"""The playground config: validation messages name the field and its range, JSON round trips,
unknown keys are rejected, and importing it does not import torch."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from playground.config import (FIELDS, WORKLOAD_MODELS, Config, ConfigError, available_devices,
                               check_device_present, defaults_for)

ROOT = Path(__file__).resolve().parents[1]
ARCH_FIELDS = ("workload model depth width activation batch_norm dropout init forget_bias optimizer lr momentum "
               "beta1 beta2 weight_decay l1 schedule warmup_steps step_size gamma grad_clip label_smoothing "
               "normalize_inputs shuffle class_weighted train_subset batch_size epochs eval_every seed device "
               "probe_every").split()


def test_field_names_match_the_architecture_contract():
    assert set(FIELDS) == set(ARCH_FIELDS)
    assert set(Config().to_dict()) == set(ARCH_FIELDS)


def test_defaults_are_valid_and_every_field_has_metadata():
    Config().validate()
    for name, spec in FIELDS.items():
        assert spec.help.endswith("."), name
        assert spec.group in {"data", "model", "optimizer", "schedule", "regularization", "run"}
        default = getattr(Config(), name)
        if spec.choices is not None:
            assert default in spec.choices
        elif spec.type is bool:
            assert isinstance(default, bool)
        else:
            assert isinstance(default, spec.type)


@pytest.mark.parametrize("changes, field, words", [
    ({"lr": -0.1}, "lr", "(0, 10]"),
    ({"lr": 0.0}, "lr", "(0, 10]"),
    ({"lr": float("nan")}, "lr", "finite"),
    ({"dropout": 1.0}, "dropout", "[0, 1)"),
    ({"dropout": -0.2}, "dropout", "[0, 1)"),
    ({"optimizer": "adagrad"}, "optimizer", "sgd, momentum, rmsprop, adam, adamw"),
    ({"optimizer": "adamm"}, "optimizer", "did you mean 'adam'"),
    ({"activation": "swish"}, "activation", "relu"),
    ({"init": "he"}, "init", "kaiming"),
    ({"schedule": "linear"}, "schedule", "cosine"),
    ({"batch_size": 0}, "batch_size", "[1, 4096]"),
    ({"batch_size": 32.5}, "batch_size", "an integer"),
    ({"epochs": True}, "epochs", "an integer"),
    ({"depth": 0}, "depth", "[1, 32]"),
    ({"width": 5000}, "width", "[1, 1024]"),
    ({"momentum": 1.0}, "momentum", "[0, 1)"),
    ({"gamma": 0.0}, "gamma", "(0, 1]"),
    ({"label_smoothing": 1.0}, "label_smoothing", "[0, 1)"),
    ({"grad_clip": -1.0}, "grad_clip", "[0,"),
    ({"batch_norm": "yes"}, "batch_norm", "true or false"),
    ({"seed": -1}, "seed", "[0,"),
    ({"device": "tpu"}, "device", "auto, cpu, cuda, mps"),
    ({"workload": "mnist"}, "workload", "digits, spirals, sequence"),
])
def test_invalid_values_name_the_field_and_allowed_range(changes, field, words):
    with pytest.raises(ConfigError) as err:
        Config(**changes).validate()
    msg = str(err.value)
    assert msg.startswith(f"{field}:"), msg
    assert words in msg, msg


@pytest.mark.parametrize("changes, field, words", [
    ({"workload": "sequence", "model": "mlp"}, "model", "lstm, gru"),
    ({"workload": "spirals", "model": "cnn"}, "model", "mlp"),
    ({"model": "cnn", "depth": 4}, "depth", "[1, 3]"),
    ({"workload": "sequence", "model": "lstm", "batch_norm": True}, "batch_norm", "mlp and cnn only"),
    ({"train_subset": 2000}, "train_subset", "[0, 1437]"),
    ({"schedule": "warmup"}, "warmup_steps", "> 0"),
])
def test_cross_field_rules(changes, field, words):
    with pytest.raises(ConfigError) as err:
        Config(**changes).validate()
    assert str(err.value).startswith(f"{field}:") and words in str(err.value), str(err.value)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


def test_json_round_trip_keeps_every_value(tmp_path):
    cfg = Config(workload="sequence", model="gru", lr=0.02, schedule="cosine", warmup_steps=10, dropout=0.25,
                 normalize_inputs=False, grad_clip=1.5, seed=7, device="cpu")
    again = Config.from_json(cfg.to_json())
    assert again == cfg
    path = tmp_path / "cfg.json"
    cfg.save(path)
    assert Config.load(path) == cfg
    assert json.loads(path.read_text())["model"] == "gru"


def test_from_dict_fills_defaults_and_coerces_ints_to_floats():
    cfg = Config.from_dict({"lr": 1, "weight_decay": 0})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.depth == Config().depth


def test_unknown_keys_are_rejected_with_a_suggestion():
    with pytest.raises(ConfigError) as err:
        Config.from_dict({"learning_rate": 0.1, "lr": 0.1})
    assert "learning_rate" in str(err.value)
    with pytest.raises(ConfigError) as err:
        Config().replace(dropuot=0.5)
    assert "did you mean 'dropout'" in str(err.value)


def test_bad_json_and_missing_file_give_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.from_json("{lr: 1}")
    with pytest.raises(ConfigError, match="JSON object"):
        Config.from_json("[1, 2]")
    with pytest.raises(ConfigError, match="cannot read config file"):
        Config.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"dropout": 2}')
    with pytest.raises(ConfigError) as err:
        Config.load(bad)
    assert str(bad) in str(err.value) and "dropout" in str(err.value)


def test_replace_validates_and_leaves_the_original_alone():
    base = Config()
    changed = base.replace(lr=0.5, optimizer="sgd")
    assert (changed.lr, changed.optimizer) == (0.5, "sgd")
    assert base.lr == 1e-3
    with pytest.raises(ConfigError, match="^lr:"):
        base.replace(lr=20.0)


def test_a_diagnostics_fix_dict_applies_directly():
    # Finding.fix holds playground field names; applying one must just work.
    fix = {"lr": 1e-4, "grad_clip": 1.0, "init": "kaiming", "batch_norm": True}
    assert Config().replace(**fix).to_dict().items() >= fix.items()


def test_total_steps_counts_the_short_last_batch():
    assert Config(epochs=2, batch_size=64).total_steps() == 2 * 23  # 1437 digits -> 23 batches
    assert Config(train_subset=100, batch_size=64, epochs=3).total_steps() == 6


def test_workload_defaults():
    assert defaults_for("sequence") == {"workload": "sequence", "model": "lstm"}
    assert set(WORKLOAD_MODELS) == set(FIELDS["workload"].choices)
    with pytest.raises(ConfigError, match="^workload:"):
        defaults_for("cifar")


def test_missing_accelerator_is_rejected():
    present = available_devices()
    check_device_present("cpu")
    for dev in ("cuda", "mps"):
        if dev not in present:
            with pytest.raises(ConfigError, match=f"^device: '{dev}' is not present"):
                Config(device=dev).validate()
            # A torch-free caller can skip the presence check.
            Config(device=dev).validate(check_device=False)


def test_describe_is_readable():
    assert FIELDS["lr"].describe() == "a number in (0, 10]"
    assert FIELDS["batch_norm"].describe() == "true or false"
    assert FIELDS["optimizer"].describe().startswith("one of sgd")


def test_importing_the_config_does_not_import_torch():
    code = ("import sys, playground, playground.config as c; c.Config().validate(check_device=False); "
            "c.Config(device='cpu').validate(); assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(ROOT))
